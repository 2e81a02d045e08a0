package app

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// run must release what it started (servers, the embedded sandbox,
// readiness checks, uploads). The test PostgreSQL, when a test started one,
// is stopped before goleak looks.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(registrytest.StopAfter(m))
}
