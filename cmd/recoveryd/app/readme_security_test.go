package app

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestREADMEDocumentsSecurity keeps the README's Security section and error
// table in step with the code: every refusal reason of service/auth has a
// row, and the operator's recipes (hashing a token, SIGHUP, the guard's
// flags) are there.
func TestREADMEDocumentsSecurity(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	authErrors, err := os.ReadFile(filepath.Join("..", "..", "..", "service", "auth", "errors.go"))
	if err != nil {
		t.Fatal(err)
	}
	reasons := regexp.MustCompile(`(?m)^\s*Reason\w+\s*=\s*"([A-Z_]+)"`).FindAllSubmatch(authErrors, -1)
	if len(reasons) == 0 {
		t.Fatal("found no Reason constants in service/auth/errors.go")
	}
	for _, r := range reasons {
		if !bytes.Contains(readme, []byte("| `"+string(r[1])+"` |")) {
			t.Errorf("README's error reasons table lacks %s", r[1])
		}
	}
	for _, want := range []string{
		"## Security",
		`printf %s "$TOKEN" | sha256sum`,
		`kill -HUP`,
		"### The production guard",
		"--upstream-ca-file", "--client-ca", "--tls-cert", "--tls-key", "--caller-tokens-file",
		"PROTO_UTF8", "PROTO_WIRE",
	} {
		if !bytes.Contains(readme, []byte(want)) {
			t.Errorf("README lacks %q", want)
		}
	}
}
