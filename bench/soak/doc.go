// Package soak is the reliability soak run (`make soak`; docs/reliability.md):
// a real sandboxd with injected faults and latency, a real recoveryd in front
// of it, a mixed AssignKey/SecureData/SecureFile load from many callers, and
// recoveryd stopped in the middle (SIGTERM, then kill -9) and restarted.
// After each phase it checks the invariants against the emulator's
// inspection API and prints a table; any violation fails the run.
//
// It is a Go test, so that it shares the tests' PostgreSQL set-up
// (registrytest), but it runs only when RECOVERY_SOAK=1: `make test` skips
// it. The code is all in soak_test.go and its siblings; check_test.go,
// which make test does run, breaks each invariant in turn and wants the
// checks to name it.
package soak
