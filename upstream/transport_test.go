package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentCallsReuseConnections: rounds of concurrent calls open no
// more upstream connections than the concurrency. With net/http's default
// of two idle connections per host, every round after the first opened
// concurrency-2 new ones.
func TestConcurrentCallsReuseConnections(t *testing.T) {
	const concurrency, rounds = 20, 3
	var opened atomic.Int32
	// Every call of a round waits until all of the round's calls have
	// arrived, so each round has exactly `concurrency` calls in flight.
	var (
		mu      sync.Mutex
		arrived int
		release = make(chan struct{})
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		arrived++
		ch := release
		if arrived == concurrency {
			arrived = 0
			release = make(chan struct{})
			close(ch)
		}
		mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, `{"backup_id":"0f6f7b39-3c55-4b7f-a7a4-2b0c3c8b9f11","backup_type":"data","checksum":"ab","data_size":512}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, concurrency)
		for range concurrency {
			wg.Go(func() {
				_, err := c.SecureData(ctx, SecureDataRequest{PublicKey: "3082", Ciphertext: []byte{1}, Checksum: "ab"})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: SecureData: %v", round, err)
			}
		}
	}
	if got := opened.Load(); got > concurrency {
		t.Errorf("%d rounds of %d concurrent calls opened %d connections; want at most %d (idle connections reused)", rounds, concurrency, got, concurrency)
	}
}
