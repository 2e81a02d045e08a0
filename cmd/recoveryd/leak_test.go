package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
)

// runMainEnv, set to "1", makes the test binary run recoveryd's main with
// its arguments instead of the tests: a test re-executes itself this way to
// see exactly what an operator sees (stderr, exit code).
const runMainEnv = "RECOVERYD_TEST_RUN_MAIN"

// TestMain fails the package if any test leaves a goroutine behind: every
// run must release what it started (servers, the embedded sandbox,
// readiness checks, uploads). The test PostgreSQL, when a test started one,
// is stopped before goleak looks.
func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(registrytest.StopAfter(m))
}
