package store_test

import (
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// TestMain checks that no test here logs a credential (S22).
func TestMain(m *testing.M) { logcheck.Main(m) }
