package awsstack_test

import (
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
)

// TestMain shares dynalite's and moto's servers and checks that no test
// here logs a credential (S22).
func TestMain(m *testing.M) { logcheck.Main(moto.Wrap(dynalite.Wrap(m))) }
