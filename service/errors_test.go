package service_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// upstreamText is what an upstream error body said; it must never reach a
// caller.
const upstreamText = "internal detail: db host 10.1.2.3 said no"

func upstreamErr(kind upstream.Kind) *upstream.Error {
	return &upstream.Error{
		Kind: kind, Endpoint: "POST /v1/partner/secure/data", Status: 400,
		Type: "bad_request", Message: upstreamText, Sent: true,
	}
}

// statusWithInfo is a status carrying one ErrorInfo, as another component
// (or a confused one) might return.
func statusWithInfo(code codes.Code, domain, reason string) error {
	st, err := status.New(code, upstreamText).WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestStatusFromErrorMapping(t *testing.T) {
	orgOneCaller := auth.WithCaller(context.Background(), auth.Caller{Name: "wallet-api", Organisations: []string{"org-1"}})
	limited := upstreamErr(upstream.KindRateLimited)
	limited.RetryAfter = 7 * time.Second
	invalid := upstreamErr(upstream.KindInvalid)
	invalid.Fields = map[string]string{"checksum": upstreamText, "data": "bad"}
	tests := []struct {
		name     string
		err      error
		code     codes.Code
		reason   recoveryv1.ErrorReason
		retry    time.Duration
		metadata map[string]string
	}{
		{"upstream invalid", fmt.Errorf("wrapped: %w", invalid), codes.InvalidArgument, service.ReasonUpstreamRejectedRequest, 0,
			map[string]string{"upstream_fields": "checksum,data"}},
		{"upstream 401", upstreamErr(upstream.KindUnauthenticated), codes.Internal, service.ReasonUpstreamCredentialsRejected, 0, nil},
		{"upstream 403", upstreamErr(upstream.KindForbidden), codes.Internal, service.ReasonUpstreamCredentialsRejected, 0, nil},
		{"upstream 404", upstreamErr(upstream.KindNotFound), codes.NotFound, service.ReasonKeyNotFoundUpstream, 0, nil},
		{"upstream 409", upstreamErr(upstream.KindAlreadyAssigned), codes.FailedPrecondition, service.ReasonAssignedElsewhere, 0, nil},
		{"upstream 413", upstreamErr(upstream.KindTooLarge), codes.ResourceExhausted, service.ReasonFileTooLarge, 0, nil},
		{"upstream 415", upstreamErr(upstream.KindUnsupportedMedia), codes.Internal, service.ReasonUpstreamContractMismatch, 0, nil},
		{"upstream 429", limited, codes.Unavailable, service.ReasonUpstreamRateLimited, 7 * time.Second, nil},
		{"upstream 5xx", upstreamErr(upstream.KindUnavailable), codes.Unavailable, service.ReasonUpstreamUnavailable, time.Second, nil},
		{"circuit breaker open", &upstream.Error{Kind: upstream.KindUnavailable, RetryAfter: 5 * time.Second}, codes.Unavailable, service.ReasonUpstreamUnavailable, 5 * time.Second, nil},
		{"upstream contract break", upstreamErr(upstream.KindProtocol), codes.Internal, service.ReasonUpstreamContractMismatch, 0, nil},
		{"upstream timeout", &upstream.Error{Kind: upstream.KindUnavailable, Message: upstreamText, Err: context.DeadlineExceeded},
			codes.DeadlineExceeded, service.ReasonDeadlineExceeded, 0, nil},
		{"caller cancelled", &upstream.Error{Kind: upstream.KindUnavailable, Message: upstreamText, Err: context.Canceled},
			codes.Canceled, service.ReasonCancelled, 0, nil},
		{"transport cancelled", status.Error(codes.Canceled, upstreamText), codes.Canceled, service.ReasonCancelled, 0, nil},
		{"registry not found", registry.ErrNotFound, codes.NotFound, service.ReasonKeyNotFound, 0, nil},
		{"registry page token", registry.ErrInvalidPageToken, codes.InvalidArgument, service.ReasonInvalidPageToken, 0, nil},
		{"registry refuses an argument", fmt.Errorf("x: %w", registry.ErrInvalidArgument), codes.Internal, service.ReasonInternal, 0, nil},
		{"registry down", service.RegistryFailure(errors.New(upstreamText)), codes.Unavailable, service.ReasonRegistryUnavailable, 0, nil},
		{"signature", fmt.Errorf("x: %w", keycrypto.ErrSignatureInvalid), codes.FailedPrecondition, service.ReasonEnclaveSignatureInvalid, 0, nil},
		{"binding", fmt.Errorf("x: %w", keycrypto.ErrBindingMismatch), codes.FailedPrecondition, service.ReasonEnclaveSignatureInvalid, 0, nil},
		{"no verification key", keycrypto.ErrNoVerificationKey, codes.Unavailable, service.ReasonVerificationKeysUnavailable, 0, nil},
		{"plaintext too large", keycrypto.ErrPlaintextTooLarge, codes.InvalidArgument, service.ReasonPlaintextTooLarge, 0, nil},
		{"anything else", errors.New(upstreamText), codes.Internal, service.ReasonInternal, 0, nil},
		{"organisation not allowed", auth.Enforced.Authorize(orgOneCaller, "org-2"), codes.PermissionDenied, service.ReasonOrganisationNotAllowed, 0,
			map[string]string{"customer_id": "org-2", "caller": "wallet-api"}},
		{"wrapped organisation refusal", fmt.Errorf("resolving: %w", auth.Disabled.Authorize(orgOneCaller, "org-3")),
			codes.PermissionDenied, service.ReasonOrganisationNotAllowed, 0, map[string]string{"customer_id": "org-3", "caller": "wallet-api"}},
		{"no caller while enforced", auth.Enforced.Authorize(context.Background(), "org-1"), codes.Unauthenticated, service.ReasonCallerNotAuthenticated, 0, nil},
		// Only the auth package's typed refusals pass through: a status is
		// never taken apart for a reason, even one dressed exactly as a
		// refusal, so whatever returned it is a fault of this service.
		{"bare PermissionDenied", status.Error(codes.PermissionDenied, upstreamText), codes.Internal, service.ReasonInternal, 0, nil},
		{"status dressed as a refusal", statusWithInfo(codes.PermissionDenied, auth.ErrorDomain, "ORGANISATION_NOT_ALLOWED"), codes.Internal, service.ReasonInternal, 0, nil},
		{"foreign ErrorInfo domain", statusWithInfo(codes.PermissionDenied, "elsewhere.example", "ORGANISATION_NOT_ALLOWED"), codes.Internal, service.ReasonInternal, 0, nil},
		{"other reason of our domain", statusWithInfo(codes.NotFound, auth.ErrorDomain, "KEY_NOT_FOUND"), codes.Internal, service.ReasonInternal, 0, nil},
		{"refusal with a reason outside the table", &auth.Refusal{Reason: recoveryv1.ErrorReason(9999)}, codes.Internal, service.ReasonInternal, 0, nil},
	}
	s := service.New(service.Config{Upstream: &upstream.Client{}, Keys: upstream.NewStaticKeySource(&keycrypto.KeySet{}),
		Registry: &registry.Store{}, Logger: slog.New(slog.DiscardHandler)})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := service.StatusFromError(s, t.Context(), "Test", tt.err)
			d := wantStatus(t, err, tt.code, tt.reason)
			if strings.Contains(d.message, "10.1.2.3") || strings.Contains(d.message, "db host") {
				t.Errorf("status message leaks upstream text: %q", d.message)
			}
			if d.message != service.MappedReasons()[tt.reason].Message {
				t.Errorf("message %q is not the reason's fixed message", d.message)
			}
			if got := d.retry.GetRetryDelay().AsDuration(); got != tt.retry {
				t.Errorf("RetryInfo delay = %v, want %v", got, tt.retry)
			}
			if diff := cmp.Diff(tt.metadata, d.info.GetMetadata()); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
			for _, v := range d.badRequest.GetFieldViolations() {
				if strings.Contains(v.GetDescription(), "10.1.2.3") {
					t.Errorf("field violation leaks upstream text: %q", v.GetDescription())
				}
			}
		})
	}
}

