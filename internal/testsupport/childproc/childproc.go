// Package childproc runs the servers tests talk to (dynalite, moto_server,
// local-kms, oidc-provider) as child processes, the one way they all need:
// on a free loopback port, waited for until they answer, killed when done,
// and with their output handed to logcheck, so that a server that logs a
// registered credential fails the test binary (S22) like any other output.
//
// Start runs one server; Servers gives each test one of its own or one that
// all tests of a package share, stopped after them by the package's TestMain.
//
// Finding the server's executable stays with each caller: each knows where
// its tool is installed and how to tell the developer to install it. A
// missing tool is a test failure, never a skip.
package childproc

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
)

// DefaultTimeout is how long Start waits for a server to answer unless
// Spec.Timeout says otherwise.
const DefaultTimeout = 15 * time.Second

// poll is how often Start tries whether the server answers.
const poll = 20 * time.Millisecond

// Spec says how to run a server and how to tell it is ready.
type Spec struct {
	// Name names the server in errors and in logcheck reports, such as
	// "dynalite".
	Name string
	// Command returns the command that serves on 127.0.0.1:port. Start
	// sets its Stdout and Stderr (to the server's output).
	Command func(port int) *exec.Cmd
	// ReadyPath, if set, is a path the server answers 200 OK on once it
	// serves, such as "/moto-api/data.json": a server whose port accepts
	// connections before its application is loaded needs one. If empty,
	// the server is ready when its port accepts a connection.
	ReadyPath string
	// Timeout bounds the wait for the server to be ready; DefaultTimeout
	// if zero.
	Timeout time.Duration
}

// Process is a running server.
type Process struct {
	// Addr is the server's address, such as 127.0.0.1:41234.
	Addr string
	// URL is http:// and Addr.
	URL string

	name     string
	cmd      *exec.Cmd
	out      syncbuf.Buffer
	done     chan struct{} // closed when the process has exited
	stopOnce sync.Once
}

// Start runs the server spec describes on a free loopback port and waits
// until it is ready. A server that exits first, or is not ready within
// the timeout, is an error holding its output; it is stopped by then.
func Start(spec Spec) (*Process, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	port := ports[0]
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p := &Process{Addr: addr, URL: "http://" + addr, name: spec.Name, done: make(chan struct{})}
	p.cmd = spec.Command(port)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if p.cmd.SysProcAttr == nil {
		p.cmd.SysProcAttr = sysProcAttr()
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()

	timeout := spec.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ready, where := p.accepts, addr
	if spec.ReadyPath != "" {
		ready, where = p.answers(spec.ReadyPath), p.URL+spec.ReadyPath
	}
	for deadline := time.Now().Add(timeout); !ready(); {
		select {
		case <-p.done:
			p.Stop()
			return nil, fmt.Errorf("%s exited before it answered on %s: %s\n%s", spec.Name, where, p.cmd.ProcessState, p.Output())
		case <-time.After(poll):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s did not answer on %s within %v:\n%s", spec.Name, where, timeout, p.Output())
		}
	}
	return p, nil
}

// accepts reports whether the server's port accepts a connection.
func (p *Process) accepts() bool {
	c, err := net.DialTimeout("tcp", p.Addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// answers returns whether the server answers GET path with 200 OK.
func (p *Process) answers(path string) func() bool {
	client := &http.Client{Timeout: time.Second}
	return func() bool {
		resp, err := client.Get(p.URL + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// Output returns everything the server has written so far, standard
// output and standard error together.
func (p *Process) Output() string { return p.out.String() }

// Stop kills the server, waits until it has exited and feeds its output
// to logcheck as "<name> <URL>". Stopping a stopped server does nothing.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		p.cmd.Process.Kill()
		<-p.done
		logcheck.Feed(p.name+" "+p.URL, p.Output())
	})
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago: each is held until all are found, so none is returned twice.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
