package app

import (
	"bytes"
	"os"
	"testing"
)

// TestREADMEDocumentsSecurity keeps the README's Security section in step
// with the code: the operator's recipes (hashing a token, SIGHUP, the
// guard's flags) are there. Its refusal reasons are rows of the error
// reasons table, which TestREADMEDocumentsEveryReasonAndFlag checks against
// the ErrorReason enum.
func TestREADMEDocumentsSecurity(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
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
