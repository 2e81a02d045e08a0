package app

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto/testkeys"
)

// findTool locates a command-line tool the tests run for real: on PATH
// (make puts .bin/ first) or in the repository's .bin/. A missing tool fails
// the test with what to do about it.
func findTool(t *testing.T, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p, err := filepath.Abs(filepath.Join("..", "..", "..", ".bin", name)); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s is not on PATH or in .bin/: %s", name, install)
	return ""
}

// startTCPServer runs recoveryd on the embedded sandbox (handing out the
// committed test keys) on a real loopback TCP port, ready.
func startTCPServer(t *testing.T) (*testServer, string) {
	t.Helper()
	log, _ := newTestLogger(t)
	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.AdminListen = "127.0.0.1:0"
	srv := startReady(t, cfg, log, Options{Listener: lis, SandboxKeySource: testkeys.NewRSASource()})
	return srv, lis.Addr().String()
}

// runTool runs a tool with stdin and returns its stdout, failing the test
// (with stderr) when it exits non-zero.
func runTool(t *testing.T, stdin []byte, path string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(testCtx(t), path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s\nstdout:\n%s", filepath.Base(path), strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.Bytes()
}

// assignKeyJSON is an AssignKey request as a caller writes it for grpcurl
// or ghz.
const assignKeyJSON = `{
  "user_identifier": "grpcurl-user",
  "key_environment": "KEY_ENVIRONMENT_HOT",
  "organisation": {"customer_id": "acme", "customer_name": "Acme Wallets"},
  "package": {"package_id": "gold", "package_name": "Gold"}
}`

// TestGrpcurl drives a real server on a TCP port with the real grpcurl
// binary, through reflection only: list, describe, a unary call and a
// SecureFile stream of several chunk messages.
func TestGrpcurl(t *testing.T) {
	grpcurl := findTool(t, "grpcurl", "run `make tools`")
	srv, addr := startTCPServer(t)
	ctx := testCtx(t)

	listed := string(runTool(t, nil, grpcurl, "-plaintext", addr, "list"))
	for _, want := range []string{serviceName, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(listed, want+"\n") {
			t.Errorf("grpcurl list lacks %s:\n%s", want, listed)
		}
	}
	described := string(runTool(t, nil, grpcurl, "-plaintext", addr, "describe", serviceName))
	for _, want := range []string{
		"rpc AssignKey ( .recovery.v1.AssignKeyRequest ) returns ( .recovery.v1.AssignKeyResponse );",
		"rpc SecureFile ( stream .recovery.v1.SecureFileRequest ) returns ( .recovery.v1.SecureFileResponse );",
	} {
		if !strings.Contains(described, want) {
			t.Errorf("grpcurl describe lacks %q:\n%s", want, described)
		}
	}

	var assigned recoveryv1.AssignKeyResponse
	out := runTool(t, nil, grpcurl, "-plaintext", "-d", assignKeyJSON, addr, serviceName+"/AssignKey")
	if err := protojson.Unmarshal(out, &assigned); err != nil {
		t.Fatalf("AssignKey output %s: %v", out, err)
	}
	keyID := assigned.GetKey().GetKeyId()
	got, err := srv.client.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: keyID})
	if err != nil || got.GetKey().GetUserIdentifier() != "grpcurl-user" {
		t.Fatalf("the key grpcurl assigned is not recorded: %v, %v", got, err)
	}

	// SecureFile: a header message, then several chunk messages (bytes as
	// base64 in JSON), on stdin for `-d @`.
	file := make([]byte, 700<<10)
	if _, err := rand.Read(file); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	var stdin bytes.Buffer
	fmt.Fprintf(&stdin, `{"header": {"key_id": %q, "size_bytes": %d, "sha256": %q, "metadata": {"original_filename": "wallet.enc"}}}`+"\n",
		keyID, len(file), hex.EncodeToString(sum[:]))
	const chunkSize = 256 << 10
	chunks := 0
	for off := 0; off < len(file); off += chunkSize {
		chunk, _ := json.Marshal(map[string]string{"chunk": base64.StdEncoding.EncodeToString(file[off:min(off+chunkSize, len(file))])})
		stdin.Write(append(chunk, '\n'))
		chunks++
	}
	if chunks < 3 {
		t.Fatalf("only %d chunk messages: the test must stream several", chunks)
	}
	var stored recoveryv1.SecureFileResponse
	out = runTool(t, stdin.Bytes(), grpcurl, "-plaintext", "-d", "@", addr, serviceName+"/SecureFile")
	if err := protojson.Unmarshal(out, &stored); err != nil {
		t.Fatalf("SecureFile output %s: %v", out, err)
	}
	b := stored.GetBackup()
	if b.GetBackupType() != recoveryv1.BackupType_BACKUP_TYPE_FILE || b.GetSizeBytes() != int64(len(file)) ||
		b.GetChecksumSha256() != hex.EncodeToString(sum[:]) || b.GetKeyId() != keyID {
		t.Errorf("SecureFile via grpcurl stored %v, want a %d-byte file with checksum %x", b, len(file), sum)
	}
}

// ghzReport is the part of ghz's JSON report the test reads.
type ghzReport struct {
	Count                  int            `json:"count"`
	StatusCodeDistribution map[string]int `json:"statusCodeDistribution"`
	ErrorDistribution      map[string]int `json:"errorDistribution"`
}

// TestGhz runs a bounded ghz load (200 calls, 4 workers, 10 s timeout per
// call) of AssignKey for one repeat user against a real server: every call
// succeeds and the upstream is asked once.
func TestGhz(t *testing.T) {
	ghz := findTool(t, "ghz", "run `make tools`")
	srv, addr := startTCPServer(t)
	const total = 200
	out := runTool(t, nil, ghz, "--insecure", "--call", serviceName+"/AssignKey", "-d", assignKeyJSON,
		"--total", fmt.Sprint(total), "--concurrency", "4", "--timeout", "10s", "--format", "json", addr)
	var report ghzReport
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("ghz report %s: %v", out, err)
	}
	if report.Count != total || report.StatusCodeDistribution["OK"] != total || len(report.ErrorDistribution) != 0 {
		t.Errorf("ghz: %d calls, codes %v, errors %v; want %d OK and no error",
			report.Count, report.StatusCodeDistribution, report.ErrorDistribution, total)
	}
	keys, err := srv.client.ListKeys(testCtx(t), &recoveryv1.ListKeysRequest{})
	if err != nil || len(keys.GetKeys()) != 1 {
		t.Errorf("after %d AssignKey calls for one user: ListKeys = %v, %v; want one key", total, keys, err)
	}
}
