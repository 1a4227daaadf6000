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
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
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

	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 15 * time.Second

// Server is a running dynalite process.
type Server struct {
	// Endpoint is the server's URL, such as http://127.0.0.1:41234.
	Endpoint string
	// Client is a DynamoDB client for Endpoint.
	Client *dynamodb.Client

	cmd  *exec.Cmd
	out  *bytes.Buffer // the process's output; read once done is closed
	done chan struct{} // closed when the process has exited
}

// Start starts a dynalite server for t and stops it when t's cleanup runs.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
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
// TestMain that combines it with another wrapper (such as moto.Wrap) and
// calls logcheck.Main.
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
// first use. The package's TestMain must call Main.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if !shared.inMain {
		t.Fatalf("dynalite.Shared needs TestMain to call dynalite.Main or dynalite.Wrap")
	}
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = start()
	}
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.srv
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
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("dynalite: %w", err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("dynalite: %w", err)
	}
	s := &Server{cmd: cmd, out: &out, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.done)
	}()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("dynalite exited before accepting connections: %s\n%s", cmd.ProcessState, &out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("dynalite did not accept connections on %s within %v:\n%s", addr, startTimeout, &out)
		}
	}

	s.Endpoint = "http://" + addr
	s.Client = dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("fake", "fake", ""),
	})
	return s, nil
}

func (s *Server) stop() {
	s.cmd.Process.Kill()
	<-s.done
	logcheck.Feed("dynalite "+s.Endpoint, s.out.String())
}

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

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
