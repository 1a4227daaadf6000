package childproc

import (
	"sync"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// Servers is how a package starts and stops its servers: one of a test's
// own (Start), or the one all its tests share (Shared), started by the
// first test that asks and stopped after the last. A package declares
//
//	var servers = childproc.NewServers("dynalite", start, (*Server).stop)
//
// and offers its methods as its own (var Start, Shared, Wrap =
// servers.Start, …); its TestMain runs the tests through Wrap and
// logcheck.Run, so the shared server stops before logcheck checks its
// output.
type Servers[S any] struct {
	pkg   string // the package offering them, for the message when TestMain lacks Wrap
	start func() (S, error)
	stop  func(S)

	mu      sync.Mutex
	inMain  bool // Wrap was called
	started bool // start was called for the shared server, which returned srv, err
	srv     S
	err     error
}

// NewServers returns the Servers that start starts and stop stops; pkg
// names the package that offers them, such as "dynalite".
func NewServers[S any](pkg string, start func() (S, error), stop func(S)) *Servers[S] {
	return &Servers[S]{pkg: pkg, start: start, stop: stop}
}

// Start starts a server for t and stops it when t's cleanup runs.
func (s *Servers[S]) Start(t testing.TB) S {
	t.Helper()
	srv, err := s.start()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { s.stop(srv) })
	return srv
}

// Shared returns the server the tests share, starting it on first use. It
// fails t if the server cannot start (every later call fails the same way)
// or if TestMain did not call Wrap.
func (s *Servers[S]) Shared(t testing.TB) S {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.inMain {
		t.Fatalf("%s.Shared needs TestMain to call %[1]s.Main or %[1]s.Wrap", s.pkg)
	}
	if !s.started {
		s.srv, s.err = s.start()
		s.started = true
	}
	if s.err != nil {
		t.Fatalf("%v", s.err)
	}
	return s.srv
}

// Wrap returns m with the shared server stopped after its tests, before
// logcheck's check.
func (s *Servers[S]) Wrap(m logcheck.M) logcheck.M {
	s.mu.Lock()
	s.inMain = true
	s.mu.Unlock()
	return withShared[S]{m, s}
}

type withShared[S any] struct {
	logcheck.M
	s *Servers[S]
}

func (m withShared[S]) Run() int {
	defer func() {
		m.s.mu.Lock()
		defer m.s.mu.Unlock()
		if m.s.started && m.s.err == nil {
			m.s.stop(m.s.srv)
		}
	}()
	return m.M.Run()
}
