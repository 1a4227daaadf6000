package dynalite_test

import (
	"net"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
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
