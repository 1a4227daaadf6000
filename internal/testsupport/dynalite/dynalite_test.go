package dynalite_test

import (
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
)

func TestStart(t *testing.T) {
	childproc.CheckStopsWithTest(t, func(t *testing.T) string {
		srv := dynalite.Start(t)
		table := dynalite.NewTable(t, srv.Client)
		out, err := srv.Client.ListTables(t.Context(), &dynamodb.ListTablesInput{})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.TableNames) != 1 || out.TableNames[0] != table {
			t.Errorf("ListTables = %v, want [%s]", out.TableNames, table)
		}
		return srv.Endpoint
	})
}

// A missing dynalite fails the test, naming how to install it.
func TestMissingBinaryFails(t *testing.T) {
	t.Setenv("DYNALITE_BIN", filepath.Join(t.TempDir(), "dynalite"))
	failures.Want(t, func(tb testing.TB) { dynalite.Start(tb) }, "dynalite not installed: run 'make tools'")
}
