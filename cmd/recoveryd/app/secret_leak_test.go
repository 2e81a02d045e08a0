package app

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// Canaries: values no log line, span, error or file of recoveryd may ever
// hold, in any encoding. Spaces keep them from passing as identifiers, so a
// request carrying one in an identifier field is refused, not stored.
var (
	canaryPlaintext = []byte("CANARY 7Q2X seed phrase that must never surface 91ZK")
	canaryFileText  = []byte("CANARY 3M7P file bytes that must never surface 48TW ")
	canaryToken     = "canary-bearer-token-4N8W-must-never-surface"
	// canaryWrongToken is presented but listed nowhere; canaryOtherToken
	// belongs to a caller of another organisation.
	canaryWrongToken = "canary-wrong-token-6H1V-must-never-surface"
	canaryOtherToken = "canary-other-org-token-2D5R-must-never-surface"
)

// secretForms are the strings that betray secret however it is embedded:
// raw, hex in either case, and base64 (standard and URL alphabets, padded or
// not) at each of the three alignments it can have inside a longer value.
// For base64 only the characters that depend on the secret alone are kept, so
// a form is found whatever bytes surround the secret.
func secretForms(secret []byte) []string {
	forms := []string{string(secret), hex.EncodeToString(secret), strings.ToUpper(hex.EncodeToString(secret))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for offset := range 3 {
			shifted := append(make([]byte, offset), secret...)
			encoded := enc.EncodeToString(shifted)
			start := 0
			if offset > 0 {
				start = 4 // the first group mixes in the bytes before the secret
			}
			end := 4 * (len(shifted) / 3) // the last, partial group mixes in the bytes after
			forms = append(forms, encoded[start:end])
		}
	}
	return forms
}

// leakChecker looks for every form of every secret.
type leakChecker struct {
	secrets map[string][]byte // name → secret
}

// check reports each secret that appears in haystack, found where.
func (c *leakChecker) check(t *testing.T, where string, haystack []byte) {
	t.Helper()
	for name, secret := range c.secrets {
		for _, form := range secretForms(secret) {
			if i := bytes.Index(haystack, []byte(form)); i >= 0 {
				lo, hi := max(0, i-120), min(len(haystack), i+len(form)+120)
				t.Errorf("%s holds the %s (as %q):\n…%s…", where, name, form, haystack[lo:hi])
				break
			}
		}
	}
}

// TestSecretForms: the forms find a secret encoded inside other bytes
// at every offset; the leak test is only as good as this.
func TestSecretForms(t *testing.T) {
	secret := canaryPlaintext
	for offset := range 4 {
		for _, suffix := range []int{0, 1, 2} {
			value := append(append(bytes.Repeat([]byte{0xA5}, offset), secret...), bytes.Repeat([]byte{0x5A}, suffix)...)
			for name, encoded := range map[string]string{
				"raw":        string(value),
				"hex":        hex.EncodeToString(value),
				"HEX":        strings.ToUpper(hex.EncodeToString(value)),
				"std":        base64.StdEncoding.EncodeToString(value),
				"raw std":    base64.RawStdEncoding.EncodeToString(value),
				"url":        base64.URLEncoding.EncodeToString(value),
				"raw url":    base64.RawURLEncoding.EncodeToString(value),
				"in JSON":    fmt.Sprintf(`{"v":%q}`, base64.StdEncoding.EncodeToString(value)),
				"in a quote": fmt.Sprintf("%q", value),
			} {
				found := false
				for _, form := range secretForms(secret) {
					found = found || strings.Contains(encoded, form)
				}
				if !found {
					t.Errorf("offset %d, suffix %d: %s encoding not detected: %s", offset, suffix, name, encoded)
				}
			}
		}
	}
}

