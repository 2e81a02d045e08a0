// Package testkeys is a committed pool of TEST-ONLY private keys, so that
// tests never spend the ~0.7 s of CPU (sometimes seconds) that generating an
// RSA-4096 key costs.
//
// The keys are public in this repository and therefore worthless as secrets:
// never use this package, or any key in it, in production code or
// configuration. Only _test.go files and test servers should import it.
//
// The pool holds RSACount RSA-4096 keys and ECCount P-256 ECDSA keys as
// PKCS#8 PEM files in testdata/, embedded into the package. They were made
// once by `go generate` (see internal/gen); regenerate only to change the
// pool.
package testkeys

//go:generate go run ./internal/gen -out testdata -rsa 40 -ec 6
