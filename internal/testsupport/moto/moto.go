// Package moto runs moto_server (github.com/getmoto/moto), an emulator of
// many AWS services, for tests: Secrets Manager, EventBridge with rules
// delivering to SQS queues, and a second DynamoDB beside dynalite.
//
// The binary is $MOTO_SERVER, or .tools/py/bin/moto_server under the module
// root (where `make tools` installs it), or moto_server on PATH. A missing
// binary fails the test: it is never skipped.
//
// A package whose tests share one server (it starts in about a second)
// declares
//
//	func TestMain(m *testing.M) { moto.Main(m) }
//
// or, when it shares a dynalite server too,
//
//	func TestMain(m *testing.M) { logcheck.Main(moto.Wrap(dynalite.Wrap(m))) }
//
// and calls Shared; Start gives a test a server of its own. The server's
// output goes to logcheck.Feed when it stops.
//
// Tests sharing a server stay apart by account: NewAccount gives each test
// an account of its own (moto keeps every account's resources apart and
// picks the account from the request's access key), so two tests may both
// create the secret oauthbroker/keys or a rule on the default bus.
package moto

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// Region is the region of every client and resource.
const Region = "us-east-1"

// Server is a running moto_server.
type Server struct {
	// Endpoint is the server's URL, such as http://127.0.0.1:41234.
	Endpoint string

	p *childproc.Process
}

var servers = childproc.NewServers("moto", start, (*Server).stop)

// Start starts a server for t and stops it when t's cleanup runs.
func Start(t testing.TB) *Server {
	t.Helper()
	return servers.Start(t)
}

// Main runs the tests of a package that uses Shared through logcheck.Run,
// stops the shared server and exits. Call it from TestMain.
func Main(m *testing.M) { os.Exit(logcheck.Run(Wrap(m))) }

// Wrap returns m with the shared server stopped after its tests, for a
// TestMain that combines it with another wrapper and calls logcheck.Main.
func Wrap(m logcheck.M) logcheck.M { return servers.Wrap(m) }

// Shared returns the server shared by the package's tests, starting it on
// first use. The package's TestMain must call Main or Wrap.
func Shared(t testing.TB) *Server {
	t.Helper()
	return servers.Shared(t)
}

func start() (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	p, err := childproc.Start(childproc.Spec{
		Name: "moto_server",
		Command: func(port int) *exec.Cmd {
			return exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
		},
		// The port alone may accept before the application is loaded.
		ReadyPath: "/moto-api/data.json",
		Timeout:   30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return &Server{Endpoint: p.URL, p: p}, nil
}

func (s *Server) stop() { s.p.Stop() }

// binary returns the path of the moto_server executable.
func binary() (string, error) {
	bin, err := find()
	if err != nil {
		return "", fmt.Errorf("moto_server not installed: run 'make tools' or set MOTO_SERVER (%v)", err)
	}
	return bin, nil
}

// find looks for moto_server where binary documents.
func find() (string, error) {
	if bin := os.Getenv("MOTO_SERVER"); bin != "" {
		_, err := os.Stat(bin)
		return bin, err
	}
	root, errRoot := modroot.Dir()
	if errRoot == nil {
		bin := filepath.Join(root, ".tools", "py", "bin", "moto_server")
		if _, errRoot = os.Stat(bin); errRoot == nil {
			return bin, nil
		}
	}
	bin, errPath := exec.LookPath("moto_server")
	if errPath != nil {
		return "", errors.Join(errRoot, errPath)
	}
	return bin, nil
}
