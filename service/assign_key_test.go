package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

func TestAssignKeyNew(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	// With authentication on, the key names the caller that assigned it.
	authenticated := newFixture(t, fixtureOptions{callers: []testCaller{walletAPI}})
	tests := []struct {
		name string
		f    *fixture
		req  *recoveryv1.AssignKeyRequest
		// caller, when named, makes the call (with its token).
		caller testCaller
	}{
		{"hot", f, assignRequest("user-hot", "org-1"), testCaller{}},
		{"cold", f, func() *recoveryv1.AssignKeyRequest {
			r := assignRequest("user-cold", "org-1")
			r.KeyEnvironment = recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD
			return r
		}(), testCaller{}},
		{"same user other organisation", f, assignRequest("user-hot", "org-2"), testCaller{}},
		{"as a named caller", authenticated, assignRequest("user-caller", "org-1"), walletAPI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ctx := tt.f, t.Context()
			if tt.caller.name != "" {
				ctx = as(t, tt.caller)
			}
			resp, err := f.client.AssignKey(ctx, tt.req)
			if err != nil {
				t.Fatalf("AssignKey: %v", err)
			}
			if resp.GetAlreadyAssigned() {
				t.Error("already_assigned = true for a first assignment")
			}
			key := resp.GetKey()

			// The key is the one the upstream holds for this user.
			var held *sandbox.InspectedKey
			for _, k := range f.inspect.Keys(t) {
				if k.UserIdentifier == tt.req.GetUserIdentifier() && k.CustomerID == tt.req.GetOrganisation().GetCustomerId() {
					held = &k
				}
			}
			if held == nil {
				t.Fatal("the sandbox holds no key for the user")
			}
			pub, err := keycrypto.ParsePublicKeyHex(held.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			want := &recoveryv1.RecoveryKey{
				KeyId:             held.KeyID,
				PublicKeyHex:      held.PublicKey,
				PublicKeyPem:      pub.PEM(),
				KeyEnvironment:    tt.req.GetKeyEnvironment(),
				UserIdentifier:    tt.req.GetUserIdentifier(),
				Organisation:      tt.req.GetOrganisation(),
				Package:           tt.req.GetPackage(),
				FingerprintSha256: pub.Fingerprint(),
				AssignedBy:        tt.caller.name,
			}
			if diff := cmp.Diff(want, key, protocmp.Transform(),
				protocmp.IgnoreFields(&recoveryv1.RecoveryKey{}, "assigned_at", "receipt")); diff != "" {
				t.Errorf("key (-want +got):\n%s", diff)
			}
			// The receipt is the enclave's signature over this very key
			// (TestSwappedKeyIsRefused and the README's openssl steps verify
			// it).
			var signed map[string]string
			if err := json.Unmarshal([]byte(key.GetReceipt().GetSignedPayload()), &signed); err != nil ||
				signed["public_key"] != held.PublicKey || signed["key_id"] != held.KeyID ||
				key.GetReceipt().GetSignature() == "" || key.GetReceipt().GetSigningKeyId() == "" {
				t.Errorf("receipt = %v (%v), want the signature over this key, with its signing key id", key.GetReceipt(), err)
			}
			if key.GetAssignedAt() == nil {
				t.Error("assigned_at is not set")
			}
			if held.KeyEnvironment != strings.TrimPrefix(tt.req.GetKeyEnvironment().String(), "KEY_ENVIRONMENT_") || held.PackageID != "pkg-1" {
				t.Errorf("upstream filed the key as %s/%s", held.KeyEnvironment, held.PackageID)
			}

			// GetKey returns the same record.
			got, err := f.client.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: key.GetKeyId()})
			if err != nil {
				t.Fatalf("GetKey: %v", err)
			}
			if diff := cmp.Diff(key, got.GetKey(), protocmp.Transform()); diff != "" {
				t.Errorf("GetKey differs from AssignKey (-assign +get):\n%s", diff)
			}
		})
	}
}

