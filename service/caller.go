package service

import "context"

// callerKey is the context key of the authenticated caller's name.
type callerKey struct{}

// WithCaller returns ctx carrying the authenticated caller's name. recoveryd's
// authentication interceptor sets it so that every assignment and backup
// records who made it.
func WithCaller(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, callerKey{}, name)
}

// CallerFromContext is the caller name set by WithCaller, or "" when caller
// authentication is off.
func CallerFromContext(ctx context.Context) string {
	name, _ := ctx.Value(callerKey{}).(string)
	return name
}
