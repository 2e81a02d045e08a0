package sandbox

import (
	"bytes"
	"io"
	"log/slog"
	"mime/multipart"
	"testing"
)

// FuzzAssignKeyBody: any body either parses into a request with every
// required field set, or is a 400 that explains itself; it never panics.
func FuzzAssignKeyBody(f *testing.F) {
	f.Add([]byte(`{"user_identifier":"u","key_type":"rsa4096","key_environment":"HOT","organisation":{"customer_id":"c","customer_name":"C"},"package":{"package_id":"p","package_name":"P"},"sign_with":["key_id"]}`))
	f.Add([]byte(`{"sign_with":[1,"public_key"],"organisation":[]}`))
	f.Add([]byte(`{"user_identifier":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, apiErr := parseJSONObject(body, "Request body")
		if apiErr != nil {
			if apiErr.Status != 400 || apiErr.Message == "" {
				t.Fatalf("bad error %+v", apiErr)
			}
			return
		}
		req, apiErr := parseAssignKey(obj)
		if apiErr != nil {
			if apiErr.Status != 400 || len(apiErr.Fields) == 0 {
				t.Fatalf("400 without fields: %+v", apiErr)
			}
			return
		}
		if req.UserIdentifier == "" || req.CustomerID == "" || req.PackageName == "" ||
			(req.KeyEnvironment != EnvironmentHot && req.KeyEnvironment != EnvironmentCold) {
			t.Fatalf("accepted an incomplete request %+v", req)
		}
	})
}

// FuzzSecureFileBody: any multipart body is read to an answer without a
// panic, and a rejected body leaves nothing staged.
func FuzzSecureFileBody(f *testing.F) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.SetBoundary("fuzzboundary")
	_ = mw.WriteField("public_key", "abcdef0123456789abcdef0123456789")
	w, _ := mw.CreatePart(map[string][]string{
		"Content-Disposition": {`form-data; name="file"; filename="f"`},
		"Content-Type":        {"application/octet-stream"},
	})
	_, _ = w.Write([]byte("ciphertext"))
	_ = mw.WriteField("metadata", `{"description":"d"}`)
	_ = mw.Close()
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:buf.Len()/2])
	f.Add([]byte("--fuzzboundary\r\n\r\n--fuzzboundary--"))
	s := &Server{cfg: Config{MaxFileBytes: 64}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	st, err := openStore("")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		up, err := st.newUpload(s.cfg.MaxFileBytes)
		if err != nil {
			t.Fatal(err)
		}
		defer up.discard()
		form, apiErr := s.readFileForm(multipart.NewReader(bytes.NewReader(body), "fuzzboundary"), up)
		if apiErr != nil {
			if apiErr.Message == "" || apiErr.Status < 400 {
				t.Fatalf("bad error %+v", apiErr)
			}
			return
		}
		if form.publicKey == "" || up.size == 0 || up.size > s.cfg.MaxFileBytes {
			t.Fatalf("accepted form %+v with %d file bytes", form, up.size)
		}
	})
}