func TestAssignKeyRepeatMakesNoUpstreamCall(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	first, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
	if err != nil {
		t.Fatalf("first AssignKey: %v", err)
	}
	tests := []struct {
		name string
		req  *recoveryv1.AssignKeyRequest
	}{
		{"identical", assignRequest("user-1", "org-1")},
		{"other display names", func() *recoveryv1.AssignKeyRequest {
			r := assignRequest("user-1", "org-1")
			r.Organisation.CustomerName = "Acme Wallets (renamed)"
			r.Package.PackageName = "Gold (renamed)"
			return r
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			again, err := f.client.AssignKey(t.Context(), tt.req)
			if err != nil {
				t.Fatalf("repeat AssignKey: %v", err)
			}
			if !again.GetAlreadyAssigned() {
				t.Error("already_assigned = false on a repeat")
			}
			if diff := cmp.Diff(first.GetKey(), again.GetKey(), protocmp.Transform()); diff != "" {
				t.Errorf("repeat returned another key (-first +repeat):\n%s", diff)
			}
		})
	}
	if n := len(f.inspect.Keys(t)); n != 1 {
		t.Fatalf("upstream holds %d keys, want 1", n)
	}
}

func TestAssignKeyDifferentTerms(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.mustAssign("user-1", "org-1")
	tests := []struct {
		name   string
		change func(*recoveryv1.AssignKeyRequest)
	}{
		{"other environment", func(r *recoveryv1.AssignKeyRequest) {
			r.KeyEnvironment = recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD
		}},
		{"other package", func(r *recoveryv1.AssignKeyRequest) { r.Package.PackageId = "pkg-2" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := assignRequest("user-1", "org-1")
			tt.change(req)
			_, err := f.client.AssignKey(t.Context(), req)
			d := wantStatus(t, err, codes.AlreadyExists, service.ReasonAssignedWithDifferentTerms)
			want := map[string]string{
				"recorded_key_environment": "KEY_ENVIRONMENT_HOT",
				"recorded_package_id":      "pkg-1",
				"recorded_package_name":    "Gold",
			}
			if diff := cmp.Diff(want, d.info.GetMetadata()); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
		})
	}
	if n := len(f.inspect.Keys(t)); n != 1 {
		t.Fatalf("upstream holds %d keys, want 1", n)
	}
}

