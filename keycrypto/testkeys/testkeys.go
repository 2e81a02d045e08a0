package testkeys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"embed"
	"encoding/pem"
	"fmt"
	"sync"
)

// Pool sizes. They match the files in testdata/; a test of this package
// fails if the two drift apart.
const (
	// RSACount is how many RSA-4096 keys RSA(i) can hand out.
	RSACount = 40
	// ECCount is how many P-256 keys EC(i) can hand out.
	ECCount = 6
)

//go:embed testdata/*.pem
var files embed.FS

// NOTE: keys are parsed lazily, one at a time, because parsing (with Go's
// precomputation and validation) an RSA-4096 key is not free and most tests
// use only a few keys. Each slot is parsed at most once and then shared: the
// keys must be treated as read-only.
var (
	rsaOnce [RSACount]sync.Once
	rsaKeys [RSACount]*rsa.PrivateKey
	ecOnce  [ECCount]sync.Once
	ecKeys  [ECCount]*ecdsa.PrivateKey
)

// RSA returns pool key i (0 <= i < RSACount), an RSA-4096 private key. The
// same i always yields the same *rsa.PrivateKey, so tests can pair a
// ciphertext with the key that opens it by index alone. It panics on an
// index outside the pool, which is a bug in the calling test.
func RSA(i int) *rsa.PrivateKey {
	if i < 0 || i >= RSACount {
		panic(fmt.Sprintf("testkeys.RSA(%d): index outside the pool [0, %d)", i, RSACount))
	}
	rsaOnce[i].Do(func() {
		key, ok := mustParse(fmt.Sprintf("testdata/rsa4096-%02d.pem", i)).(*rsa.PrivateKey)
		if !ok || key.N.BitLen() != 4096 {
			panic(fmt.Sprintf("testkeys: rsa4096-%02d.pem is not an RSA-4096 key", i))
		}
		rsaKeys[i] = key
	})
	return rsaKeys[i]
}

// EC returns pool key i (0 <= i < ECCount), a P-256 ECDSA private key, used
// as an enclave signing key in tests. It panics on an index outside the pool.
func EC(i int) *ecdsa.PrivateKey {
	if i < 0 || i >= ECCount {
		panic(fmt.Sprintf("testkeys.EC(%d): index outside the pool [0, %d)", i, ECCount))
	}
	ecOnce[i].Do(func() {
		key, ok := mustParse(fmt.Sprintf("testdata/ecp256-%02d.pem", i)).(*ecdsa.PrivateKey)
		if !ok || key.Curve != elliptic.P256() {
			panic(fmt.Sprintf("testkeys: ecp256-%02d.pem is not a P-256 key", i))
		}
		ecKeys[i] = key
	})
	return ecKeys[i]
}

// NewRSASource returns a key source for code that takes a
// func() (*rsa.PrivateKey, error), such as the sandbox emulator's key
// generator. Each call of the returned function hands out the next pool key
// (RSA(0), RSA(1), …), so one source never repeats a key; once all RSACount
// keys are used it falls back to generating real RSA-4096 keys, which is
// correct but slow. Separate sources start again at RSA(0), so two sources
// in one test share keys. The source is safe for concurrent use.
func NewRSASource() func() (*rsa.PrivateKey, error) {
	var (
		mu   sync.Mutex
		next int
	)
	return func() (*rsa.PrivateKey, error) {
		mu.Lock()
		i := next
		next++
		mu.Unlock()
		if i < RSACount {
			return RSA(i), nil
		}
		return rsa.GenerateKey(rand.Reader, 4096)
	}
}

// mustParse reads one embedded PKCS#8 PEM file; a broken file is a broken
// build of this package, hence the panic.
func mustParse(name string) any {
	data, err := files.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("testkeys: %v", err))
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(rest) != 0 {
		panic(fmt.Sprintf("testkeys: %s is not exactly one PRIVATE KEY PEM block", name))
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		panic(fmt.Sprintf("testkeys: %s: %v", name, err))
	}
	return key
}
