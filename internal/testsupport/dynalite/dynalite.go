// Package dynalite runs dynalite, a local DynamoDB server, for tests.
//
// The binary is $DYNALITE_BIN, or .tools/node_modules/.bin/dynalite under
// the module root, as installed by `make tools`. A missing binary fails the
// test: it is never skipped.
//
// A package whose tests share one server declares
//
//	func TestMain(m *testing.M) { dynalite.Main(m) }
//
// (or combines Wrap with another wrapper) and calls Shared; Start gives a test a server of its own. Main runs the
// tests through logcheck.Run, and each server's output goes to logcheck.Feed
// when it stops.
package dynalite

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"gopkg.in/yaml.v3"

	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
)

// Server is a running dynalite process.
type Server struct {
	// Endpoint is the server's URL, such as http://127.0.0.1:41234.
	Endpoint string
	// Client is a DynamoDB client for Endpoint.
	Client *dynamodb.Client

	p *childproc.Process
}

var servers = childproc.NewServers("dynalite", start, (*Server).stop)

// The servers, as childproc.Servers has them: Start starts one for a test
// and stops it when the test's cleanup runs; Shared returns the one the
// package's tests share, started on first use, for which TestMain calls
// Main, or Wrap to combine it with another package's wrapper and then
// logcheck.Main.
var (
	Start  = servers.Start
	Shared = servers.Shared
	Wrap   = servers.Wrap
)

// Main runs the tests of a package that uses Shared through logcheck.Run,
// stops the shared server and exits. Call it from TestMain.
func Main(m *testing.M) { os.Exit(logcheck.Run(Wrap(m))) }

// NewTable creates a table with a fresh name and the schema of
// template.yaml's ConnectionsTable (see tableSchema), waits until it is
// active, and returns its name.
func NewTable(t testing.TB, client *dynamodb.Client) string {
	t.Helper()
	schema, err := tableSchema()
	if err != nil {
		t.Fatalf("dynalite: %v", err)
	}
	name := "test-" + rand.Text()
	in := *schema
	in.TableName = aws.String(name)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := client.CreateTable(ctx, &in); err != nil {
		t.Fatalf("dynalite: create table: %v", err)
	}
	w := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, time.Minute); err != nil {
		t.Fatalf("dynalite: wait for table: %v", err)
	}
	return name
}

// NewStore returns a dynamo.Store on a NewTable, sealing with a random
// local key (testkeys.Sealer), for tests that are not about the store.
func NewStore(t testing.TB, client *dynamodb.Client) *dynamo.Store {
	t.Helper()
	sealer := testkeys.Sealer()
	return dynamo.NewWithSealers(client, NewTable(t, client), sealer, sealer)
}

// schemaProperties are the properties of ConnectionsTable that make its
// schema. The rest (TTL, point-in-time recovery, tags, the name) is
// deployment, not schema.
var schemaProperties = []string{"BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes"}

// tableSchema reads the CreateTable input of the store's table from
// template.yaml's ConnectionsTable, so the schema has one source: the
// template that deploys it. CloudFormation spells those properties as
// CreateTable does, so they go through JSON into the SDK's input type.
var tableSchema = sync.OnceValues(func() (*dynamodb.CreateTableInput, error) {
	b, err := modroot.ReadFile("template.yaml")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Resources struct {
			ConnectionsTable struct {
				Type       string         `yaml:"Type"`
				Properties map[string]any `yaml:"Properties"`
			} `yaml:"ConnectionsTable"`
		} `yaml:"Resources"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("template.yaml: %w", err)
	}
	table := doc.Resources.ConnectionsTable
	if table.Type != "AWS::DynamoDB::Table" {
		return nil, fmt.Errorf("template.yaml: ConnectionsTable is %q, not an AWS::DynamoDB::Table", table.Type)
	}
	schema := map[string]any{}
	for _, p := range schemaProperties {
		v, ok := table.Properties[p]
		if !ok {
			return nil, fmt.Errorf("template.yaml: ConnectionsTable has no %s", p)
		}
		schema[p] = v
	}
	j, err := json.Marshal(schema)
	if err != nil {
		return nil, fmt.Errorf("template.yaml: ConnectionsTable: %w", err)
	}
	in := &dynamodb.CreateTableInput{}
	if err := json.Unmarshal(j, in); err != nil {
		return nil, fmt.Errorf("template.yaml: ConnectionsTable: %w", err)
	}
	return in, nil
})

func start() (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	p, err := childproc.Start(childproc.Spec{
		Name: "dynalite",
		Command: func(port int) *exec.Cmd {
			return exec.Command(bin, "--host", "127.0.0.1", "--port", strconv.Itoa(port),
				"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0")
		},
	})
	if err != nil {
		return nil, err
	}
	return &Server{
		Endpoint: p.URL,
		Client: dynamodb.New(dynamodb.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String(p.URL),
			Credentials:  credentials.NewStaticCredentialsProvider("fake", "fake", ""),
		}),
		p: p,
	}, nil
}

func (s *Server) stop() { s.p.Stop() }

// binary returns the path of the dynalite executable.
func binary() (string, error) {
	bin := os.Getenv("DYNALITE_BIN")
	if bin == "" {
		root, err := modroot.Dir()
		if err != nil {
			return "", fmt.Errorf("dynalite not installed: run 'make tools' (%v)", err)
		}
		bin = filepath.Join(root, ".tools", "node_modules", ".bin", "dynalite")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("dynalite not installed: run 'make tools' (%v)", err)
	}
	return bin, nil
}