func TestAssignKeyConcurrentCallersShareOneKey(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	const callers = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		resps []*recoveryv1.AssignKeyResponse
		errs  []error
	)
	start := make(chan struct{})
	for range callers {
		wg.Go(func() {
			<-start
			resp, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			resps = append(resps, resp)
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d callers failed, first: %v", len(errs), callers, errs[0])
	}
	fresh := 0
	for _, r := range resps {
		if !r.GetAlreadyAssigned() {
			fresh++
		}
		if diff := cmp.Diff(resps[0].GetKey(), r.GetKey(), protocmp.Transform()); diff != "" {
			t.Errorf("callers got different keys (-first +other):\n%s", diff)
		}
	}
	if fresh != 1 {
		t.Errorf("%d responses say the key is new, want exactly 1", fresh)
	}
	if keys := f.inspect.Keys(t); len(keys) != 1 {
		t.Fatalf("upstream holds %d keys, want 1", len(keys))
	} else if keys[0].KeyID != resps[0].GetKey().GetKeyId() {
		t.Errorf("callers got key %s, upstream holds %s", resps[0].GetKey().GetKeyId(), keys[0].KeyID)
	}
}

func TestAssignKeyAssignedElsewhere(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.assignDirectly("user-1", "org-1")
	for attempt := range 2 {
		_, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
		wantStatus(t, err, codes.FailedPrecondition, service.ReasonAssignedElsewhere)
		if n := len(f.inspect.Keys(t)); n != 1 {
			t.Fatalf("attempt %d: upstream holds %d keys, want 1", attempt, n)
		}
	}
	// The pair is parked for an operator, nothing usable recorded.
	if state := f.pairState(t, assignRequest("user-1", "org-1")); state != registry.AssignmentElsewhere {
		t.Errorf("registry state = %s, want AssignmentElsewhere", state)
	}
}

func TestAssignKeyLostResponseIsUnknown(t *testing.T) {
	f := newFixture(t, fixtureOptions{wrap: loseResponse("/v1/partner/keys")})
	for range 2 { // the repeat is answered from the registry
		_, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
		wantStatus(t, err, codes.FailedPrecondition, service.ReasonAssignmentOutcomeUnknown)
	}
	if n := len(f.inspect.Keys(t)); n != 1 {
		t.Fatalf("upstream holds %d keys, want 1: the unknown outcome must not be retried", n)
	}
}

// TestAssignKeyLostAnswerIsOrphaned: the first attempt assigns a key
// upstream but its answer is lost; the adapter's retry meets the
// upstream's 409. That is our own key, not one assigned elsewhere: the pair
// is recorded orphaned, logged at ERROR once and counted, and a repeat is
// answered from the registry without an upstream call. The upstream holds
// exactly one key for the pair.
func TestAssignKeyLostAnswerIsOrphaned(t *testing.T) {
	var calls atomic.Int32
	f := newFixture(t, fixtureOptions{wrap: loseFirstAnswer(sandbox.PathAssignKey, &calls)})
	before := f.metrics(t)
	for range 2 {
		_, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
		wantStatus(t, err, codes.FailedPrecondition, service.ReasonAssignmentOrphaned)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("upstream saw %d assign-key requests, want 2 (the lost one and its retry; none for the repeat)", n)
	}
	if keys := f.inspect.Keys(t); len(keys) != 1 {
		t.Fatalf("upstream holds %d keys, want 1", len(keys))
	}
	if state := f.pairState(t, assignRequest("user-1", "org-1")); state != registry.AssignmentOrphaned {
		t.Errorf("registry state = %s, want AssignmentOrphaned", state)
	}
	if lines := f.logs.WaitCount(t, 1, `"level":"ERROR"`, "assignment orphaned"); len(lines) != 1 {
		t.Errorf("%d ERROR lines for the orphaning, want 1", len(lines))
	}
	if n := strings.Count(f.logs.String(), "assignment orphaned"); n != 1 {
		t.Errorf("the orphaning was logged %d times, want once", n)
	}
	if d := f.metrics(t).assignments("orphaned") - before.assignments("orphaned"); d != 2 {
		t.Errorf("assignments{outcome=orphaned} grew by %v, want 2 (the orphaning and the repeat)", d)
	}
}

// TestAssignKey503ThenKey: a 503 that assigned nothing is retried by the
// adapter; the retry's key is verified and recorded as usual, and the
// upstream holds exactly that one key.
func TestAssignKey503ThenKey(t *testing.T) {
	var calls atomic.Int32
	f := newFixture(t, fixtureOptions{wrap: failFirst(sandbox.PathAssignKey, http.StatusServiceUnavailable, &calls)})
	key := f.mustAssign("user-1", "org-1")
	if n := calls.Load(); n != 2 {
		t.Errorf("upstream saw %d assign-key requests, want 2", n)
	}
	keys := f.inspect.Keys(t)
	if len(keys) != 1 || keys[0].KeyID != key.GetKeyId() {
		t.Fatalf("upstream holds %+v, want only %s", keys, key.GetKeyId())
	}
	if state := f.pairState(t, assignRequest("user-1", "org-1")); state != registry.AssignmentRecorded {
		t.Errorf("registry state = %s, want AssignmentRecorded", state)
	}
	repeat, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
	if err != nil || !repeat.GetAlreadyAssigned() || repeat.GetKey().GetKeyId() != key.GetKeyId() {
		t.Errorf("repeat = %v, %v; want key %s, already_assigned", repeat, err, key.GetKeyId())
	}
}

func TestAssignKeyDefiniteRefusalReleasesThePair(t *testing.T) {
	tests := []struct {
		name   string
		opts   fixtureOptions
		code   codes.Code
		reason recoveryv1.ErrorReason
	}{
		{"401 bad token", fixtureOptions{token: "not-a-token"}, codes.Internal, service.ReasonUpstreamCredentialsRejected},
		{"403 no scope", fixtureOptions{token: sandbox.DevNoScopeToken}, codes.Internal, service.ReasonUpstreamCredentialsRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := newFixture(t, tt.opts)
			_, err := broken.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
			d := wantStatus(t, err, tt.code, tt.reason)
			if strings.Contains(strings.ToLower(d.message), "token") && strings.Contains(d.message, "not-a-token") {
				t.Errorf("status message echoes the token: %q", d.message)
			}
			// With the fault fixed (a replica with the right token on the
			// same registry and upstream) the same pair can be assigned.
			fixed := newFixture(t, fixtureOptions{store: broken.store, upstreamURL: broken.upstreamURL})
			resp, err := fixed.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
			if err != nil {
				t.Fatalf("AssignKey after the fix: %v", err)
			}
			if resp.GetAlreadyAssigned() {
				t.Error("already_assigned = true after a refused first attempt")
			}
		})
	}
}

