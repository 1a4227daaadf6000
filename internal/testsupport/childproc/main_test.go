package childproc_test

import (
	"os"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// TestMain runs the test binary as one of the helper servers the tests
// start (see serve), or else runs the tests and checks that none logs a
// credential (S22), the servers' output included.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(serve(mode, os.Getenv(portEnv)))
	}
	logcheck.Main(m)
}
