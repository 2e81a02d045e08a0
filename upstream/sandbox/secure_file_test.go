package sandbox_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// TestSecureFileFailures covers the secure/file rows: 413 over the limit,
// 415 for a file part that is not application/octet-stream, 400 for a
// malformed form and 404 for an unknown key. None of them stores anything.
func TestSecureFileFailures(t *testing.T) {
	const limit = 4096
	h := start(t, sandbox.Config{MaxFileBytes: limit, DataDir: t.TempDir()})
	a := h.assign(assignRequest("alice", "org-1"))
	file := func(n int) formPart {
		return formPart{name: "file", filename: "f.bin", contentType: "application/octet-stream", data: bytes.Repeat([]byte{7}, n)}
	}
	key := formPart{name: "public_key", value: a.PublicKey}
	cases := []struct {
		name    string
		parts   []formPart
		status  int
		errType string
		field   string
	}{
		{"one byte over the limit", []formPart{key, file(limit + 1)}, 413, "payload_too_large", ""},
		{"far over the limit", []formPart{key, file(2 << 20)}, 413, "payload_too_large", ""},
		{"file part text/plain", []formPart{key, {name: "file", filename: "f.txt", contentType: "text/plain", data: []byte("x")}}, 415, "unsupported_media_type", ""},
		{"file part without Content-Type", []formPart{key, {name: "file", filename: "f.bin", contentType: "-", data: []byte("x")}}, 415, "unsupported_media_type", ""},
		{"file part application/json", []formPart{key, {name: "file", filename: "f.json", contentType: "application/json", data: []byte("{}")}}, 415, "unsupported_media_type", ""},
		{"no public_key part", []formPart{file(10)}, 400, "invalid_request", "public_key"},
		{"no file part", []formPart{key}, 400, "invalid_request", "file"},
		{"empty file", []formPart{key, file(0)}, 400, "invalid_request", "file"},
		{"public_key not hex", []formPart{{name: "public_key", value: strings.Repeat("zz", 20)}, file(10)}, 400, "invalid_request", "public_key"},
		{"public_key too short", []formPart{{name: "public_key", value: "abcd"}, file(10)}, 400, "invalid_request", "public_key"},
		{"public_key twice", []formPart{key, key, file(10)}, 400, "invalid_request", "public_key"},
		{"unexpected part", []formPart{key, file(10), {name: "padding_type", value: "OAEP"}}, 400, "invalid_request", "padding_type"},
		{"metadata not JSON", []formPart{key, file(10), {name: "metadata", value: "description=x"}}, 400, "invalid_request", "metadata"},
		{"metadata field not a string", []formPart{key, file(10), {name: "metadata", value: `{"description":5}`}}, 400, "invalid_request", "metadata.description"},
		{"unknown key", []formPart{{name: "public_key", value: strings.Repeat("ab", 550)}, file(10)}, 404, "not_found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, ct := multipartBody(t, tc.parts)
			resp := h.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, ct, bytes.NewReader(body))
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
			}
			e := resp.errorBody(t)
			if e.Error != tc.errType {
				t.Errorf("error %q, want %q (%s)", e.Error, tc.errType, e.Message)
			}
			if tc.field != "" && e.Fields[tc.field] == "" {
				t.Errorf("fields lack %q: %+v", tc.field, e)
			}
			if tc.status == http.StatusRequestEntityTooLarge && !resp.closed {
				t.Errorf("413 without Connection: close: the server would read more of the upload before answering")
			}
		})
	}
	t.Run("body not multipart", func(t *testing.T) {
		resp := h.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, "application/octet-stream", strings.NewReader("xx"))
		if resp.status != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d, want 415", resp.status)
		}
	})
	t.Run("multipart without boundary", func(t *testing.T) {
		resp := h.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, "multipart/form-data", strings.NewReader("xx"))
		if resp.status != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.status)
		}
	})
	t.Run("no closing boundary", func(t *testing.T) {
		body, ct := multipartBody(t, []formPart{key, file(10)})
		cut := body[:bytes.LastIndex(body, []byte("--"))-10]
		resp := h.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, ct, bytes.NewReader(cut))
		if resp.status != http.StatusBadRequest {
			t.Fatalf("status %d, want 400: %s", resp.status, resp.body)
		}
	})
	assertNothingStored(t, h)

	// Exactly at the limit is accepted.
	body, ct := multipartBody(t, []formPart{file(limit), key})
	if resp := h.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, ct, bytes.NewReader(body)); resp.status != http.StatusOK {
		t.Fatalf("file of exactly the limit: status %d: %s", resp.status, resp.body)
	}
	if b := h.inspect.Backups(t); len(b) != 1 || b[0].SizeBytes != limit {
		t.Fatalf("backups after the accepted upload: %+v", b)
	}
}

