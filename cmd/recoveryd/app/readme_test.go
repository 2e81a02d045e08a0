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

// TestREADMEDocumentsEveryReasonAndFlag keeps the README's tables in step
// with the code: every ErrorInfo reason the service defines and every flag
// recoveryd accepts (with its variable) has a row.
func TestREADMEDocumentsEveryReasonAndFlag(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	errorsSource, err := os.ReadFile(filepath.Join("..", "..", "..", "service", "errors.go"))
	if err != nil {
		t.Fatal(err)
	}
	reasons := regexp.MustCompile(`(?m)^\s*Reason\w+\s*=\s*"([A-Z_]+)"`).FindAllSubmatch(errorsSource, -1)
	if len(reasons) == 0 {
		t.Fatal("found no Reason constants in service/errors.go")
	}
	for _, r := range reasons {
		if !bytes.Contains(readme, []byte("`"+string(r[1])+"`")) {
			t.Errorf("README's error reasons table lacks %s", r[1])
		}
	}
}
