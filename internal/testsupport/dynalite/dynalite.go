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
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
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

// Start starts a server for t and stops it when t's cleanup runs.
func Start(t testing.TB) *Server {
	t.Helper()
	return servers.Start(t)
}

// Main runs the tests of a package that uses Shared through logcheck.Run,
// stops the shared server and exits. Call it from TestMain.
func Main(m *testing.M) { os.Exit(logcheck.Run(Wrap(m))) }

// Wrap returns m with the shared server stopped after its tests, for a
// TestMain that combines it with another wrapper (such as moto.Wrap) and
// calls logcheck.Main.
func Wrap(m logcheck.M) logcheck.M { return servers.Wrap(m) }

// Shared returns the server shared by the package's tests, starting it on
// first use. The package's TestMain must call Main or Wrap.
func Shared(t testing.TB) *Server {
	t.Helper()
	return servers.Shared(t)
}

// NewTable creates a table with a fresh name and the schema of
// dynamo.CreateTable, and returns its name.
func NewTable(t testing.TB, client *dynamodb.Client) string {
	t.Helper()
	name := "test-" + rand.Text()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := dynamo.CreateTable(ctx, client, name); err != nil {
		t.Fatalf("dynalite: %v", err)
	}
	return name
}

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
