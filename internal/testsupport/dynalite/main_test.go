package dynalite_test

import (
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
)

// TestMain checks that no test here logs a credential (S22).
func TestMain(m *testing.M) { dynalite.Main(m) }
