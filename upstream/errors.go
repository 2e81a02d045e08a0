package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind classifies an upstream failure.
type Kind int

// Kinds of upstream failure.
const (
	KindUnknown          Kind = iota
	KindInvalid               // 400
	KindUnauthenticated       // 401: our token is bad (configuration fault)
	KindForbidden             // 403: token lacks the partner scope (configuration fault)
	KindNotFound              // 404
	KindAlreadyAssigned       // 409
	KindTooLarge              // 413
	KindUnsupportedMedia      // 415
	KindRateLimited           // 429 (RetryAfter set)
	KindUnavailable           // 5xx, connection failure, timeout
	KindProtocol              // a 2xx whose body breaks the contract
)

// kindNames are the low-cardinality names used in logs and metrics.
var kindNames = [...]string{
	KindUnknown:          "unknown",
	KindInvalid:          "invalid",
	KindUnauthenticated:  "unauthenticated",
	KindForbidden:        "forbidden",
	KindNotFound:         "not_found",
	KindAlreadyAssigned:  "already_assigned",
	KindTooLarge:         "too_large",
	KindUnsupportedMedia: "unsupported_media",
	KindRateLimited:      "rate_limited",
	KindUnavailable:      "unavailable",
	KindProtocol:         "protocol",
}

// String names the kind for logs ("not_found", "rate_limited", …).
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Error is every failure the Client returns; match with errors.As or
// errors.Is(err, ErrNotFound) etc. Message is truncated upstream text for
// logs only: never put it in a status returned to callers.
type Error struct {
	Kind       Kind
	Endpoint   string // e.g. "POST /v1/partner/keys"
	Status     int    // 0 when no response
	Type       string // ErrorResponse.error
	Message    string // ErrorResponse.message, truncated
	Fields     map[string]string
	RetryAfter time.Duration
	// Sent is false only when the request certainly never reached the upstream.
	Sent bool
	// AfterAmbiguousAttempt: an earlier attempt of this call may have acted
	// (a 5xx, a reset, a lost answer) before this one failed. On a 409 from
	// assign-key it means the upstream's key for the pair is most likely
	// the one our lost answer carried: the pair is orphaned, not assigned
	// elsewhere.
	AfterAmbiguousAttempt bool
	// Incomplete: the request's body was cut before it was complete (a
	// file upload that failed mid-body), so the upstream, which acts only
	// on a whole request, cannot have acted, whatever Kind says.
	Incomplete bool
	Err        error
}

