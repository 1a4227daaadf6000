package fakeclock_test

import (
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

func TestMain(m *testing.M) { logcheck.Main(m) }