// authenticationReasons are the enum values service/auth's interceptor
// answers with before any handler runs; it builds their status itself
// (Unauthenticated), so they are deliberately absent from reasonSpecs.
var authenticationReasons = map[recoveryv1.ErrorReason]bool{
	auth.ReasonTokenMissing:     true,
	auth.ReasonTokenInvalid:     true,
	auth.ReasonCertUnknown:      true,
	auth.ReasonIdentityConflict: true,
}

// reservedReasons are enum values no code path emits any more, each with
// why; the value stays in the proto so its number and name are never reused.
var reservedReasons = map[recoveryv1.ErrorReason]string{}

// TestEveryReasonIsMappedOnce keeps the enum and the mapping in step: every
// value but UNSPECIFIED is in exactly one of reasonSpecs, the auth
// interceptor's reasons or the reserved list; reasonSpecs holds nothing the
// enum lacks; and each travels as its name without ERROR_REASON_.
func TestEveryReasonIsMappedOnce(t *testing.T) {
	mapped := service.MappedReasons()
	for number, name := range recoveryv1.ErrorReason_name {
		reason := recoveryv1.ErrorReason(number)
		wire, ok := strings.CutPrefix(name, "ERROR_REASON_")
		if !ok || auth.ReasonName(reason) != wire || wire != strings.ToUpper(wire) {
			t.Errorf("%s travels as %q, want its name without ERROR_REASON_, in UPPER_SNAKE_CASE", name, auth.ReasonName(reason))
		}
		_, inTable := mapped[reason]
		_, reserved := reservedReasons[reason]
		homes := 0
		for _, in := range []bool{inTable, authenticationReasons[reason], reserved} {
			if in {
				homes++
			}
		}
		switch {
		case reason == recoveryv1.ErrorReason_ERROR_REASON_UNSPECIFIED:
			if homes != 0 {
				t.Errorf("%s is never sent, yet it is mapped", name)
			}
		case homes != 1:
			t.Errorf("%s is mapped %d times: want exactly one of reasonSpecs, authenticationReasons, reservedReasons", name, homes)
		}
	}
	for reason, spec := range mapped {
		if _, ok := recoveryv1.ErrorReason_name[int32(reason)]; !ok {
			t.Errorf("reasonSpecs holds %d, which the enum lacks", reason)
		}
		if spec.Message == "" || spec.Code == codes.OK {
			t.Errorf("reason %s has no code or message", reason)
		}
	}
}