// TestNoSecretLeaks sends the canaries through every RPC, in calls that
// succeed and calls that fail for each reason a secret-bearing request can
// fail (caller authentication is on: canaryToken is a real caller's token,
// and refused and unauthorized callers send plaintext too), and then searches every log line (recoveryd's and the upstream
// emulator's, at debug level), every span (names, attributes, events,
// statuses), every error a caller received (message and details) and every
// file under the data directory.
func TestNoSecretLeaks(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.MaxFileBytes = 48 << 10
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"),
		testCaller{name: "leak-caller", token: canaryToken, orgs: []string{testCustomerID}},
		testCaller{name: "leak-other", token: canaryOtherToken, orgs: []string{"other-org"}})
	srv := startReady(t, cfg, log, Options{SpanProcessor: recorder})
	c := srv.client
	ctx := withToken(testCtx(t), canaryToken)

	key := assignKey(t, ctx, c, "leak-user")
	pub, err := keycrypto.ParsePublicKeyHex(key.GetPublicKeyHex())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := keycrypto.Encrypt(rand.Reader, pub, canaryPlaintext)
	if err != nil {
		t.Fatal(err)
	}
	file := bytes.Repeat(canaryFileText, 600) // 32 KB: under the limit
	big := bytes.Repeat(canaryFileText, 1200) // 64 KB: over it
	const unknownKey = "7e0f6a1b-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
	checker := &leakChecker{secrets: map[string][]byte{
		"plaintext":                canaryPlaintext,
		"file bytes":               canaryFileText,
		"caller's token":           []byte(canaryToken),
		"unknown token":            []byte(canaryWrongToken),
		"other caller's token":     []byte(canaryOtherToken),
		"sealed ciphertext":        sealed,
		"upstream token":           []byte(sandbox.DevPartnerToken),
		"sealed ciphertext's head": sealed[:48],
		"sealed ciphertext's tail": sealed[len(sealed)-48:],
	}}

	data := func(k *recoveryv1.SecureDataRequest) error { _, err := c.SecureData(ctx, k); return err }
	byKey := func(keyID string, plaintext []byte, meta *recoveryv1.BackupMetadata) *recoveryv1.SecureDataRequest {
		return &recoveryv1.SecureDataRequest{
			Key:      &recoveryv1.SecureDataRequest_KeyId{KeyId: keyID},
			Payload:  &recoveryv1.SecureDataRequest_Plaintext{Plaintext: plaintext},
			Metadata: meta,
		}
	}
	withSealed := func(keyHex string, ciphertext []byte, checksum string) *recoveryv1.SecureDataRequest {
		return &recoveryv1.SecureDataRequest{
			Key:     &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: keyHex},
			Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: &recoveryv1.SealedPayload{Ciphertext: ciphertext, ChecksumSha256: checksum}},
		}
	}
	fileWith := func(keyID string, size int64, sum string) *recoveryv1.SecureFileRequest {
		h := fileHeader(keyID)
		if size > 0 {
			h.GetHeader().SizeBytes = &size
		}
		h.GetHeader().Sha256 = sum
		return h
	}
	upload := func(h *recoveryv1.SecureFileRequest, chunks ...[]byte) error {
		_, err := sendFile(ctx, c, h, chunks...)
		return err
	}
	otherKey := strings.Repeat("ab", 64) // hex of no registered key
	canaryBadID := string(canaryPlaintext)

	calls := []struct {
		name   string
		wantOK bool
		call   func() error
	}{
		{"AssignKey: canary in customer_name, no environment", false, func() error {
			r := assignKeyRequest("leak-user-2", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_UNSPECIFIED)
			r.Organisation.CustomerName = string(canaryPlaintext)
			_, err := c.AssignKey(ctx, r)
			return err
		}},
		{"AssignKey: canary as user_identifier", false, func() error {
			_, err := c.AssignKey(ctx, assignKeyRequest(canaryBadID, recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
			return err
		}},
		{"AssignKey: canary in package_name with a control character", false, func() error {
			r := assignKeyRequest("leak-user-3", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
			r.Package.PackageName = string(canaryPlaintext) + "\x01"
			_, err := c.AssignKey(ctx, r)
			return err
		}},
		{"SecureData: plaintext", true, func() error { return data(byKey(key.GetKeyId(), canaryPlaintext, nil)) }},
		{"SecureData: plaintext, idempotent twice", true, func() error {
			r := byKey(key.GetKeyId(), canaryPlaintext, nil)
			r.IdempotencyKey = "leak-test-1"
			if err := data(r); err != nil {
				return err
			}
			return data(r)
		}},
		{"SecureData: plaintext to an unknown key", false, func() error { return data(byKey(unknownKey, canaryPlaintext, nil)) }},
		{"SecureData: plaintext to an unregistered public key", false, func() error {
			return data(&recoveryv1.SecureDataRequest{
				Key:     &recoveryv1.SecureDataRequest_PublicKeyHex{PublicKeyHex: otherKey},
				Payload: &recoveryv1.SecureDataRequest_Plaintext{Plaintext: canaryPlaintext},
			})
		}},
		{"SecureData: plaintext too large", false, func() error {
			return data(byKey(key.GetKeyId(), bytes.Repeat(canaryPlaintext, 10), nil))
		}},
		{"SecureData: plaintext with invalid metadata", false, func() error {
			return data(byKey(key.GetKeyId(), canaryPlaintext, &recoveryv1.BackupMetadata{Description: "bad\x01"}))
		}},
		{"SecureData: canary as key_id", false, func() error { return data(byKey(canaryBadID, canaryPlaintext, nil)) }},
		{"SecureData: sealed", true, func() error {
			return data(withSealed(key.GetPublicKeyHex(), sealed, keycrypto.Checksum(canaryPlaintext)))
		}},
		{"SecureData: sealed with the wrong checksum", false, func() error {
			return data(withSealed(key.GetPublicKeyHex(), sealed, strings.Repeat("0", 64)))
		}},
		{"SecureData: sealed, wrong length", false, func() error {
			return data(withSealed(key.GetPublicKeyHex(), append(bytes.Clone(sealed[:300]), canaryPlaintext...), keycrypto.Checksum(canaryPlaintext)))
		}},
		{"SecureData: sealed to an unregistered public key", false, func() error {
			return data(withSealed(otherKey, sealed, keycrypto.Checksum(canaryPlaintext)))
		}},
		{"SecureFile: file", true, func() error {
			return upload(fileHeader(key.GetKeyId()), file[:service.MinChunkBytes], file[service.MinChunkBytes:])
		}},
		{"SecureFile: digest mismatch", false, func() error {
			return upload(fileWith(key.GetKeyId(), int64(len(file)), strings.Repeat("0", 64)), file)
		}},
		{"SecureFile: declared size mismatch", false, func() error {
			return upload(fileWith(key.GetKeyId(), 10, ""), file)
		}},
		{"SecureFile: over --max-file-bytes", false, func() error {
			return upload(fileHeader(key.GetKeyId()), big[:2*service.MinChunkBytes], big[2*service.MinChunkBytes:])
		}},
		{"SecureFile: unknown key", false, func() error { return upload(fileHeader(unknownKey), file) }},
		{"SecureFile: canary as key_id", false, func() error { return upload(fileHeader(canaryBadID), file) }},
		{"SecureFile: chunk before the header", false, func() error { return upload(fileChunk(file), file) }},
		{"SecureFile: a second header", false, func() error {
			stream, err := c.SecureFile(ctx)
			if err != nil {
				return err
			}
			for _, m := range []*recoveryv1.SecureFileRequest{fileHeader(key.GetKeyId()), fileChunk(file), fileHeader(key.GetKeyId())} {
				if stream.Send(m) != nil {
					break
				}
			}
			_, err = stream.CloseAndRecv()
			return err
		}},
		{"SecureData: plaintext with an unknown token", false, func() error {
			_, err := c.SecureData(withToken(testCtx(t), canaryWrongToken), byKey(key.GetKeyId(), canaryPlaintext, nil))
			return err
		}},
		{"SecureData: plaintext from a caller of another organisation", false, func() error {
			_, err := c.SecureData(withToken(testCtx(t), canaryOtherToken), byKey(key.GetKeyId(), canaryPlaintext, nil))
			return err
		}},
		{"SecureFile: file with an unknown token", false, func() error {
			_, err := sendFile(withToken(testCtx(t), canaryWrongToken), c, fileHeader(key.GetKeyId()), file)
			return err
		}},
		{"SecureFile: file from a caller of another organisation", false, func() error {
			_, err := sendFile(withToken(testCtx(t), canaryOtherToken), c, fileHeader(key.GetKeyId()), file)
			return err
		}},
		{"GetKey: canary as key_id", false, func() error {
			_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: canaryBadID})
			return err
		}},
		{"GetKey", true, func() error {
			_, err := c.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: key.GetKeyId()})
			return err
		}},
		{"ListKeys: canary as customer_id", false, func() error {
			_, err := c.ListKeys(ctx, &recoveryv1.ListKeysRequest{CustomerId: canaryBadID})
			return err
		}},
		{"ListKeys: canary as page_token", false, func() error {
			_, err := c.ListKeys(ctx, &recoveryv1.ListKeysRequest{PageToken: base64.RawURLEncoding.EncodeToString(canaryPlaintext)})
			return err
		}},
		{"ListKeys", true, func() error {
			_, err := c.ListKeys(ctx, &recoveryv1.ListKeysRequest{CustomerId: testCustomerID})
			return err
		}},
		{"ListBackups: canary as key_id and page_token", false, func() error {
			_, err := c.ListBackups(ctx, &recoveryv1.ListBackupsRequest{KeyId: canaryBadID, PageToken: string(canaryPlaintext)})
			return err
		}},
		{"ListBackups: canary as page_token", false, func() error {
			_, err := c.ListBackups(ctx, &recoveryv1.ListBackupsRequest{KeyId: key.GetKeyId(), PageToken: string(canaryPlaintext)})
			return err
		}},
		{"ListBackups", true, func() error {
			_, err := c.ListBackups(ctx, &recoveryv1.ListBackupsRequest{KeyId: key.GetKeyId()})
			return err
		}},
	}
	var refusals int
	for _, tc := range calls {
		err := tc.call()
		switch {
		case tc.wantOK && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.wantOK && err == nil:
			t.Errorf("%s succeeded; the case exists to fail", tc.name)
		case err != nil:
			refusals++
			st := status.Convert(err)
			reason, _ := errorDetails(err)
			t.Logf("%s: %s %s", tc.name, st.Code(), reason)
			var detail bytes.Buffer
			detail.WriteString(err.Error())
			detail.WriteString(prototext.Format(st.Proto()))
			for _, d := range st.Details() {
				fmt.Fprintf(&detail, "\n%v", d)
			}
			checker.check(t, tc.name+": the error "+st.Code().String(), detail.Bytes())
		}
	}

	// Stop both servers, so every span has ended and every file is closed.
	if err := srv.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	up.HTTP.Close()

	checker.check(t, "the log", []byte(logs.String()))
	spans := recorder.Ended()
	if len(spans) < len(calls) {
		t.Fatalf("only %d spans recorded for %d calls", len(spans), len(calls))
	}
	for _, s := range spans {
		checker.check(t, "span "+s.Name(), spanText(s))
	}
	var files int
	dataDir, err := os.OpenRoot(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer dataDir.Close()
	err = fs.WalkDir(dataDir.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := fs.ReadFile(dataDir.FS(), path)
		if err != nil {
			return err
		}
		files++
		checker.check(t, "data file "+path, content)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 || refusals < len(calls)/2 {
		t.Fatalf("searched %d data files and %d refusals: the test did not exercise what it claims", files, refusals)
	}
}

// spanText is everything a span exports, as text: name, attributes, events
// with theirs, links with theirs, status and resource.
func spanText(s sdktrace.ReadOnlySpan) []byte {
	var b bytes.Buffer
	writeAttrs := func(attrs []attribute.KeyValue) {
		for _, a := range attrs {
			fmt.Fprintf(&b, " %s=%s", a.Key, a.Value.String())
		}
	}
	b.WriteString(s.Name())
	writeAttrs(s.Attributes())
	for _, e := range s.Events() {
		b.WriteString("\nevent " + e.Name)
		writeAttrs(e.Attributes)
	}
	for _, l := range s.Links() {
		b.WriteString("\nlink")
		writeAttrs(l.Attributes)
	}
	b.WriteString("\nstatus " + s.Status().Code.String() + " " + s.Status().Description)
	b.WriteString("\nresource")
	writeAttrs(s.Resource().Attributes())
	return b.Bytes()
}
