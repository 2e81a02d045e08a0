package sandbox

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// generationRetryDelay spaces out attempts after a failed key generation.
const generationRetryDelay = time.Second

// errPoolClosed is returned by take after close.
var errPoolClosed = errors.New("sandbox: key pool closed")

// pooledKey is a fresh key waiting for an assignment.
type pooledKey struct {
	private *rsa.PrivateKey
	file    string // "" in memory mode
}

// keyPool keeps up to size fresh RSA-4096 keys generated in the background,
// so an assignment rarely waits the ~0.7 s a key costs. With a directory the
// keys are persisted (one PKCS#8 file each) and survive a restart.
type keyPool struct {
	dir      string
	size     int
	generate func() (*rsa.PrivateKey, error)
	log      *slog.Logger

	mu      sync.Mutex
	keys    []pooledKey
	changed chan struct{} // closed and replaced whenever keys grows
	closed  bool

	want   chan struct{} // nudges the generator after a take
	cancel context.CancelFunc
	done   chan struct{}
}

// newKeyPool loads persisted pool keys (dropping any the store already
// assigned: a crash between assignment and cleanup) and starts the
// generator.
func newKeyPool(dir string, size int, generate func() (*rsa.PrivateKey, error), assigned func(publicHex string) bool, log *slog.Logger) (*keyPool, error) {
	p := &keyPool{
		dir:      dir,
		size:     size,
		generate: generate,
		log:      log,
		changed:  make(chan struct{}),
		want:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if dir != "" {
		if err := ensureDir(dir); err != nil {
			return nil, err
		}
		if err := p.load(assigned); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.run(ctx)
	return p, nil
}

func (p *keyPool) load(assigned func(publicHex string) bool) error {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("sandbox: reading key pool: %w", err)
	}
	for _, e := range entries {
		path := filepath.Join(p.dir, e.Name())
		if e.IsDir() || filepath.Ext(e.Name()) != ".pem" {
			// A temp file from an interrupted write.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("sandbox: cleaning key pool: %w", err)
			}
			continue
		}
		data, err := os.ReadFile(path) //nolint:gosec // G304: a pool file this package wrote under the configured DataDir
		if err != nil {
			return fmt.Errorf("sandbox: reading key pool: %w", err)
		}
		priv, err := parseRSAPrivatePEM(data)
		if err != nil {
			return fmt.Errorf("sandbox: key pool file %s: %w", path, err)
		}
		pub, err := keycrypto.PublicKeyFromPrivate(priv)
		if err != nil {
			return fmt.Errorf("sandbox: key pool file %s: %w", path, err)
		}
		if assigned(pub.Hex()) {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("sandbox: cleaning key pool: %w", err)
			}
			continue
		}
		p.keys = append(p.keys, pooledKey{private: priv, file: path})
	}
	return nil
}

// run generates keys while the pool is below size, until close.
func (p *keyPool) run(ctx context.Context) {
	defer close(p.done)
	for {
		p.mu.Lock()
		full := len(p.keys) >= p.size
		p.mu.Unlock()
		if full {
			select {
			case <-p.want:
				continue
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		priv, err := p.generate()
		if err == nil {
			err = p.add(priv)
		}
		if err != nil {
			p.log.Error("sandbox key pool: generating a key failed", "error", err)
			select {
			case <-time.After(generationRetryDelay):
			case <-ctx.Done():
				return
			}
			continue
		}
		p.log.Debug("sandbox key pool: key ready", "duration", time.Since(start))
	}
}

// add persists priv (when the pool has a directory) and makes it available.
func (p *keyPool) add(priv *rsa.PrivateKey) error {
	k := pooledKey{private: priv}
	if p.dir != "" {
		data, err := marshalRSAPrivatePEM(priv)
		if err != nil {
			return err
		}
		k.file = filepath.Join(p.dir, newUUID()+".pem")
		if err := writeFileAtomic(k.file, data); err != nil {
			return fmt.Errorf("persisting pool key: %w", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, k)
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// take removes one key from the pool, waiting for the generator when it
// is empty. The caller ends with consumed (assigned) or putBack.
func (p *keyPool) take(ctx context.Context) (pooledKey, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return pooledKey{}, errPoolClosed
		}
		if n := len(p.keys); n > 0 {
			k := p.keys[0]
			p.keys = p.keys[1:]
			p.mu.Unlock()
			p.nudge()
			return k, nil
		}
		changed := p.changed
		p.mu.Unlock()
		p.nudge()
		select {
		case <-changed:
		case <-ctx.Done():
			return pooledKey{}, ctx.Err()
		}
	}
}

// consumed deletes the persisted copy of a key that is now assigned (the
// store holds it from here on).
func (p *keyPool) consumed(k pooledKey) {
	if k.file == "" {
		return
	}
	if err := os.Remove(k.file); err != nil && !errors.Is(err, os.ErrNotExist) {
		// Harmless: load drops pool files whose key is already assigned.
		p.log.Warn("sandbox key pool: removing an assigned key's pool file failed", "error", err)
	}
}

// putBack returns a key whose assignment failed.
func (p *keyPool) putBack(k pooledKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append([]pooledKey{k}, p.keys...)
	close(p.changed)
	p.changed = make(chan struct{})
}

// available is the number of keys ready now.
func (p *keyPool) available() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys)
}

func (p *keyPool) nudge() {
	select {
	case p.want <- struct{}{}:
	default:
	}
}

// close stops the generator (waiting for a generation in progress) and
// fails pending takes. Persisted keys stay for the next run.
func (p *keyPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	p.cancel()
	<-p.done
}
