package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// committed is the file `go generate ./keycrypto` maintains.
const committed = "../../testdata/vectors.json"

// TestCommittedVectorsAreCurrent: regenerating from the committed file
// reproduces it byte for byte, so a change to the generator or the test
// pool that is not regenerated and committed fails here, not in another
// language's client.
func TestCommittedVectorsAreCurrent(t *testing.T) {
	want, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "vectors.json")
	if err := os.WriteFile(out, want, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("keycrypto/testdata/vectors.json is stale: run go generate ./keycrypto and commit it")
	}
}

// TestBrokenCiphertextIsReplaced: a stored block that no longer opens to
// its plaintext is made afresh rather than kept.
func TestBrokenCiphertextIsReplaced(t *testing.T) {
	data, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one hex digit of the first ciphertext.
	i := bytes.Index(data, []byte(`"ciphertext_hex": "`)) + len(`"ciphertext_hex": "`) + 10
	broken := bytes.Clone(data)
	if broken[i] == '0' {
		broken[i] = '1'
	} else {
		broken[i] = '0'
	}
	out := filepath.Join(t.TempDir(), "vectors.json")
	if err := os.WriteFile(out, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, broken) || bytes.Equal(got, data) {
		t.Fatal("the broken ciphertext was kept (or the file did not change at all)")
	}
}
