package service

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// SecureFile pipe, the upload and the polling loops must all end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
