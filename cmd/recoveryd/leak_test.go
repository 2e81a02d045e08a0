package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// run must release what it started (servers, the embedded sandbox,
// readiness checks, uploads).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
