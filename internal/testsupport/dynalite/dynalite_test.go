package dynalite_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
)

func TestStart(t *testing.T) {
	var endpoint string
	t.Run("server", func(t *testing.T) {
		srv := dynalite.Start(t)
		endpoint = srv.Endpoint
		table := dynalite.NewTable(t, srv.Client)
		out, err := srv.Client.ListTables(t.Context(), &dynamodb.ListTablesInput{})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.TableNames) != 1 || out.TableNames[0] != table {
			t.Errorf("ListTables = %v, want [%s]", out.TableNames, table)
		}
	})
	// The subtest's cleanup stopped the server.
	if conn, err := net.Dial("tcp", strings.TrimPrefix(endpoint, "http://")); err == nil {
		conn.Close()
		t.Errorf("server at %s still accepts connections after cleanup", endpoint)
	}
}

// A missing dynalite fails the test, naming how to install it.
func TestMissingBinaryFails(t *testing.T) {
	t.Setenv("DYNALITE_BIN", filepath.Join(t.TempDir(), "dynalite"))
	msgs := failures.Of(t, func(tb testing.TB) { dynalite.Start(tb) })
	if len(msgs) != 1 || !strings.Contains(msgs[0], "dynalite not installed: run 'make tools'") {
		t.Errorf("failures %q, want one naming 'make tools'", msgs)
	}
}
