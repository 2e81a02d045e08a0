package upstream

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// update rewrites the golden files in testdata/ from what the client sends.
var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// TestMain fails the package if any test leaves a goroutine behind: the
// SecureFile writer goroutine and the HTTP connections must all wind down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
