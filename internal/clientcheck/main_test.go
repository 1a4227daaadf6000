package clientcheck

import (
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
)

// TestMain checks that no test here logs a credential (S22), and runs the
// tests against the real token handler on one shared DynamoDB (dynalite).
func TestMain(m *testing.M) { dynalite.Main(m) }
