package auth

import (
	"context"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
)

// Services that may be public. Matched by exact service name, never by
// prefix, so that no other service can become public by its name.
const (
	healthService            = "grpc.health.v1.Health"
	reflectionService        = "grpc.reflection.v1.ServerReflection"
	reflectionServiceV1Alpha = "grpc.reflection.v1alpha.ServerReflection"
)

// IsPublicMethod reports whether fullMethod ("/package.Service/Method")
// skips caller authentication: every grpc.health.v1.Health method (load
// balancers and orchestrators probe without credentials), and server
// reflection (v1 and v1alpha) when publicReflection is set (development;
// in production reflection needs an authenticated caller).
func IsPublicMethod(fullMethod string, publicReflection bool) bool {
	service, _, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return false
	}
	return isPublicService(service, publicReflection)
}

// isPublicService is IsPublicMethod for a bare service name.
func isPublicService(service string, publicReflection bool) bool {
	switch service {
	case healthService:
		return true
	case reflectionService, reflectionServiceV1Alpha:
		return publicReflection
	}
	return false
}

// NeedsCaller is the selector.Matcher that picks the methods the
// authentication interceptor applies to: every method that IsPublicMethod
// does not make public. Unknown services therefore need a caller.
func NeedsCaller(publicReflection bool) selector.Matcher {
	return selector.MatchFunc(func(_ context.Context, call interceptors.CallMeta) bool {
		return !isPublicService(call.Service, publicReflection)
	})
}
