package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
	"github.com/walletprovider/recoveryservice/upstream"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// resolver is a service.Server with a reconciler, wired to upstreamURL and
// store outside recoveryd (another replica, or this one once the upstream
// answers again), whose passes the test drives.
func resolver(t *testing.T, upstreamURL string, store *registry.Store, interval time.Duration) *service.Reconciler {
	t.Helper()
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	client, err := upstream.NewClient(upstream.Config{BaseURL: upstreamURL, Token: sandbox.DevPartnerToken, Transport: transport, AllowHTTP: true, CallTimeout: testCallTimeout})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := upstream.NewJWKSFetcher(upstream.JWKSConfig{URL: upstreamURL + jwksPath, Transport: transport, AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	s := service.New(service.Config{Upstream: client, Keys: keys, Registry: store, CallTimeout: testCallTimeout,
		ReconcileInterval: interval, Logger: slog.New(slog.DiscardHandler)})
	r := s.NewReconciler()
	if r == nil {
		t.Fatal("NewReconciler = nil with an interval")
	}
	return r
}

// TestReconcilerResolvesUnknownAssignments: an assignment whose every
// answer the emulator's fault lost is unknown, and the caller hears that it
// is being resolved (UNAVAILABLE with RetryInfo), not a permanent failure.
// A reconciler pass while the upstream still fails settles nothing and
// makes no second key; once the upstream answers (the same emulator state,
// served without faults), a pass settles the pair: recorded when the lost
// attempts never reached the enclave (reset-before), orphaned when they did
// (reset-after, truncated: the re-send meets the 409). The upstream never
// holds two keys for the pair.
func TestReconcilerResolvesUnknownAssignments(t *testing.T) {
	for _, tc := range []struct {
		fault     string
		keysAfter int // keys the faulty upstream holds for the pair
		want      string
		// settledWhileFaulty: the re-send's 409 gets through the fault
		// (truncated cuts the body, not the status line), so the pass
		// against the faulty upstream already settles the pair.
		settledWhileFaulty bool
	}{
		{sandbox.FaultResetBefore, 0, "recorded", false},
		{sandbox.FaultResetAfter, 1, "orphaned", false},
		{sandbox.FaultTruncated, 1, "orphaned", true},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			state := t.TempDir()
			faulty := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{
				DataDir: state, Faults: map[string]float64{tc.fault: 1}, FaultPaths: []string{sandbox.PathAssignKey}}})
			f := newFixture(t, fixtureOptions{upstreamURL: faulty.URL, reconcileInterval: time.Hour})
			req := assignRequest("user-1", "org-1")

			_, err := f.client.AssignKey(t.Context(), req)
			d := wantStatus(t, err, codes.Unavailable, service.ReasonAssignmentBeingResolved)
			if d.retry.GetRetryDelay().AsDuration() <= 0 {
				t.Errorf("ASSIGNMENT_BEING_RESOLVED without a RetryInfo delay")
			}
			if n := len(faulty.Inspect.Keys(t)); n != tc.keysAfter {
				t.Fatalf("the faulty upstream holds %d keys, want %d", n, tc.keysAfter)
			}

			// While the upstream still loses every answer: deferred.
			if n, err := resolver(t, faulty.URL, f.store, time.Nanosecond).Pass(t.Context()); err != nil || n != 1 {
				t.Fatalf("pass against the faulty upstream claimed %d, %v; want 1", n, err)
			}
			if n := len(faulty.Inspect.Keys(t)); n != tc.keysAfter {
				t.Fatalf("the faulty upstream holds %d keys after the re-send, want %d", n, tc.keysAfter)
			}
			if tc.settledWhileFaulty {
				_, err = f.client.AssignKey(t.Context(), req)
				wantStatus(t, err, codes.FailedPrecondition, service.ReasonAssignmentOrphaned)
				return
			}
			if s := f.pairState(t, req); s != registry.AssignmentUnknown {
				t.Fatalf("after a failed re-send the pair is %s, want unknown", s)
			}
			_, err = f.client.AssignKey(t.Context(), req)
			wantStatus(t, err, codes.Unavailable, service.ReasonAssignmentBeingResolved)

			// The upstream answers again.
			healthy := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{DataDir: state}})
			if n, err := resolver(t, healthy.URL, f.store, time.Nanosecond).Pass(t.Context()); err != nil || n != 1 {
				t.Fatalf("pass against the healthy upstream claimed %d, %v; want 1", n, err)
			}
			upstreamKeys := healthy.Inspect.Keys(t)
			if len(upstreamKeys) != 1 {
				t.Fatalf("the upstream holds %d keys for the pair, want 1", len(upstreamKeys))
			}
			resp, err := f.client.AssignKey(t.Context(), req)
			switch tc.want {
			case "recorded":
				if err != nil || !resp.GetAlreadyAssigned() || resp.GetKey().GetKeyId() != upstreamKeys[0].KeyID {
					t.Fatalf("AssignKey after resolution = %v, %v; want the upstream's key %s, already assigned", resp, err, upstreamKeys[0].KeyID)
				}
			case "orphaned":
				wantStatus(t, err, codes.FailedPrecondition, service.ReasonAssignmentOrphaned)
			}
			// Settled: the next pass has nothing to do.
			if n, err := resolver(t, healthy.URL, f.store, time.Nanosecond).Pass(t.Context()); err != nil || n != 0 {
				t.Errorf("pass after resolution claimed %d, %v; want 0", n, err)
			}
		})
	}
}

