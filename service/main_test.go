package service

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// SecureFile pipe, the upload and the polling loops must all end. The
// shared test PostgreSQL (registrytest) is stopped first.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(registrytest.StopAfter(m))
}
