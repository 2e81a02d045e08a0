package app

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// readmePath is the repository's README, relative to this package.
var readmePath = filepath.Join("..", "..", "..", "README.md")

// readmeAddr is the address the README's examples call.
const readmeAddr = "127.0.0.1:50051"

// TestREADMEExamples runs the README's ```bash blocks, in order, as one
// bash script against a real recoveryd on a TCP port: the examples a new
// user copies must work.
func TestREADMEExamples(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```bash\n(.*?)\n```").FindAllSubmatch(readme, -1)
	if len(blocks) < 8 {
		t.Fatalf("README has %d runnable examples, want one per RPC and more", len(blocks))
	}
	var script bytes.Buffer
	for _, b := range blocks {
		script.Write(b[1])
		script.WriteByte('\n')
	}

	// Every tool the examples use; a missing one fails the test.
	var path []string
	for _, tool := range []struct{ name, install string }{
		{"grpcurl", "run `make tools`"},
		{"ghz", "run `make tools`"},
		{"openssl", "run `make system-deps`"},
		{"jq", "install jq (apt-get install jq)"},
		{"bash", "install bash"},
	} {
		path = append(path, filepath.Dir(findTool(t, tool.name, tool.install)))
	}
	srv, addr := startTCPServer(t)

	cmd := exec.CommandContext(testCtx(t), "bash", "-euo", "pipefail", "-c", strings.ReplaceAll(script.String(), readmeAddr, addr))
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PATH="+strings.Join(path, ":")+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README examples failed: %v\n%s", err, out)
	}

	// They did what the README says: one key for alice, a plaintext and a
	// sealed data backup and a 3,000,000-byte file backup.
	keys, err := srv.client.ListKeys(testCtx(t), &recoveryv1.ListKeysRequest{UserIdentifier: "alice"})
	if err != nil || len(keys.GetKeys()) != 1 {
		t.Fatalf("ListKeys(alice) = %v, %v; want one key", keys, err)
	}
	backups, err := srv.client.ListBackups(testCtx(t), &recoveryv1.ListBackupsRequest{KeyId: keys.GetKeys()[0].GetKeyId()})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, b := range backups.GetBackups() {
		kinds = append(kinds, b.GetBackupType().String())
	}
	if strings.Join(kinds, ",") != "BACKUP_TYPE_FILE,BACKUP_TYPE_DATA,BACKUP_TYPE_DATA" || backups.GetBackups()[0].GetSizeBytes() != 3000000 {
		t.Errorf("backups after the README examples = %v", backups.GetBackups())
	}
}

// TestREADMEDocumentsEveryReason keeps the README's reasons table in step
// with the code: the error reasons table lists exactly the contract's
// ErrorReason values (by their wire names). The flags table is checked in
// package main, where the flags are.
func TestREADMEDocumentsEveryReason(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := bytes.Cut(readme, []byte("\n## Error reasons\n"))
	if !ok {
		t.Fatal("README has no \"## Error reasons\" section")
	}
	section, _, _ = bytes.Cut(section, []byte("\n## "))
	// The first cell of each row names one or more reasons.
	documented := map[string]bool{}
	for _, row := range regexp.MustCompile("(?m)^\\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \\|").FindAllSubmatch(section, -1) {
		for _, name := range regexp.MustCompile("`([A-Z_]+)`").FindAllSubmatch(row[1], -1) {
			documented[string(name[1])] = true
		}
	}
	sent := map[string]bool{}
	for number, name := range recoveryv1.ErrorReason_name {
		if recoveryv1.ErrorReason(number) == recoveryv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		wire := strings.TrimPrefix(name, "ERROR_REASON_")
		sent[wire] = true
		if !documented[wire] {
			t.Errorf("README's error reasons table lacks %s", wire)
		}
	}
	for wire := range documented {
		if !sent[wire] {
			t.Errorf("README's error reasons table lists %s, which is not an ErrorReason value", wire)
		}
	}
}