// TestAssignKeyRefusalOutsideTheContractReleasesThePair: a 404 is not an
// answer the assign-key contract lists, but a gateway that does not route
// the path still assigned nothing, so the pair is released rather than
// parked for an operator as "outcome unknown".
func TestAssignKeyRefusalOutsideTheContractReleasesThePair(t *testing.T) {
	unrouted := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/partner/keys" {
				http.Error(w, "no route", http.StatusNotFound)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	f := newFixture(t, fixtureOptions{wrap: unrouted})
	_, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
	wantStatus(t, err, codes.NotFound, service.ReasonKeyNotFoundUpstream)
	if state := f.pairState(t, assignRequest("user-1", "org-1")); state != registry.AssignmentReserved {
		t.Errorf("registry state after a 404 = %s, want the pair free (AssignmentReserved)", state)
	}
}

func TestAssignKeyRateLimited(t *testing.T) {
	// One request per ~17 minutes: the second is refused with a Retry-After
	// the adapter will not wait out.
	f := newFixture(t, fixtureOptions{rateLimit: 0.001})
	f.mustAssign("user-1", "org-1")
	_, err := f.client.AssignKey(t.Context(), assignRequest("user-2", "org-1"))
	d := wantStatus(t, err, codes.Unavailable, service.ReasonUpstreamRateLimited)
	if d.retry.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("RetryInfo = %v, want a positive delay", d.retry)
	}
	// Refused for certain, so the pair was released, not parked.
	if state := f.pairState(t, assignRequest("user-2", "org-1")); state != registry.AssignmentReserved {
		t.Errorf("registry state after a 429 = %s, want the pair free (AssignmentReserved)", state)
	}
}

func TestAssignKeyFinishesWhenTheCallerLeaves(t *testing.T) {
	g := newGate("/v1/partner/keys")
	f := newFixture(t, fixtureOptions{wrap: g.wrap})
	t.Cleanup(g.open) // runs before the fixture's cleanup: never leave a request held
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := f.client.AssignKey(ctx, assignRequest("user-1", "org-1"))
		errc <- err
	}()
	<-g.arrived // the upstream call is under way
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("AssignKey after cancel = %v, want Canceled", err)
	}
	g.open()
	f.waitFinished("AssignKey", 1)

	// The service finished the flow: the key is recorded, and a retry gets
	// it without a second upstream key.
	resp, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
	if err != nil {
		t.Fatalf("retry AssignKey: %v", err)
	}
	if !resp.GetAlreadyAssigned() {
		t.Error("retry: already_assigned = false")
	}
	if held := f.inspect.Keys(t); len(held) != 1 || held[0].KeyID != resp.GetKey().GetKeyId() {
		t.Errorf("upstream holds %v, want exactly the returned key", held)
	}
}