// Error renders e for logs: endpoint, status, error type, the sanitized
// upstream message and field problems. It never holds the token or a
// request body (neither is ever stored in an Error).
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("upstream ")
	if e.Endpoint != "" {
		b.WriteString(e.Endpoint)
	} else {
		b.WriteString("call")
	}
	b.WriteString(": ")
	b.WriteString(e.Kind.String())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	} else if !e.Sent {
		b.WriteString(" (not sent)")
	}
	if e.Type != "" {
		b.WriteString(" [")
		b.WriteString(e.Type)
		b.WriteString("]")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if len(e.Fields) > 0 {
		names := make([]string, 0, len(e.Fields))
		for name := range e.Fields {
			names = append(names, name)
		}
		sort.Strings(names)
		b.WriteString(" (fields:")
		for _, name := range names {
			fmt.Fprintf(&b, " %s=%q", name, e.Fields[name])
		}
		b.WriteString(")")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.AfterAmbiguousAttempt {
		b.WriteString(" (after an earlier attempt that may have acted)")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// NothingDone reports whether the upstream certainly did not act on the
// call that returned e: it stored no backup and assigned no key. It is the
// one answer to that question; the retry policy, the AssignKey flow
// (release the reservation, or park the pair for an operator) and the store
// flows (release the idempotency key, or park it) all ask it.
//
// It is true when the request never reached the upstream (Sent is false:
// refused locally, or a failure before any byte could arrive), when its body
// never arrived whole (Incomplete), or when the
// upstream answered with a refusal the adapter classifies: 400, 401, 403,
// 404, 409, 413, 415 or 429. Each of those is an answer given instead of
// acting, whichever endpoint gave it; that is why it holds for an answer an
// endpoint's contract does not list (a 404 on assign-key from a gateway that
// does not route the path is still a request that assigned nothing).
//
// It is false for everything that may have had an effect: a 5xx (the
// upstream may have acted and then failed), a failure after the request may
// have been sent (a reset, a timeout, a lost response), a 2xx whose body
// breaks the contract (KindProtocol: the upstream acted), and a status the
// adapter does not classify (KindUnknown).
//
// NOTE: for KindAlreadyAssigned it says only that this call assigned
// nothing: the upstream does hold a key for the pair, which the AssignKey
// flow must handle before it asks NothingDone.
//
// The answer covers every attempt of the call, not just the last one: it
// is false whenever AfterAmbiguousAttempt is set.
func (e *Error) NothingDone() bool {
	if e.AfterAmbiguousAttempt {
		return false
	}
	if !e.Sent || e.Incomplete {
		return true
	}
	switch e.Kind {
	case KindInvalid, KindUnauthenticated, KindForbidden, KindNotFound, KindAlreadyAssigned,
		KindTooLarge, KindUnsupportedMedia, KindRateLimited:
		return true
	}
	return false
}

// Unwrap exposes the underlying cause (a network error, a context error, a
// decoding error) so errors.Is(err, context.DeadlineExceeded) works.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) and friends match by Kind, so callers
// need not know the HTTP status behind a failure.
func (e *Error) Is(target error) bool {
	s := sentinelFor(e.Kind)
	return s != nil && target == s
}

// Sentinels for errors.Is, one per Kind.
var (
	ErrInvalid          = errors.New("upstream rejected the request as invalid")
	ErrUnauthenticated  = errors.New("upstream rejected our credentials")
	ErrForbidden        = errors.New("upstream token lacks the partner-endpoint scope")
	ErrNotFound         = errors.New("upstream does not know the key")
	ErrAlreadyAssigned  = errors.New("upstream already assigned a key for this user and organisation")
	ErrTooLarge         = errors.New("upstream rejected the file as too large")
	ErrUnsupportedMedia = errors.New("upstream rejected the media type")
	ErrRateLimited      = errors.New("upstream rate limit reached")
	ErrUnavailable      = errors.New("upstream unavailable")
	ErrProtocol         = errors.New("upstream response breaks the contract")
)

// ErrUploadAborted is wrapped (together with the reader's own error) by
// SecureFile when SecureFileRequest.File failed mid-stream: the request was
// aborted mid-body, so the upstream stored nothing.
var ErrUploadAborted = errors.New("upload aborted: the file reader failed")

func sentinelFor(k Kind) error {
	switch k {
	case KindInvalid:
		return ErrInvalid
	case KindUnauthenticated:
		return ErrUnauthenticated
	case KindForbidden:
		return ErrForbidden
	case KindNotFound:
		return ErrNotFound
	case KindAlreadyAssigned:
		return ErrAlreadyAssigned
	case KindTooLarge:
		return ErrTooLarge
	case KindUnsupportedMedia:
		return ErrUnsupportedMedia
	case KindRateLimited:
		return ErrRateLimited
	case KindUnavailable:
		return ErrUnavailable
	case KindProtocol:
		return ErrProtocol
	}
	return nil
}

// kindForStatus is the one place an HTTP status becomes a Kind.
func kindForStatus(status int) Kind {
	switch {
	case status == http.StatusBadRequest:
		return KindInvalid
	case status == http.StatusUnauthorized:
		return KindUnauthenticated
	case status == http.StatusForbidden:
		return KindForbidden
	case status == http.StatusNotFound:
		return KindNotFound
	case status == http.StatusConflict:
		return KindAlreadyAssigned
	case status == http.StatusRequestEntityTooLarge:
		return KindTooLarge
	case status == http.StatusUnsupportedMediaType:
		return KindUnsupportedMedia
	case status == http.StatusTooManyRequests:
		return KindRateLimited
	case status >= 500 && status <= 599:
		return KindUnavailable
	}
	return KindUnknown
}

// Limits on what an error response may contribute to an Error: the upstream
// (or anything in between) controls this text, and it ends up in logs.
const (
	maxErrorBody    = 64 << 10 // read at most this much of an error body
	maxErrorText    = 512      // bytes kept of a message or a non-JSON body
	maxErrorType    = 64       // bytes kept of ErrorResponse.error
	maxErrorFields  = 32       // entries kept of ErrorResponse.fields
	maxFieldNameLen = 64       // bytes kept of a field name
)

// errorBody is the contract's ErrorResponse plus the emulator's fields.
type errorBody struct {
	Error   string            `json:"error"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
}

// statusError classifies a non-2xx response. body holds at most
// maxErrorBody bytes of the response.
func statusError(endpoint string, resp *http.Response, body []byte, now time.Time) *Error {
	e := &Error{
		Kind:     kindForStatus(resp.StatusCode),
		Endpoint: endpoint,
		Status:   resp.StatusCode,
		Sent:     true,
	}
	var eb errorBody
	if len(body) > 0 && json.Unmarshal(body, &eb) == nil && (eb.Error != "" || eb.Message != "" || len(eb.Fields) > 0) {
		e.Type = sanitize(eb.Error, maxErrorType)
		e.Message = sanitize(eb.Message, maxErrorText)
		e.Fields = sanitizeFields(eb.Fields)
	} else if len(body) > 0 {
		e.Message = sanitize(string(body), maxErrorText)
	}
	if e.Message == "" && e.Type == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	if e.Kind == KindRateLimited {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

// sanitize makes upstream-controlled text safe for a log line: invalid
// UTF-8 and control characters are dropped, whitespace runs collapse to one
// space, and the result is cut to at most max bytes (on a rune boundary,
// marked with "…").
func sanitize(s string, max int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
		if b.Len() > max {
			break
		}
	}
	out := b.String()
	if len(out) <= max {
		return out
	}
	const ellipsis = "…"
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + ellipsis
}

func sanitizeFields(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make(map[string]string, min(len(names), maxErrorFields))
	for _, name := range names {
		if len(out) == maxErrorFields {
			break
		}
		clean := sanitize(name, maxFieldNameLen)
		if clean == "" {
			continue
		}
		out[clean] = sanitize(in[name], maxErrorText)
	}
	return out
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date; 0
// when absent, malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfterHeader/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d.Round(time.Second), maxRetryAfterHeader)
		}
	}
	return 0
}

// maxRetryAfterHeader caps a parsed Retry-After: a longer wait is a broken
// header, and callers add it to clocks.
const maxRetryAfterHeader = 24 * time.Hour

// transportError classifies a failure with no HTTP response. gotConn says
// whether the transport obtained a connection for the request.
func transportError(endpoint string, err error, gotConn bool) *Error {
	return &Error{
		Kind:     KindUnavailable,
		Endpoint: endpoint,
		Sent:     gotConn || !neverSent(err),
		Err:      err,
	}
}

// neverSent reports whether err certainly happened before any request byte
// could reach the server: name resolution, connecting, or the TLS handshake.
// Anything else (a reset, EOF, a timeout after connecting) may have reached
// the server.
func neverSent(err error) bool {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var certErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	var alertErr tls.AlertError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	switch {
	case errors.As(err, &dnsErr),
		errors.As(err, &certErr),
		errors.As(err, &recErr),
		errors.As(err, &alertErr),
		errors.As(err, &unknownAuth),
		errors.As(err, &hostErr),
		errors.As(err, &invalidCert),
		errors.Is(err, syscall.ECONNREFUSED):
		return true
	case errors.As(err, &opErr):
		return opErr.Op == "dial" || opErr.Op == "proxyconnect"
	}
	return false
}
