package secrets_test

import (
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
)

// TestMain checks that no test here logs a credential (S22).
func TestMain(m *testing.M) { moto.Main(m) }
