package upstream

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// FuzzSanitize: whatever the upstream sends, the text kept for logs is
// bounded, valid UTF-8 and free of control characters.
func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"", "plain", "a\r\nb", "\x00\x1b[31m", "\xff\xfe", strings.Repeat("é", 300), "\u202e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := sanitize(s, maxErrorText)
		if len(got) > maxErrorText || !utf8.ValidString(got) {
			t.Fatalf("sanitize(%q) = %q: over the bound or invalid UTF-8", s, got)
		}
		for _, r := range got {
			if unicode.IsControl(r) || (unicode.IsSpace(r) && r != ' ') {
				t.Fatalf("sanitize(%q) = %q keeps %U", s, got, r)
			}
		}
	})
}

// FuzzStatusError: any error body and Retry-After yields a classified,
// bounded error.
func FuzzStatusError(f *testing.F) {
	f.Add(400, `{"error":"validation_error","message":"bad","fields":{"checksum":"x"}}`, "")
	f.Add(429, `{"error":"rate_limited"}`, "3")
	f.Add(429, ``, "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add(502, `<html>bad gateway</html>`, "")
	f.Add(409, `{"fields":{"a":1}}`, "")
	f.Fuzz(func(t *testing.T, status int, body, retryAfter string) {
		if status < 100 || status > 999 {
			return
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{"Retry-After": {retryAfter}}}
		e := statusError("POST /v1/partner/keys", resp, []byte(body), time.Unix(1_700_000_000, 0))
		if e.Kind != kindForStatus(status) || e.Status != status || !e.Sent {
			t.Fatalf("statusError(%d) = %+v", status, e)
		}
		if len(e.Message) > maxErrorText || len(e.Type) > maxErrorType || len(e.Fields) > maxErrorFields {
			t.Fatalf("unbounded error: %+v", e)
		}
		if e.RetryAfter < 0 || e.RetryAfter > 24*time.Hour {
			t.Fatalf("RetryAfter %v out of range", e.RetryAfter)
		}
		if msg := e.Error(); strings.ContainsAny(msg, "\r\n\x00") {
			t.Fatalf("Error() = %q holds control characters", msg)
		}
	})
}

// FuzzDecodeAssignKey: a decoded response always has what the caller must
// verify and record; anything else is a protocol error, never a panic.
func FuzzDecodeAssignKey(f *testing.F) {
	f.Add([]byte(assignOK), false)
	f.Add([]byte(assignSignedOK), true)
	f.Add([]byte(`{"key_id":"k","public_key":"zz","signature":"s"}`), false)
	f.Add([]byte(`null`), false)
	f.Fuzz(func(t *testing.T, raw []byte, signWith bool) {
		r, err := decodeAssignKey(raw, signWith)
		if err != nil {
			if e, ok := errors.AsType[*Error](err); !ok || e.Kind != KindProtocol {
				t.Fatalf("error %v is not KindProtocol", err)
			}
			return
		}
		if r.KeyID == "" || r.PublicKey == "" || !isHex(r.PublicKey) || r.Signature == "" || (signWith && r.SignedPayload == "") {
			t.Fatalf("decoded an incomplete response: %+v", r)
		}
	})
}

// FuzzDecodeBackup: same for the store responses.
func FuzzDecodeBackup(f *testing.F) {
	f.Add([]byte(`{"backup_id":"b","backup_type":"data","data_size":1,"metadata":{"stored_at":"2026-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"backup_id":""}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, _, _, err := decodeBackup(endpointSecureData, raw, "data")
		if err != nil {
			if e, ok := errors.AsType[*Error](err); !ok || e.Kind != KindProtocol {
				t.Fatalf("error %v is not KindProtocol", err)
			}
			return
		}
		if r.BackupID == "" || r.BackupType != "data" {
			t.Fatalf("decoded an incomplete response: %+v", r)
		}
	})
}
