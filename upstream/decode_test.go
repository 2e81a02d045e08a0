package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestContractBreaks: a 2xx whose body lacks what the caller needs is
// KindProtocol, never a half-filled success.
func TestContractBreaks(t *testing.T) {
	assign := func(ctx context.Context, c *Client) error {
		_, err := c.AssignKey(ctx, validAssign())
		return err
	}
	assignSigned := func(ctx context.Context, c *Client) error {
		r := validAssign()
		r.SignWith = []string{"key_id"}
		_, err := c.AssignKey(ctx, r)
		return err
	}
	data := func(ctx context.Context, c *Client) error {
		_, err := c.SecureData(ctx, SecureDataRequest{PublicKey: "3082", Ciphertext: []byte{1}, Checksum: "ab"})
		return err
	}
	file := func(ctx context.Context, c *Client) error {
		_, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: "3082", File: strings.NewReader("x")})
		return err
	}
	tests := []struct {
		name    string
		call    func(context.Context, *Client) error
		body    string
		wantMsg string
	}{
		{"assign empty object", assign, `{}`, "no key_id"},
		{"assign not json", assign, `<html>ok</html>`, "not the assign-key JSON object"},
		{"assign array", assign, `[1,2]`, "not the assign-key JSON object"},
		{"assign no public_key", assign, `{"key_id":"k1","signature":"MEU="}`, "no public_key"},
		{"assign public_key not hex", assign, `{"key_id":"k1","public_key":"30zz","signature":"MEU="}`, "public_key is not hex"},
		{"assign public_key too long", assign, `{"key_id":"k1","public_key":"` + strings.Repeat("a", maxPublicKeyHex+2) + `","signature":"MEU="}`, "public_key is not hex"},
		{"assign no signature", assign, `{"key_id":"k1","public_key":"3082"}`, "no signature"},
		{"assign key_id with newline", assign, `{"key_id":"k1\nforged log line","public_key":"3082","signature":"MEU="}`, "key_id is not a short printable"},
		{"assign key_id wrong type", assign, `{"key_id":42,"public_key":"3082","signature":"MEU="}`, "not the assign-key JSON object"},
		{"assign signed without payload", assignSigned, assignOK, "no signed_payload"},
		{"assign oversized", assign, `{"key_id":"k1","public_key":"3082","signature":"MEU=","pad":"` + strings.Repeat("p", maxJSONBody) + `"}`, "exceeds"},
		{"data no backup_id", data, `{"backup_type":"data"}`, "no backup_id"},
		{"data wrong type", data, `{"backup_id":"b1","backup_type":"file"}`, `backup_type "file"`},
		{"data bad stored_at", data, `{"backup_id":"b1","metadata":{"stored_at":"yesterday"}}`, "stored_at is not RFC 3339"},
		{"data size not a number", data, `{"backup_id":"b1","data_size":"512"}`, "not the backup JSON object"},
		{"file no backup_id", file, `{"backup_type":"file"}`, "no backup_id"},
		{"file wrong type", file, `{"backup_id":"b1","backup_type":"data"}`, `backup_type "data"`},
		{"file empty body", file, ``, "not the backup JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			err := tt.call(context.Background(), newTestClient(t, srv.URL))
			var uerr *Error
			if !errors.As(err, &uerr) || uerr.Kind != KindProtocol || !errors.Is(err, ErrProtocol) || uerr.Status != 200 {
				t.Fatalf("error = %v, want KindProtocol on a 200", err)
			}
			if !strings.Contains(uerr.Message, tt.wantMsg) {
				t.Fatalf("Message = %q, want it to contain %q", uerr.Message, tt.wantMsg)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("Error() %q holds a line break", err)
			}
		})
	}
}

// TestDecodeResponses: every documented response field reaches the typed
// response, and optional ones may be absent or null.
func TestDecodeResponses(t *testing.T) {
	ctx := context.Background()
	t.Run("assign full", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"key_id":"b1f7c0de-2a4c-4f1e-9c3a-8d2e6b5a1f04","public_key":"30820222AB","signature":"MEUCIQD+/==",`+
				`"signed_payload":"{\"external_customer_id\":\"org-123\",\"public_key\":\"30820222AB\"}","signed_fields":["external_customer_id"],`+
				`"customer_id":"org-123","package_id":"pkg-456","metadata":{"customer_name":"Acme Corp","package_name":"Main Workspace"},"future_field":{"x":1}}`)
		}))
		defer srv.Close()
		req := validAssign()
		req.SignWith = []string{"external_customer_id"}
		got, err := newTestClient(t, srv.URL).AssignKey(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		want := &AssignKeyResponse{
			KeyID: "b1f7c0de-2a4c-4f1e-9c3a-8d2e6b5a1f04", PublicKey: "30820222AB", Signature: "MEUCIQD+/==",
			SignedPayload: `{"external_customer_id":"org-123","public_key":"30820222AB"}`, SignedFields: []string{"external_customer_id"},
			CustomerID: "org-123", PackageID: "pkg-456", CustomerName: "Acme Corp", PackageName: "Main Workspace",
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
		sa := got.SignedAssignment()
		if sa.PublicKeyHex != want.PublicKey || sa.SignedPayload != want.SignedPayload || sa.Signature != want.Signature || len(sa.SignedFields) != 1 {
			t.Fatalf("SignedAssignment = %+v", sa)
		}
	})
	t.Run("assign nulls", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"key_id":"k1","public_key":"3082","signature":"MEU=","customer_id":null,"package_id":null,"metadata":{"customer_name":null}}`)
		}))
		defer srv.Close()
		got, err := newTestClient(t, srv.URL).AssignKey(ctx, validAssign())
		if err != nil || got.CustomerID != "" || got.CustomerName != "" || got.SignedPayload != "" {
			t.Fatalf("got %+v, %v", got, err)
		}
	})
	t.Run("secure data", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"backup_id":"0f6f7b39-3c55-4b7f-a7a4-2b0c3c8b9f11","checksum":"e3b0","data_size":512,"backup_type":"data",`+
				`"metadata":{"description":"d","content_type":"application/json","original_filename":"f.json","stored_at":"2026-03-04T05:06:07.5Z","extra":1}}`)
		}))
		defer srv.Close()
		got, err := newTestClient(t, srv.URL).SecureData(ctx, SecureDataRequest{PublicKey: "3082", Ciphertext: []byte{1}, Checksum: "e3b0"})
		if err != nil {
			t.Fatal(err)
		}
		want := &SecureDataResponse{
			BackupID: "0f6f7b39-3c55-4b7f-a7a4-2b0c3c8b9f11", Checksum: "e3b0", DataSize: 512, BackupType: "data",
			Metadata: Metadata{Description: "d", ContentType: "application/json", OriginalFilename: "f.json"},
			StoredAt: time.Date(2026, 3, 4, 5, 6, 7, 500_000_000, time.UTC),
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	})
	t.Run("secure file without optional fields", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, `{"backup_id":"b1"}`)
		}))
		defer srv.Close()
		got, err := newTestClient(t, srv.URL).SecureFile(ctx, SecureFileRequest{PublicKey: "3082", File: strings.NewReader("x")})
		if err != nil {
			t.Fatal(err)
		}
		if want := (&SecureFileResponse{BackupID: "b1", BackupType: "file"}); !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	})
}