func TestAssignKeyRejectsIncompleteRequests(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tests := []struct {
		name   string
		req    *recoveryv1.AssignKeyRequest
		fields []string
	}{
		{"unspecified environment", func() *recoveryv1.AssignKeyRequest {
			r := assignRequest("user-1", "org-1")
			r.KeyEnvironment = recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_UNSPECIFIED
			return r
		}(), []string{"key_environment"}},
		{"no organisation or package", &recoveryv1.AssignKeyRequest{
			UserIdentifier: "user-1", KeyEnvironment: recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT,
		}, []string{"organisation", "package"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.client.AssignKey(t.Context(), proto.Clone(tt.req).(*recoveryv1.AssignKeyRequest))
			d := wantStatus(t, err, codes.InvalidArgument, service.ReasonInvalidRequest)
			if diff := cmp.Diff(tt.fields, d.fields()); diff != "" {
				t.Errorf("field violations (-want +got):\n%s", diff)
			}
		})
	}
	if n := len(f.inspect.Keys(t)); n != 0 {
		t.Fatalf("upstream holds %d keys after invalid requests", n)
	}
}

func TestAssignKeyWhileAnotherRequestHoldsThePair(t *testing.T) {
	g := newGate("/v1/partner/keys")
	f := newFixture(t, fixtureOptions{wrap: g.wrap, assignmentWait: 200 * time.Millisecond})
	t.Cleanup(g.open) // runs before the fixture's cleanup: never leave a request held

	firstErr := make(chan error, 1)
	var first *recoveryv1.AssignKeyResponse
	go func() {
		var err error
		first, err = f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
		firstErr <- err
	}()
	<-g.arrived // the first request holds the pair and waits on the upstream

	_, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
	d := wantStatus(t, err, codes.Aborted, service.ReasonAssignmentInProgress)
	if d.retry.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("RetryInfo = %v, want a positive delay", d.retry)
	}

	g.open()
	if err := <-firstErr; err != nil {
		t.Fatalf("first AssignKey: %v", err)
	}
	again, err := f.client.AssignKey(t.Context(), assignRequest("user-1", "org-1"))
	if err != nil {
		t.Fatalf("AssignKey after the first finished: %v", err)
	}
	if !again.GetAlreadyAssigned() || again.GetKey().GetKeyId() != first.GetKey().GetKeyId() {
		t.Errorf("after the first finished got key %s (already_assigned=%v), want %s",
			again.GetKey().GetKeyId(), again.GetAlreadyAssigned(), first.GetKey().GetKeyId())
	}
	if n := len(f.inspect.Keys(t)); n != 1 {
		t.Fatalf("upstream holds %d keys, want 1", n)
	}
}

// TestAssignKeyIdentifiersAreExact: identifiers are compared exactly and
// case-sensitively, as upstream does: "alice" and "Alice", or "acme" and
// "Acme", are different customers, each with a key of its own; display
// names in any script pass, only control and format characters do not.
func TestAssignKeyIdentifiersAreExact(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	pairs := [][2]string{{"alice", "acme"}, {"Alice", "acme"}, {"alice", "Acme"}}
	ids := map[string]bool{}
	for _, p := range pairs {
		req := assignRequest(p[0], p[1])
		req.Organisation.CustomerName = "Zürich Wallets — 東京 👛"
		resp, err := f.client.AssignKey(t.Context(), req)
		if err != nil {
			t.Fatalf("AssignKey(%s, %s): %v", p[0], p[1], err)
		}
		if resp.GetAlreadyAssigned() {
			t.Errorf("AssignKey(%s, %s) answered already_assigned: the identifiers were folded", p[0], p[1])
		}
		if got := resp.GetKey(); got.GetUserIdentifier() != p[0] || got.GetOrganisation().GetCustomerId() != p[1] {
			t.Errorf("AssignKey(%s, %s) recorded %s, %s", p[0], p[1], got.GetUserIdentifier(), got.GetOrganisation().GetCustomerId())
		}
		ids[resp.GetKey().GetKeyId()] = true
	}
	if len(ids) != len(pairs) {
		t.Errorf("%d distinct keys for %d customers", len(ids), len(pairs))
	}
	if n := len(f.inspect.Keys(t)); n != len(pairs) {
		t.Errorf("upstream holds %d keys, want %d", n, len(pairs))
	}
}
