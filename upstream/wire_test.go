package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// capturedRequest is the wire form of one request, rendered stably for a
// golden file: the headers the contract cares about and the parsed body.
type capturedRequest struct {
	Method           string            `json:"method"`
	Path             string            `json:"path"`
	Headers          map[string]string `json:"headers"`
	TransferEncoding []string          `json:"transfer_encoding,omitempty"`
	ContentLength    int64             `json:"content_length"`
	JSON             json.RawMessage   `json:"json,omitempty"`
	Parts            []capturedPart    `json:"parts,omitempty"`
}

type capturedPart struct {
	Name        string `json:"name"`
	Filename    string `json:"filename,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Content     string `json:"content"`
}

// capture records r for the golden file; multipart boundaries are random,
// so the body is recorded part by part.
func capture(t *testing.T, r *http.Request) capturedRequest {
	t.Helper()
	c := capturedRequest{
		Method:           r.Method,
		Path:             r.URL.Path,
		Headers:          map[string]string{},
		TransferEncoding: r.TransferEncoding,
		ContentLength:    r.ContentLength,
	}
	for _, h := range []string{"Authorization", "Accept", "Content-Type", "User-Agent"} {
		c.Headers[h] = r.Header.Get(h)
	}
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", r.Header.Get("Content-Type"), err)
	}
	if mediaType == "multipart/form-data" {
		c.Headers["Content-Type"] = mediaType + "; boundary=<random>"
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("reading multipart body: %v", err)
			}
			content, err := io.ReadAll(p)
			if err != nil {
				t.Fatalf("reading part %s: %v", p.FormName(), err)
			}
			c.Parts = append(c.Parts, capturedPart{
				Name: p.FormName(), Filename: p.FileName(),
				ContentType: p.Header.Get("Content-Type"), Content: string(content),
			})
		}
		return c
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, body, "", "  "); err != nil {
		t.Fatalf("request body is not JSON: %v", err)
	}
	c.JSON = indented.Bytes()
	return c
}

// TestWireFormat pins the exact requests the client sends against golden
// files in testdata/ (go test -run TestWireFormat -update rewrites them).
func TestWireFormat(t *testing.T) {
	ciphertext := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 4)
	tests := []struct {
		name  string
		reply string
		call  func(context.Context, *Client) error
	}{
		{"assign_key", assignSignedOK, func(ctx context.Context, c *Client) error {
			r := validAssign()
			r.SignWith = []string{"external_customer_id", "external_package_id", "key_id", "key_fingerprint"}
			_, err := c.AssignKey(ctx, r)
			return err
		}},
		{"assign_key_minimal", assignOK, func(ctx context.Context, c *Client) error {
			r := validAssign()
			r.KeyEnvironment = KeyEnvironmentHot
			_, err := c.AssignKey(ctx, r)
			return err
		}},
		{"secure_data", `{"backup_id":"0f6f7b39-3c55-4b7f-a7a4-2b0c3c8b9f11"}`, func(ctx context.Context, c *Client) error {
			_, err := c.SecureData(ctx, SecureDataRequest{
				PublicKey:  "30820222300d06092a864886f70d0101010500",
				Ciphertext: ciphertext,
				Checksum:   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
				Metadata:   Metadata{Description: "Encrypted key shares", ContentType: "application/json", OriginalFilename: "key_shares.json"},
			})
			return err
		}},
		{"secure_data_no_metadata", `{"backup_id":"0f6f7b39-3c55-4b7f-a7a4-2b0c3c8b9f11"}`, func(ctx context.Context, c *Client) error {
			_, err := c.SecureData(ctx, SecureDataRequest{PublicKey: "3082", Ciphertext: ciphertext, Checksum: strings.Repeat("0", 64),
				Metadata: Metadata{Description: "only a description"}})
			return err
		}},
		{"secure_file", `{"backup_id":"0f6f7b39-3c55-4b7f-a7a4-2b0c3c8b9f11","backup_type":"file"}`, func(ctx context.Context, c *Client) error {
			_, err := c.SecureFile(ctx, SecureFileRequest{
				PublicKey: "30820222300d06092a864886f70d0101010500",
				Metadata:  Metadata{Description: "Wallet seed backup", OriginalFilename: "encrypted_backup.bin"},
				File:      strings.NewReader("ciphertext bytes\x00\x01\x02"),
			})
			return err
		}},
		{"secure_file_no_metadata", `{"backup_id":"0f6f7b39-3c55-4b7f-a7a4-2b0c3c8b9f11","backup_type":"file"}`, func(ctx context.Context, c *Client) error {
			_, err := c.SecureFile(ctx, SecureFileRequest{PublicKey: "3082", File: strings.NewReader("x")})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got capturedRequest
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = capture(t, r)
				_, _ = io.WriteString(w, tt.reply)
			}))
			defer srv.Close()
			if err := tt.call(context.Background(), newTestClient(t, srv.URL)); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(got); err != nil {
				t.Fatal(err)
			}
			rendered := buf.Bytes()
			golden := filepath.Join("testdata", tt.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, rendered, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(rendered, want) {
				t.Errorf("request differs from %s (rerun with -update if the change is intended):\n got: %s\nwant: %s", golden, rendered, want)
			}
		})
	}
}