func TestStatusFromValidation(t *testing.T) {
	validator, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	validAssign := assignRequest("user-1", "org-1")
	tests := []struct {
		name   string
		msg    proto.Message
		reason recoveryv1.ErrorReason
		// violations maps field path to the rule's reason.
		violations map[string]string
	}{
		{"missing organisation", &recoveryv1.AssignKeyRequest{
			UserIdentifier: "user-1", KeyEnvironment: recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT,
			Package: validAssign.GetPackage(),
		}, service.ReasonInvalidRequest, map[string]string{"organisation": "REQUIRED"}},
		{"unspecified environment and bad customer id", &recoveryv1.AssignKeyRequest{
			UserIdentifier: "user-1",
			Organisation:   &recoveryv1.Organisation{CustomerId: "-bad", CustomerName: "Acme"},
			Package:        validAssign.GetPackage(),
		}, service.ReasonInvalidRequest, map[string]string{"key_environment": "ENUM_NOT_IN", "organisation.customer_id": "STRING_PATTERN"}},
		{"plaintext of 447 bytes", &recoveryv1.SecureDataRequest{
			Key:     &recoveryv1.SecureDataRequest_KeyId{KeyId: "6f1c2a9e-0000-4000-8000-000000000004"},
			Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: make([]byte, 447)},
		}, service.ReasonPlaintextTooLarge, map[string]string{"plaintext": "BYTES_MAX_LEN"}},
		{"bad uuid and no payload", &recoveryv1.SecureDataRequest{
			Key: &recoveryv1.SecureDataRequest_KeyId{KeyId: "not-a-uuid"},
		}, service.ReasonInvalidRequest, map[string]string{"key_id": "STRING_UUID", "payload": "REQUIRED"}},
		{"bad checksum pattern", &recoveryv1.SecureDataRequest{
			Key: &recoveryv1.SecureDataRequest_KeyId{KeyId: "6f1c2a9e-0000-4000-8000-000000000004"},
			Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: &recoveryv1.SealedPayload{
				Ciphertext: make([]byte, 512), ChecksumSha256: "xyz"}},
		}, service.ReasonInvalidRequest, map[string]string{"sealed.checksum_sha256": "STRING_PATTERN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verr := validator.Validate(tt.msg)
			if verr == nil {
				t.Fatal("the message validated")
			}
			d := wantStatus(t, service.StatusFromValidation(verr), codes.InvalidArgument, tt.reason)
			got := map[string]string{}
			for _, v := range d.badRequest.GetFieldViolations() {
				got[v.GetField()] = v.GetReason()
				if v.GetDescription() == "" || !strings.Contains(v.GetDescription(), "(rule ") {
					t.Errorf("field %s: description %q does not name the rule", v.GetField(), v.GetDescription())
				}
			}
			if diff := cmp.Diff(tt.violations, got); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
	if service.StatusFromValidation(nil) != nil {
		t.Error("StatusFromValidation(nil) is not nil")
	}
	st := status.Convert(service.StatusFromValidation(errors.New("rule failed to compile")))
	if st.Code() != codes.Internal {
		t.Errorf("a non-validation error gives %s, want Internal", st.Code())
	}
}

// TestRateLimitedStatus: an overload refusal tells the caller which limit
// it hit and when to come back, and nothing else.
func TestRateLimitedStatus(t *testing.T) {
	for _, limit := range []string{service.LimitRate, service.LimitConcurrentCalls, service.LimitConcurrentFiles, service.LimitQueuedCalls} {
		t.Run(limit, func(t *testing.T) {
			d := wantStatus(t, service.RateLimitedStatus(limit, 1500*time.Millisecond), codes.ResourceExhausted, service.ReasonRateLimited)
			if got := d.info.GetMetadata(); len(got) != 1 || got["limit"] != limit {
				t.Errorf("ErrorInfo metadata = %v, want only limit=%s", got, limit)
			}
			if d.retry.GetRetryDelay().AsDuration() != 1500*time.Millisecond {
				t.Errorf("RetryInfo = %v, want 1.5s", d.retry)
			}
		})
	}
}
