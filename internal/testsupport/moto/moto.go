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
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// Region is the region of every client and resource.
const Region = "us-east-1"

// startTimeout bounds how long a server may take to answer.
const startTimeout = 30 * time.Second

// Server is a running moto_server.
type Server struct {
	// Endpoint is the server's URL, such as http://127.0.0.1:41234.
	Endpoint string

	cmd  *exec.Cmd
	out  *bytes.Buffer // the process's output; read once done is closed
	done chan struct{} // closed when the process has exited
}

// Start starts a server for t and stops it when t's cleanup runs.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(s.stop)
	return s
}

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

var shared struct {
	sync.Mutex
	inMain bool
	srv    *Server
	err    error
}

// Main runs the tests of a package that uses Shared through logcheck.Run,
// stops the shared server and exits. Call it from TestMain.
func Main(m *testing.M) { os.Exit(logcheck.Run(Wrap(m))) }

// Wrap returns m with the shared server stopped after its tests, for a
// TestMain that combines it with another wrapper and calls logcheck.Main.
func Wrap(m logcheck.M) logcheck.M {
	shared.Lock()
	shared.inMain = true
	shared.Unlock()
	return withShared{m}
}

// withShared stops the shared server after the tests, before logcheck's
// check.
type withShared struct{ logcheck.M }

func (m withShared) Run() int {
	defer func() {
		shared.Lock()
		defer shared.Unlock()
		if shared.srv != nil {
			shared.srv.stop()
		}
	}()
	return m.M.Run()
}

// Shared returns the server shared by the package's tests, starting it on
// first use. The package's TestMain must call Main or Wrap.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if !shared.inMain {
		t.Fatalf("moto.Shared needs TestMain to call moto.Main or moto.Wrap")
	}
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = start()
	}
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.srv
}

// start starts a server with env added to this process's environment.
func start(env ...string) (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("moto: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	var out bytes.Buffer
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = sysProcAttr()
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("moto: %w", err)
	}
	s := &Server{Endpoint: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, out: &out, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.done)
	}()

	// Ready when moto's own API answers: the port alone may accept before
	// the application is loaded.
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(startTimeout); ; {
		if resp, err := client.Get(s.Endpoint + "/moto-api/data.json"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("moto_server exited before answering: %s\n%s", cmd.ProcessState, &out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("moto_server did not answer on %s within %v:\n%s", s.Endpoint, startTimeout, &out)
		}
	}
}

func (s *Server) stop() {
	s.cmd.Process.Kill()
	<-s.done
	logcheck.Feed("moto_server "+s.Endpoint, s.out.String())
}

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
