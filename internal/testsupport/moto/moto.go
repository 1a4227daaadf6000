// Package moto runs moto_server (github.com/getmoto/moto), an emulator of
// many AWS services, for tests: Secrets Manager, EventBridge with rules
// delivering to SQS queues, and a second DynamoDB beside dynalite.
//
// moto runs under the Python interpreter that has the pinned tools
// (pytools: .tools/py/bin/python3 under the module root, where `make tools`
// installs them when the machine lacks them, else python3 on PATH), or
// $MOTO_PYTHON. A missing moto fails the test: it is never skipped.
//
// It is started through launcher.py rather than the moto_server command,
// for one gap of moto's: its server handles requests on threads, and its
// DynamoDB does not make a conditional write atomic, so two racing writes
// with the same condition can both succeed (the store conformance suite's
// lease race saw it one run in three). DynamoDB guarantees it, and the
// broker's leases rely on it, so launcher.py serializes DynamoDB requests;
// every other service keeps moto's threads (an SQS long poll must not hold
// up the rest).
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
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/pytools"
)

// Region is the region of every client and resource.
const Region = "us-east-1"

// Server is a running moto_server.
type Server struct {
	// Endpoint is the server's URL, such as http://127.0.0.1:41234.
	Endpoint string

	p *childproc.Process
}

var servers = childproc.NewServers("moto", func() (*Server, error) { return start() }, (*Server).stop)

//go:embed launcher.py
var launcher string

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

// StartEnforcing is Start for a test that switches moto's IAM enforcement
// on (EnforceIAM): its server runs with INITIAL_NO_AUTH_ACTION_COUNT, which
// moto reads only at start, so no shared server is ever enforcing.
func StartEnforcing(t testing.TB) *Server {
	t.Helper()
	// Infinity: no request is checked until EnforceIAM resets the count.
	s, err := start("INITIAL_NO_AUTH_ACTION_COUNT=inf")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(s.stop)
	return s
}

// start starts a server with env added to this process's environment.
func start(env ...string) (*Server, error) {
	py, err := interpreter()
	if err != nil {
		return nil, err
	}
	p, err := childproc.Start(childproc.Spec{
		Name: "moto_server",
		Command: func(port int) *exec.Cmd {
			cmd := exec.Command(py, "-c", launcher, "127.0.0.1", strconv.Itoa(port))
			// Unbuffered, so that what it printed before it is stopped
			// reaches logcheck.
			cmd.Env = append(os.Environ(), append(env, "PYTHONUNBUFFERED=1", "MOTO_PORT="+strconv.Itoa(port))...)
			return cmd
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

// interpreter returns the Python that runs moto.
func interpreter() (string, error) {
	if py := os.Getenv("MOTO_PYTHON"); py != "" {
		if _, err := os.Stat(py); err != nil {
			return "", fmt.Errorf("moto not installed: run 'make tools' (MOTO_PYTHON: %v)", err)
		}
		return py, nil
	}
	py, err := pytools.Interpreter()
	if err != nil {
		return "", fmt.Errorf("moto not installed: run 'make tools' (%v)", err)
	}
	return py, nil
}
