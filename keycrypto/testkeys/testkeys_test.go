package testkeys

import (
	"crypto/elliptic"
	"io/fs"
	"strings"
	"sync"
	"testing"
)

// TestPoolMatchesFiles guards the constants against the embedded files: a
// regenerated pool of another size must update RSACount/ECCount too.
func TestPoolMatchesFiles(t *testing.T) {
	entries, err := fs.ReadDir(files, "testdata")
	if err != nil {
		t.Fatal(err)
	}
	var nRSA, nEC int
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), "rsa4096-"):
			nRSA++
		case strings.HasPrefix(e.Name(), "ecp256-"):
			nEC++
		default:
			t.Errorf("unexpected file testdata/%s", e.Name())
		}
	}
	if nRSA != RSACount || nEC != ECCount {
		t.Fatalf("testdata holds %d RSA and %d EC keys; constants say %d and %d", nRSA, nEC, RSACount, ECCount)
	}
}

func TestRSAKeysAreDistinct4096BitAndValid(t *testing.T) {
	seen := map[string]int{}
	for i := range RSACount {
		k := RSA(i)
		if got := k.N.BitLen(); got != 4096 {
			t.Errorf("RSA(%d) has %d bits, want 4096", i, got)
		}
		if err := k.Validate(); err != nil {
			t.Errorf("RSA(%d).Validate: %v", i, err)
		}
		n := k.N.String()
		if j, dup := seen[n]; dup {
			t.Errorf("RSA(%d) has the same modulus as RSA(%d)", i, j)
		}
		seen[n] = i
		if RSA(i) != k {
			t.Errorf("RSA(%d) is not cached: second call returned another pointer", i)
		}
	}
}

func TestECKeysAreDistinctP256(t *testing.T) {
	seen := map[string]int{}
	for i := range ECCount {
		k := EC(i)
		if k.Curve != elliptic.P256() {
			t.Errorf("EC(%d) is on %s, want P-256", i, k.Curve.Params().Name)
		}
		raw, err := k.Bytes()
		if err != nil {
			t.Fatalf("EC(%d).Bytes: %v", i, err)
		}
		d := string(raw)
		if j, dup := seen[d]; dup {
			t.Errorf("EC(%d) equals EC(%d)", i, j)
		}
		seen[d] = i
		if EC(i) != k {
			t.Errorf("EC(%d) is not cached", i)
		}
	}
}

func TestIndexOutsidePoolPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func()
	}{
		{"RSA(-1)", func() { RSA(-1) }},
		{"RSA(RSACount)", func() { RSA(RSACount) }},
		{"EC(-1)", func() { EC(-1) }},
		{"EC(ECCount)", func() { EC(ECCount) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("%s did not panic", tc.name)
				}
			}()
			tc.call()
		})
	}
}

// TestRSASourceHandsOutPoolThenGenerates drains one source concurrently,
// checks it gave every pool key exactly once, then checks the fallback makes
// a fresh, valid key (the one RSA-4096 generation in this package's tests).
func TestRSASourceHandsOutPoolThenGenerates(t *testing.T) {
	src := NewRSASource()
	got := make(chan int, RSACount)
	var wg sync.WaitGroup
	for range RSACount {
		wg.Go(func() {
			k, err := src()
			if err != nil {
				t.Error(err)
				return
			}
			for i := range RSACount {
				if RSA(i) == k {
					got <- i
					return
				}
			}
			t.Error("source returned a key outside the pool before the pool was used up")
		})
	}
	wg.Wait()
	close(got)
	seen := map[int]bool{}
	for i := range got {
		if seen[i] {
			t.Errorf("pool key %d handed out twice", i)
		}
		seen[i] = true
	}
	if len(seen) != RSACount {
		t.Fatalf("handed out %d distinct pool keys, want %d", len(seen), RSACount)
	}

	extra, err := src()
	if err != nil {
		t.Fatalf("fallback generation: %v", err)
	}
	if extra.N.BitLen() != 4096 {
		t.Errorf("fallback key has %d bits, want 4096", extra.N.BitLen())
	}
	for i := range RSACount {
		if RSA(i).N.Cmp(extra.N) == 0 {
			t.Fatalf("fallback key equals pool key %d", i)
		}
	}
}

func TestRSASourceOrder(t *testing.T) {
	src := NewRSASource()
	for i := range 3 {
		k, err := src()
		if err != nil {
			t.Fatal(err)
		}
		if k != RSA(i) {
			t.Fatalf("call %d returned another key than RSA(%d)", i, i)
		}
	}
	if k, _ := NewRSASource()(); k != RSA(0) {
		t.Fatal("a new source does not start at RSA(0)")
	}
}