// assertNothingStored checks no backup is recorded and no upload is left
// staged or stored on disk.
func assertNothingStored(t *testing.T, h *harness) {
	t.Helper()
	if b := h.inspect.Backups(t); len(b) != 0 {
		t.Fatalf("%d backups stored: %+v", len(b), b)
	}
	dir := h.dataDir
	if dir == "" {
		return
	}
	for _, sub := range []string{"uploads", "backups"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("%s/ holds %d files after failed uploads", sub, len(entries))
		}
	}
}

// TestSecureFileCutOff covers "connection dropped mid-store": a body cut
// off by the client, over a raw TCP connection and through a body reader
// that fails midway, stores nothing; the retry then stores exactly one
// backup.
func TestSecureFileCutOff(t *testing.T) {
	h := start(t, sandbox.Config{DataDir: t.TempDir()})
	a := h.assign(assignRequest("alice", "org-1"))
	fileBytes := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	body, ct := multipartBody(t, []formPart{
		{name: "public_key", value: a.PublicKey},
		{name: "file", filename: "f.bin", contentType: "application/octet-stream", data: fileBytes},
	})

	t.Run("raw TCP, Content-Length, closed mid-file", func(t *testing.T) {
		conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", h.http.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
			sandbox.PathSecureFile, sandbox.DevPartnerToken, ct, len(body))
		if _, err := conn.Write(body[:len(body)/2]); err != nil {
			t.Fatal(err)
		}
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		h.logs.WaitFor(t, "path="+sandbox.PathSecureFile, "status=400")
		assertNothingStored(t, h)
	})

	t.Run("raw TCP, chunked, last chunk never sent", func(t *testing.T) {
		conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", h.http.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(conn)
		fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
			sandbox.PathSecureFile, sandbox.DevPartnerToken, ct)
		// Everything but the closing boundary, in chunks; no terminating chunk.
		cut := body[:bytes.LastIndex(body, []byte("\r\n--"))]
		for len(cut) > 0 {
			n := min(len(cut), 32<<10)
			fmt.Fprintf(w, "%x\r\n", n)
			_, _ = w.Write(cut[:n]) // a bufio.Writer keeps its first error for Flush, checked below
			_, _ = w.WriteString("\r\n")
			cut = cut[n:]
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		h.logs.WaitCount(t, 2, "path="+sandbox.PathSecureFile, "status=400")
		assertNothingStored(t, h)
	})

	t.Run("client body reader fails midway", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write(body[:len(body)/2]) // the reader side fails the request either way
			pw.CloseWithError(errors.New("caller went away"))
		}()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.http.URL+sandbox.PathSecureFile, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+sandbox.DevPartnerToken)
		req.Header.Set("Content-Type", ct)
		resp, err := h.client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("the aborted request got an answer: %d", resp.StatusCode)
		}
		h.logs.WaitCount(t, 3, "path="+sandbox.PathSecureFile, "status=400")
		assertNothingStored(t, h)
	})

	// The retry reaches the consistent end state: exactly one backup.
	resp := h.do(http.MethodPost, sandbox.PathSecureFile, sandbox.DevPartnerToken, ct, bytes.NewReader(body))
	if resp.status != http.StatusOK {
		t.Fatalf("retry: status %d: %s", resp.status, resp.body)
	}
	b := h.inspect.Backups(t)
	if len(b) != 1 || b[0].SizeBytes != int64(len(fileBytes)) || b[0].SHA256 != sha256Hex(fileBytes) {
		t.Fatalf("after the retry: %+v", b)
	}
}
