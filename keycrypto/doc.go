// Package keycrypto is the one place RecoveryService does the client-side
// cryptography the Partner Key Service contract demands, so that no caller
// re-implements (and gets wrong) the steps the provider sees fail most often.
//
// It covers:
//   - recovery public keys: the upstream's hex of an RSA-4096 DER
//     SubjectPublicKeyInfo, converted to and from DER and PEM with strict
//     validation (an off-by-one hex, a PKCS#1 key or a wrong size is an error
//     that says precisely what is wrong);
//   - RSA-OAEP encryption with SHA-256 as both the OAEP and the MGF1 hash and
//     an empty label (one block, at most MaxPlaintextLen bytes);
//   - the plaintext checksum (SHA-256 of the plaintext, never the ciphertext)
//     and the key fingerprint (SHA-256 of the DER);
//   - the enclave's ES256 signature on an assigned key: verification keys
//     from a JWKS or PEM file, eligibility (purpose, validity), signature
//     verification over the exact signed bytes, and the payload binding check;
//   - the enclave's side (key generation, decryption, RFC 8785 canonical JSON,
//     signing, JWKS publishing) for the sandbox emulator and for tests.
//
// Every error wraps exactly one of the package's sentinel errors (test with
// errors.Is) and never carries plaintext or private key material.
package keycrypto

//go:generate go run ./internal/vectorsgen -out testdata/vectors.json
