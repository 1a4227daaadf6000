package broker_test

import (
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
)

// The refresh tests run the broker on DynamoDB (dynalite) as in AWS.
func TestMain(m *testing.M) { dynalite.Main(m) }