// TestReconcilersOnTwoReplicas: two replicas, each with its own registry
// handle on one PostgreSQL, run reconciler passes at once over many
// unknown pairs: every pair is re-sent once, recorded once, and the
// upstream holds one key per pair.
func TestReconcilersOnTwoReplicas(t *testing.T) {
	const pairs = 12
	dbURL := registrytest.Postgres(t)
	open := func() *registry.Store {
		s, err := registry.OpenPostgres(t.Context(), dbURL, registry.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	stores := []*registry.Store{open(), open()}
	state := t.TempDir()
	faulty := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{
		DataDir: state, Faults: map[string]float64{sandbox.FaultResetBefore: 1}, FaultPaths: []string{sandbox.PathAssignKey}}})
	f := newFixture(t, fixtureOptions{upstreamURL: faulty.URL, store: stores[0], reconcileInterval: time.Hour})
	var wg sync.WaitGroup
	for i := range pairs {
		wg.Go(func() {
			_, err := f.client.AssignKey(t.Context(), assignRequest(fmt.Sprintf("user-%d", i), "org-1"))
			wantStatus(t, err, codes.Unavailable, service.ReasonAssignmentBeingResolved)
		})
	}
	wg.Wait()

	healthy := sandboxtest.Start(t, sandboxtest.Options{Config: sandbox.Config{DataDir: state}})
	claimed := make([]int, len(stores))
	for i, store := range stores {
		r := resolver(t, healthy.URL, store, time.Hour)
		wg.Go(func() {
			n, err := r.Pass(context.Background())
			if err != nil {
				t.Error(err)
			}
			claimed[i] = n
		})
	}
	wg.Wait()
	if claimed[0]+claimed[1] != pairs {
		t.Errorf("replicas claimed %v, want %d in all", claimed, pairs)
	}
	perPair := map[string]int{}
	for _, k := range healthy.Inspect.Keys(t) {
		perPair[k.UserIdentifier]++
	}
	for i := range pairs {
		user := fmt.Sprintf("user-%d", i)
		if perPair[user] != 1 {
			t.Errorf("%s has %d upstream keys, want 1", user, perPair[user])
		}
		resp, err := f.client.AssignKey(t.Context(), assignRequest(user, "org-1"))
		if err != nil || !resp.GetAlreadyAssigned() {
			t.Errorf("AssignKey(%s) after resolution = %v, %v; want the recorded key", user, resp, err)
		}
	}
}
