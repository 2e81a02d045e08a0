package app

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// keepFirstAnswer lets the upstream act on the first request to path, keeps
// its answer in *kept and closes the connection without it (the answer is
// lost, as the emulator's reset-after fault loses it); later requests pass.
// The kept answer is what the provider's support re-issues.
func keepFirstAnswer(path string, kept *[]byte, mu *sync.Mutex) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			first := r.URL.Path == path && *kept == nil
			mu.Unlock()
			if !first {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			mu.Lock()
			*kept = rec.Body.Bytes()
			mu.Unlock()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			_ = conn.Close()
		})
	}
}

// TestREADMEFixingAStuckCustomer runs the README's "Fixing a stuck
// customer" commands (its ```sh blocks, with grpcurl, as an operator)
// against a real recoveryd on a loopback port: bob's assignment answer was
// lost and the retry met the 409 (orphaned), carol's outcome is unknown.
// The operator lists the orphaned pair, resolves carol (recorded: the
// upstream never saw her assignment) and imports the key support re-issued
// for bob; both customers then get their one upstream key. An import of a
// key whose signed payload was altered is refused and changes nothing.
func TestREADMEFixingAStuckCustomer(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := bytes.Cut(readme, []byte("\n### Fixing a stuck customer\n"))
	if !ok {
		t.Fatal(`README has no "### Fixing a stuck customer" section`)
	}
	section, _, _ = bytes.Cut(section, []byte("\n## "))
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)\n```").FindAllSubmatch(section, -1)
	if len(blocks) != 3 {
		t.Fatalf("the section has %d ```sh blocks, want 3 (list, resolve, import)", len(blocks))
	}
	grpcurl := findTool(t, "grpcurl", "run `make tools`")

	log, _ := newTestLogger(t)
	var kept []byte
	var mu sync.Mutex
	up := startUpstream(t, t.TempDir(), log, keepFirstAnswer(sandbox.PathAssignKey, &kept, &mu))
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.CallerTokensFile = writeCallersFile(t, filepath.Join(t.TempDir(), "callers.json"), walletAPI, operatorCaller)
	cfg.ReconcileInterval = time.Hour
	store := openTestRegistry(t)
	lis, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := startReady(t, cfg, log, Options{Registry: store, Listener: lis})
	customer := withToken(testCtx(t), walletAPI.token)

	// bob: the first answer is lost, the adapter's retry meets the 409.
	bob := assignKeyRequest("bob", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
	_, err = srv.client.AssignKey(customer, bob)
	wantStatus(t, err, codes.FailedPrecondition, "ASSIGNMENT_ORPHANED")
	// carol: a replica died before recording her assignment.
	parkPair(t, store, "carol", testCustomerID, registry.AssignmentUnknown)

	dir := t.TempDir()
	var lost struct {
		KeyID         string   `json:"key_id"`
		PublicKey     string   `json:"public_key"`
		Signature     string   `json:"signature"`
		SignedPayload string   `json:"signed_payload"`
		SignedFields  []string `json:"signed_fields"`
	}
	mu.Lock()
	err = json.Unmarshal(kept, &lost)
	mu.Unlock()
	if err != nil || lost.KeyID == "" {
		t.Fatalf("the lost answer %q: %v", kept, err)
	}
	reissued := func(user string) []byte {
		b, err := json.Marshal(map[string]any{"user_identifier": user, "customer_id": testCustomerID, "key_id": lost.KeyID,
			"public_key_hex": lost.PublicKey, "signature": lost.Signature, "signed_payload": lost.SignedPayload, "signed_fields": lost.SignedFields})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := os.WriteFile(filepath.Join(dir, "reissued-bob.json"), reissued("bob"), 0o600); err != nil {
		t.Fatal(err)
	}

	// A re-issued key whose signed payload was altered is refused, and the
	// pair stays as it was.
	parkPair(t, store, "dave", testCustomerID, registry.AssignmentOrphaned)
	admin := recoveryv1.NewRecoveryAdminServiceClient(srv.conn)
	wrongReq := &recoveryv1.ImportAssignmentRequest{UserIdentifier: "dave", CustomerId: testCustomerID, KeyId: lost.KeyID,
		PublicKeyHex: lost.PublicKey, Signature: lost.Signature, SignedPayload: lost.SignedPayload + " ", SignedFields: lost.SignedFields}
	_, err = admin.ImportAssignment(withToken(testCtx(t), operatorCaller.token), wrongReq)
	wantStatus(t, err, codes.FailedPrecondition, "ASSIGNMENT_NOT_IMPORTABLE")
	if res, err := store.ReserveAssignment(t.Context(), registry.KeyTerms{UserIdentifier: "dave", CustomerID: testCustomerID,
		PackageID: testPackageID, KeyEnvironment: "HOT"}, time.Minute); err != nil || res.State != registry.AssignmentOrphaned {
		t.Fatalf("dave after a refused import = %v, %v; want orphaned as before", res.State, err)
	}

	var script bytes.Buffer
	for _, b := range blocks {
		script.Write(b[1])
		script.WriteByte('\n')
	}
	cmd := exec.CommandContext(testCtx(t), "bash", "-euo", "pipefail", "-c", strings.ReplaceAll(script.String(), readmeAddr, lis.Addr().String()))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(grpcurl)+":"+os.Getenv("PATH"), "OPERATOR_TOKEN="+operatorCaller.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's commands failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"userIdentifier": "bob"`, "ASSIGNMENT_ISSUE_STATE_ORPHANED", "ASSIGNMENT_RESOLUTION_RECORDED", lost.KeyID} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the commands' output lacks %q:\n%s", want, out)
		}
	}

	// Both customers now get their one upstream key.
	perUser := map[string]string{}
	for _, k := range up.Inspect.Keys(t) {
		if _, dup := perUser[k.UserIdentifier]; dup {
			t.Errorf("%s has two upstream keys", k.UserIdentifier)
		}
		perUser[k.UserIdentifier] = k.KeyID
	}
	for _, user := range []string{"bob", "carol"} {
		resp, err := srv.client.AssignKey(customer, assignKeyRequest(user, recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
		if err != nil || !resp.GetAlreadyAssigned() || resp.GetKey().GetKeyId() != perUser[user] {
			t.Errorf("AssignKey(%s) after the fix = %v, %v; want its upstream key %s", user, resp, err, perUser[user])
		}
	}
}
