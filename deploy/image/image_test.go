package image_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// Facts of the image the test checks.
const (
	imageUser = 65532
	// shutdownTimeout is the container's --shutdown-timeout: a SIGTERM must
	// end it, exit code 0, within that (plus podman's own overhead).
	shutdownTimeout = 10 * time.Second
	podmanOverhead  = 15 * time.Second
	readinessTarget = "recovery.v1.RecoveryService"
)

// tool returns the path of a tool the test needs; a missing one fails the
// test, saying how to get it.
func tool(t *testing.T, name, hint string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", "..", ".bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: %s", name, hint)
	}
	return p
}

// run runs a command bounded by ctx, failing the test on error.
func run(ctx context.Context, t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(ctx, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// freePort is a loopback port nobody listens on (the container shares the
// host's network).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestImage builds the image with build.sh and runs it as a platform
// would: read-only, a volume for /data, the upstream token as a mounted
// file, against the emulator on the host.
func TestImage(t *testing.T) {
	podman := tool(t, "podman", "run `make system-deps` (apt-get install podman runc)")
	tool(t, "runc", "run `make system-deps` (apt-get install podman runc)")
	grpcurl := tool(t, "grpcurl", "run `make tools`")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	conf, err := filepath.Abs("containers.conf")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"CONTAINERS_CONF=" + conf}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := "recoveryd-test-" + hex.EncodeToString(suffix)
	image := "localhost/recoveryd:" + name

	// NOTE: cleanups run last-registered first: container, volume, image.
	t.Cleanup(func() { _, _ = runErr(context.Background(), env, podman, "rmi", "--force", image) })
	t.Log(strings.TrimSpace(run(ctx, t, env, "./build.sh", image)))
	size, err := strconv.ParseInt(strings.TrimSpace(run(ctx, t, env, podman, "image", "inspect", "--format", "{{.Size}}", image)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image size: %d bytes (%.1f MiB)", size, float64(size)/(1<<20))
	checkImageConfig(ctx, t, env, podman, image)

	up := sandboxtest.Start(t, sandboxtest.Options{})
	tokenFile := filepath.Join(t.TempDir(), "upstream-token")
	if err := os.WriteFile(tokenFile, []byte(sandbox.DevPartnerToken+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	// The container's user must read it, as a Secret volume's group would.
	if err := os.Chown(tokenFile, imageUser, imageUser); err != nil {
		t.Fatalf("giving the token file to the image's user: %v (the test runs podman rootful, as root)", err)
	}
	run(ctx, t, env, podman, "volume", "create", name)
	t.Cleanup(func() { _, _ = runErr(context.Background(), env, podman, "volume", "rm", "--force", name) })

	grpcAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	run(ctx, t, env, podman, "run", "--detach", "--name", name,
		"--network", "host", "--read-only", "--read-only-tmpfs=false",
		"--volume", name+":/data",
		"--volume", tokenFile+":/etc/recoveryd/upstream-token:ro",
		"--env", "RECOVERY_LISTEN="+grpcAddr,
		"--env", "RECOVERY_ADMIN_LISTEN=127.0.0.1:"+strconv.Itoa(freePort(t)),
		"--env", "RECOVERY_UPSTREAM_URL="+up.URL,
		"--env", "RECOVERY_UPSTREAM_TOKEN_FILE=/etc/recoveryd/upstream-token",
		"--env", "RECOVERY_JWKS_URL="+up.URL+sandbox.PathJWKS,
		"--env", "RECOVERY_SHUTDOWN_TIMEOUT="+shutdownTimeout.String(),
		image)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := runErr(context.Background(), env, podman, "logs", name)
			t.Logf("container logs:\n%s", out)
		}
		_, _ = runErr(context.Background(), env, podman, "rm", "--force", "--time", "0", name)
	})

	waitServing(ctx, t, grpcurl, grpcAddr)
	checkUser(ctx, t, env, podman, name)

	var assigned struct {
		Key struct {
			KeyID string `json:"keyId"`
		} `json:"key"`
	}
	out := run(ctx, t, nil, grpcurl, "-plaintext", "-d",
		`{"user_identifier":"alice","key_environment":"KEY_ENVIRONMENT_HOT","organisation":{"customer_id":"acme","customer_name":"Acme"},"package":{"package_id":"gold","package_name":"Gold"}}`,
		grpcAddr, "recovery.v1.RecoveryService/AssignKey")
	if err := json.Unmarshal([]byte(out), &assigned); err != nil || assigned.Key.KeyID == "" {
		t.Fatalf("AssignKey answered %s (%v), want a key", out, err)
	}
	var secured struct {
		Backup struct {
			BackupID string `json:"backupId"`
			KeyID    string `json:"keyId"`
		} `json:"backup"`
	}
	out = run(ctx, t, nil, grpcurl, "-plaintext", "-d",
		`{"key_id":"`+assigned.Key.KeyID+`","plaintext":"`+base64.StdEncoding.EncodeToString([]byte("correct horse battery staple"))+`"}`,
		grpcAddr, "recovery.v1.RecoveryService/SecureData")
	if err := json.Unmarshal([]byte(out), &secured); err != nil || secured.Backup.BackupID == "" || secured.Backup.KeyID != assigned.Key.KeyID {
		t.Fatalf("SecureData answered %s (%v), want a backup under key %s", out, err, assigned.Key.KeyID)
	}
	if got := up.Inspect.Recover(t, secured.Backup.BackupID); string(got) != "correct horse battery staple" {
		t.Errorf("the emulator's backup decrypts to %q", got)
	}

	// The registry is on the volume: /data is where the container writes.
	mount := strings.TrimSpace(run(ctx, t, env, podman, "volume", "inspect", "--format", "{{.Mountpoint}}", name))
	if _, err := os.Stat(filepath.Join(mount, "registry.db")); err != nil {
		t.Errorf("no registry on the /data volume: %v", err)
	}

	// SIGTERM drains and exits 0 within the shutdown timeout.
	run(ctx, t, env, podman, "kill", "--signal", "TERM", name)
	waitCtx, waitCancel := context.WithTimeout(ctx, shutdownTimeout+podmanOverhead)
	defer waitCancel()
	code, err := runErr(waitCtx, env, podman, "wait", name)
	if err != nil {
		t.Fatalf("podman wait after SIGTERM: %v (not stopped within %s + %s)\n%s", err, shutdownTimeout, podmanOverhead, code)
	}
	if strings.TrimSpace(code) != "0" {
		t.Errorf("exit code after SIGTERM = %s, want 0", strings.TrimSpace(code))
	}
	if logs := run(ctx, t, env, podman, "logs", name); !strings.Contains(logs, "recoveryd stopped") {
		t.Errorf("the logs do not end with a clean stop:\n%s", logs)
	}
}

// checkImageConfig: the image declares what a platform reads from it.
func checkImageConfig(ctx context.Context, t *testing.T, env []string, podman, image string) {
	t.Helper()
	var inspected []struct {
		Config struct {
			User         string              `json:"User"`
			ExposedPorts map[string]struct{} `json:"ExposedPorts"`
			Volumes      map[string]struct{} `json:"Volumes"`
			Labels       map[string]string   `json:"Labels"`
			Entrypoint   []string            `json:"Entrypoint"`
		} `json:"Config"`
	}
	if err := json.Unmarshal([]byte(run(ctx, t, env, podman, "image", "inspect", image)), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	c := inspected[0].Config
	if c.User != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532", c.User)
	}
	for _, port := range []string{"50051/tcp", "9464/tcp"} {
		if _, ok := c.ExposedPorts[port]; !ok {
			t.Errorf("image does not expose %s (exposes %v)", port, c.ExposedPorts)
		}
	}
	if _, ok := c.Volumes["/data"]; !ok || len(c.Volumes) != 1 {
		t.Errorf("image volumes %v, want /data only", c.Volumes)
	}
	for _, label := range []string{"org.opencontainers.image.source", "org.opencontainers.image.revision", "org.opencontainers.image.version"} {
		if v := c.Labels[label]; v == "" || v == "unknown" {
			t.Errorf("label %s = %q", label, v)
		}
	}
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/recoveryd" {
		t.Errorf("entrypoint %v, want [/recoveryd]", c.Entrypoint)
	}
}

// waitServing polls the health of the RecoveryService until SERVING; ctx
// bounds the wait.
func waitServing(ctx context.Context, t *testing.T, grpcurl, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last string
	for ctx.Err() == nil {
		out, err := runErr(ctx, nil, grpcurl, "-plaintext", "-d", `{"service":"`+readinessTarget+`"}`, addr, "grpc.health.v1.Health/Check")
		if err == nil && strings.Contains(out, `"SERVING"`) {
			return
		}
		last = out
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("%s never became SERVING; last answer:\n%s", readinessTarget, last)
}

// checkUser: the process inside runs as the image's non-root user (real,
// effective, saved and filesystem uid alike).
func checkUser(ctx context.Context, t *testing.T, env []string, podman, name string) {
	t.Helper()
	pid := strings.TrimSpace(run(ctx, t, env, podman, "inspect", "--format", "{{.State.Pid}}", name))
	status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(imageUser)
	for _, line := range strings.Split(string(status), "\n") {
		if field, rest, ok := strings.Cut(line, ":"); ok && (field == "Uid" || field == "Gid") {
			if ids := strings.Fields(rest); len(ids) != 4 || ids[0] != want || ids[1] != want || ids[2] != want || ids[3] != want {
				t.Errorf("%s of the container's process = %v, want %s for all four", field, ids, want)
			}
		}
	}
}
