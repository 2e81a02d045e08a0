package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testToken is the bearer token the tests configure; no error text may
// ever contain it.
const testToken = "test-token-5ecret"

// newTestClient builds a client for baseURL over plain HTTP on loopback.
func newTestClient(t *testing.T, baseURL string, mutate ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: baseURL, Token: testToken, AllowHTTP: true,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// validAssign is a request that passes local validation.
func validAssign() AssignKeyRequest {
	return AssignKeyRequest{
		UserIdentifier: "alice@acme.io",
		KeyEnvironment: KeyEnvironmentCold,
		CustomerID:     "org-123",
		CustomerName:   "Acme Corp",
		PackageID:      "pkg-456",
		PackageName:    "Main Workspace",
	}
}

// TestStatusMapping covers statuses the sandbox never produces (and the
// body shapes it never sends) with a handler that answers canned replies.
func TestStatusMapping(t *testing.T) {
	long := strings.Repeat("x", 4000)
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		header      map[string]string
		wantKind    Kind
		wantIs      error
		wantType    string
		wantMessage string // exact
		wantFields  map[string]string
		wantRetry   time.Duration
	}{
		{name: "500 json", status: 500, body: `{"error":"internal_error","message":"boom"}`,
			wantKind: KindUnavailable, wantIs: ErrUnavailable, wantType: "internal_error", wantMessage: "boom"},
		{name: "502 html", status: 502, contentType: "text/html", body: "<html><body>Bad\r\nGateway\x00\x1b[31m</body></html>",
			wantKind: KindUnavailable, wantIs: ErrUnavailable, wantMessage: "<html><body>Bad Gateway[31m</body></html>"},
		{name: "503 empty", status: 503, wantKind: KindUnavailable, wantIs: ErrUnavailable, wantMessage: "Service Unavailable"},
		{name: "418 unknown", status: 418, body: `{"error":"teapot","message":"short and stout"}`,
			wantKind: KindUnknown, wantType: "teapot", wantMessage: "short and stout"},
		{name: "302 not followed", status: 302, header: map[string]string{"Location": "https://elsewhere.example/"},
			wantKind: KindUnknown, wantMessage: "Found"},
		{name: "400 fields", status: 400, body: `{"error":"validation_error","message":"bad","fields":{"checksum":"must be 64 hex characters","x\u0007y":"ctl"}}`,
			wantKind: KindInvalid, wantIs: ErrInvalid, wantType: "validation_error", wantMessage: "bad",
			wantFields: map[string]string{"checksum": "must be 64 hex characters", "xy": "ctl"}},
		{name: "409", status: 409, body: `{"error":"conflict","message":"Key already assigned for this user and organisation"}`,
			wantKind: KindAlreadyAssigned, wantIs: ErrAlreadyAssigned, wantType: "conflict",
			wantMessage: "Key already assigned for this user and organisation"},
		{name: "429 seconds", status: 429, header: map[string]string{"Retry-After": "7"}, body: `{"error":"rate_limited","message":"slow down"}`,
			wantKind: KindRateLimited, wantIs: ErrRateLimited, wantType: "rate_limited", wantMessage: "slow down", wantRetry: 7 * time.Second},
		{name: "429 date", status: 429, header: map[string]string{"Retry-After": "Sat, 01 Jan 2033 00:01:40 GMT"},
			wantKind: KindRateLimited, wantIs: ErrRateLimited, wantMessage: "Too Many Requests", wantRetry: 100 * time.Second},
		{name: "429 garbage", status: 429, header: map[string]string{"Retry-After": "soon"},
			wantKind: KindRateLimited, wantIs: ErrRateLimited, wantMessage: "Too Many Requests"},
		{name: "long non-json", status: 500, contentType: "text/plain", body: long,
			wantKind: KindUnavailable, wantIs: ErrUnavailable, wantMessage: strings.Repeat("x", maxErrorText-len("…")) + "…"},
		{name: "long json message", status: 400, body: `{"error":"e","message":"` + long + `"}`,
			wantKind: KindInvalid, wantIs: ErrInvalid, wantType: "e", wantMessage: strings.Repeat("x", maxErrorText-len("…")) + "…"},
		{name: "oversized body", status: 500, contentType: "text/plain", body: strings.Repeat("y", 2*maxErrorBody),
			wantKind: KindUnavailable, wantIs: ErrUnavailable, wantMessage: strings.Repeat("y", maxErrorText-len("…")) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits++
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", cmp.Or(tt.contentType, "application/json"))
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL)
			c.now = func() time.Time { return time.Date(2033, 1, 1, 0, 0, 0, 0, time.UTC) }

			_, err := c.AssignKey(context.Background(), validAssign())
			var uerr *Error
			if !errors.As(err, &uerr) {
				t.Fatalf("AssignKey error = %v, want *Error", err)
			}
			if uerr.Kind != tt.wantKind || uerr.Status != tt.status || !uerr.Sent {
				t.Errorf("Kind/Status/Sent = %v/%d/%t, want %v/%d/true", uerr.Kind, uerr.Status, uerr.Sent, tt.wantKind, tt.status)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(err, %v) = false", tt.wantIs)
			}
			for _, other := range []error{ErrNotFound, ErrProtocol} {
				if !errors.Is(tt.wantIs, other) && errors.Is(err, other) {
					t.Errorf("errors.Is(err, %v) = true, want false", other)
				}
			}
			if uerr.Type != tt.wantType || uerr.Message != tt.wantMessage {
				t.Errorf("Type/Message = %q/%q, want %q/%q", uerr.Type, uerr.Message, tt.wantType, tt.wantMessage)
			}
			if fmt.Sprint(uerr.Fields) != fmt.Sprint(tt.wantFields) {
				t.Errorf("Fields = %v, want %v", uerr.Fields, tt.wantFields)
			}
			if uerr.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", uerr.RetryAfter, tt.wantRetry)
			}
			if uerr.Endpoint != "POST /v1/partner/keys" {
				t.Errorf("Endpoint = %q", uerr.Endpoint)
			}
			if msg := err.Error(); strings.Contains(msg, testToken) || strings.ContainsAny(msg, "\x00\x1b\r\n") ||
				!strings.Contains(msg, "POST /v1/partner/keys") || len(msg) > 2*maxErrorText+200 {
				t.Errorf("Error() = %q: must name the endpoint, be bounded, and hold no token or control characters", msg)
			}
			// AssignKey retries a 5xx (a repeat meets its own 409) and a
			// 429 (which did nothing) unless it asks for more than
			// maxRetryAfter; a refusal or an unclassified answer is final.
			want := 1
			if uerr.Kind == KindUnavailable || uerr.Kind == KindRateLimited && uerr.RetryAfter <= maxRetryAfter {
				want = 1 + maxRetries
			}
			if hits != want {
				t.Errorf("server saw %d requests, want %d", hits, want)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"status", &Error{Kind: KindNotFound, Endpoint: "POST /v1/partner/secure/data", Status: 404, Sent: true, Type: "not_found", Message: "Key not found"},
			"upstream POST /v1/partner/secure/data: not_found (HTTP 404) [not_found]: Key not found"},
		{"not sent", &Error{Kind: KindUnavailable, Endpoint: "POST /v1/partner/keys", Err: errors.New("dial tcp: connection refused")},
			"upstream POST /v1/partner/keys: unavailable (not sent): dial tcp: connection refused"},
		{"fields and retry", &Error{Kind: KindRateLimited, Endpoint: "POST /v1/partner/keys", Status: 429, Sent: true, RetryAfter: 2 * time.Second,
			Fields: map[string]string{"b": "2", "a": "1"}},
			`upstream POST /v1/partner/keys: rate_limited (HTTP 429) (fields: a="1" b="2") (retry after 2s)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestErrorIsByKind(t *testing.T) {
	sentinels := map[Kind]error{
		KindInvalid: ErrInvalid, KindUnauthenticated: ErrUnauthenticated, KindForbidden: ErrForbidden,
		KindNotFound: ErrNotFound, KindAlreadyAssigned: ErrAlreadyAssigned, KindTooLarge: ErrTooLarge,
		KindUnsupportedMedia: ErrUnsupportedMedia, KindRateLimited: ErrRateLimited,
		KindUnavailable: ErrUnavailable, KindProtocol: ErrProtocol,
	}
	for kind, sentinel := range sentinels {
		err := fmt.Errorf("wrapped: %w", &Error{Kind: kind, Err: context.DeadlineExceeded})
		for other, otherSentinel := range sentinels {
			if got := errors.Is(err, otherSentinel); got != (other == kind) {
				t.Errorf("errors.Is(%v error, %v) = %t", kind, other, got)
			}
		}
		if !errors.Is(err, sentinel) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%v: errors.Is must match the sentinel and the wrapped cause", kind)
		}
	}
	if errors.Is(&Error{Kind: KindUnknown}, ErrUnavailable) {
		t.Error("KindUnknown must match no sentinel")
	}
}

// afterAmbiguous marks e as the last error of a call whose earlier attempt
// may have acted.
func afterAmbiguous(e *Error) *Error {
	e.AfterAmbiguousAttempt = true
	return e
}

// TestNothingDone pins the one answer to "did the upstream certainly not
// act?" for every way the adapter builds an Error: an HTTP answer, a
// transport failure before or after the request could arrive, a broken 2xx
// body and a request refused locally.
func TestNothingDone(t *testing.T) {
	answered := func(status int) *Error {
		resp := &http.Response{StatusCode: status, Header: http.Header{"Retry-After": {"1"}}}
		return statusError(endpointAssignKey.String(), resp, []byte(`{"error":"x","message":"y"}`), time.Now())
	}
	tests := []struct {
		name string
		err  *Error
		want bool
	}{
		{"400 invalid", answered(400), true},
		{"401 bad token", answered(401), true},
		{"403 no scope", answered(403), true},
		{"404 not found", answered(404), true},
		{"409 already assigned", answered(409), true},
		{"413 too large", answered(413), true},
		{"415 media type", answered(415), true},
		{"429 rate limited", answered(429), true},
		{"500", answered(500), false},
		{"502 from a gateway", answered(502), false},
		{"503", answered(503), false},
		{"301 unclassified", answered(301), false},
		{"408 unclassified", answered(408), false},
		{"422 unclassified", answered(422), false},
		{"DNS failure", transportError("e", &net.DNSError{Err: "no such host", Name: "x"}, false), true},
		{"connection refused", transportError("e", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false), true},
		{"reset after connecting", transportError("e", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, true), false},
		{"timeout, unknown whether sent", transportError("e", context.DeadlineExceeded, false), false},
		{"2xx with a broken body", protocolError(endpointSecureData, 200, "missing %s", "backup_id"), false},
		{"refused locally", invalidRequest(endpointSecureData, "public_key", "is required"), true},
		{"429 after an ambiguous attempt", afterAmbiguous(answered(429)), false},
		{"409 after an ambiguous attempt", afterAmbiguous(answered(409)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.NothingDone(); got != tt.want {
				t.Errorf("NothingDone() = %t, want %t for %v", got, tt.want, tt.err)
			}
		})
	}
}

// TestRetryPolicy: which failed attempts each operation retries, and after
// how long. Both operations retry upstream failures (a repeated AssignKey
// meets the upstream's 409, a repeated SecureData leaves at most an extra
// copy); neither retries a refusal.
func TestRetryPolicy(t *testing.T) {
	assign, data := retryPolicies[endpointAssignKey], retryPolicies[endpointSecureData]
	tests := []struct {
		name   string
		err    *Error
		assign bool
		data   bool
		// minDelay is the least wait (a Retry-After); the rest is jitter.
		minDelay time.Duration
	}{
		{"never sent", &Error{Kind: KindUnavailable}, true, true, 0},
		{"sent, no answer", &Error{Kind: KindUnavailable, Sent: true}, true, true, 0},
		{"503", &Error{Kind: KindUnavailable, Status: 503, Sent: true}, true, true, 0},
		{"503 asking for a second", &Error{Kind: KindUnavailable, Status: 503, Sent: true, RetryAfter: time.Second}, true, true, time.Second},
		{"429, short wait", &Error{Kind: KindRateLimited, Status: 429, Sent: true, RetryAfter: time.Second}, true, true, time.Second},
		{"429, long wait", &Error{Kind: KindRateLimited, Status: 429, Sent: true, RetryAfter: maxRetryAfter + time.Second}, false, false, 0},
		{"429, no Retry-After", &Error{Kind: KindRateLimited, Status: 429, Sent: true}, true, true, 0},
		{"400 did nothing but would fail again", &Error{Kind: KindInvalid, Status: 400, Sent: true}, false, false, 0},
		{"409", &Error{Kind: KindAlreadyAssigned, Status: 409, Sent: true}, false, false, 0},
		{"2xx with a broken body", &Error{Kind: KindProtocol, Status: 200, Sent: true}, false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range []struct {
				name   string
				policy retryPolicy
				want   bool
			}{{"assign", assign, tt.assign}, {"data", data, tt.data}} {
				for attempt := range 3 {
					delay, retry := retryDelay(p.policy, tt.err, attempt)
					if retry != p.want {
						t.Fatalf("%s attempt %d: retry = %t, want %t", p.name, attempt, retry, p.want)
					}
					ceiling := max(tt.minDelay, min(backoffBase<<attempt, backoffMax))
					if retry && (delay < tt.minDelay || delay > ceiling) {
						t.Errorf("%s attempt %d: delay %s outside [%s, %s]", p.name, attempt, delay, tt.minDelay, ceiling)
					}
				}
			}
		})
	}
}

func TestKindForStatus(t *testing.T) {
	tests := map[int]Kind{
		400: KindInvalid, 401: KindUnauthenticated, 403: KindForbidden, 404: KindNotFound,
		409: KindAlreadyAssigned, 413: KindTooLarge, 415: KindUnsupportedMedia, 429: KindRateLimited,
		500: KindUnavailable, 502: KindUnavailable, 503: KindUnavailable, 504: KindUnavailable, 599: KindUnavailable,
		301: KindUnknown, 405: KindUnknown, 422: KindUnknown, 600: KindUnknown,
	}
	for status, want := range tests {
		if got := kindForStatus(status); got != want {
			t.Errorf("kindForStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"  lead\t\ttab\r\nnew  ", "lead tab new"},
		{"nul\x00esc\x1b[0mbell\a", "nulesc[0mbell"},
		{"bad utf8 \xff\xfe here", "bad utf8 here"},
		{"bidi \u202eevil", "bidi evil"},
		{"é" + strings.Repeat("é", 600), strings.Repeat("é", 254) + "…"},
	}
	for _, tt := range tests {
		got := sanitize(tt.in, maxErrorText)
		if got != tt.want {
			t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if len(got) > maxErrorText {
			t.Errorf("sanitize(%q) is %d bytes, over %d", tt.in, len(got), maxErrorText)
		}
	}
}
