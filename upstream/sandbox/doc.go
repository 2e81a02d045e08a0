// Package sandbox emulates CoinCover's Partner Key Service so that every test
// and every development run of this project has an upstream that behaves
// exactly as the project's upstream contract, docs/upstream-contract.md,
// describes. Where the emulator goes beyond the public sources (error type
// names, the inspection endpoints, refusing non-rsa4096 keys), that page
// says so.
//
// The emulator is an http.Handler: cmd/sandboxd serves it on a listener,
// cmd/recoveryd embeds it in-process, and tests start it with httptest. It
// serves the three partner endpoints (assign a key, store data, store a
// file) with the contract's statuses and error bodies, publishes its enclave
// signing keys as a JWKS, and adds inspection endpoints under /sandbox/v1/
// that a real upstream does not have, so operators and tests can see what
// was stored and run a recovery end to end.
//
// Like the enclave, the emulator holds the private half of every key it
// assigns: secure/data decrypts the ciphertext (RSA-OAEP, SHA-256 and
// MGF1-SHA256) and checks the plaintext checksum before storing, which is
// how it catches the integration mistakes the provider sees most. Plaintext
// exists only in memory for that check and is never logged or written.
//
// State (keys, user ids, backups, signing keys and the pool of fresh keys)
// lives in memory, or under Config.DataDir when set, written atomically so
// it survives a restart and an interrupted upload stores nothing.
package sandbox
