// Command gen writes the committed pool of test-only keys used by package
// testkeys: RSA-4096 and P-256 ECDSA private keys as PKCS#8 PEM files.
//
// It exists so that tests never pay the ~0.7 s (sometimes several seconds)
// of CPU an RSA-4096 key costs: the keys are made once, here, and committed.
// Run it through `go generate ./keycrypto/testkeys`; it replaces every key in
// the output directory, so run it only when the pool must change.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// job is one key to make: its file name and the function that makes it.
type job struct {
	name string
	make func() (crypto.Signer, error)
}

func main() {
	out := flag.String("out", "testdata", "directory to write the PEM files into")
	rsaCount := flag.Int("rsa", 40, "number of RSA-4096 keys")
	ecCount := flag.Int("ec", 6, "number of P-256 ECDSA keys")
	workers := flag.Int("workers", runtime.NumCPU(), "keys generated in parallel")
	flag.Parse()
	if err := run(*out, *rsaCount, *ecCount, *workers); err != nil {
		log.Fatal(err)
	}
}

// run generates every key with a bounded number of goroutines and writes
// each one to its own file.
func run(out string, rsaCount, ecCount, workers int) error {
	if rsaCount < 0 || ecCount < 0 || workers < 1 {
		return fmt.Errorf("counts must be >= 0 and workers >= 1")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var jobs []job
	for i := range rsaCount {
		jobs = append(jobs, job{
			name: fmt.Sprintf("rsa4096-%02d.pem", i),
			make: func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 4096) },
		})
	}
	for i := range ecCount {
		jobs = append(jobs, job{
			name: fmt.Sprintf("ecp256-%02d.pem", i),
			make: func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		})
	}

	queue := make(chan job)
	errs := make(chan error, len(jobs))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range queue {
				errs <- write(out, j)
			}
		})
	}
	for _, j := range jobs {
		queue <- j
	}
	close(queue)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	log.Printf("wrote %d RSA-4096 and %d P-256 keys to %s", rsaCount, ecCount, out)
	return nil
}

// write makes one key and stores it as a PKCS#8 "PRIVATE KEY" PEM block.
func write(dir string, j job) error {
	key, err := j.make()
	if err != nil {
		return fmt.Errorf("%s: %w", j.name, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s: %w", j.name, err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return os.WriteFile(filepath.Join(dir, j.name), data, 0o600)
}
