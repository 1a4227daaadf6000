package childproc

import (
	"sync"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// Shared is one server that all tests of a package share: started by the
// first test that asks for it, stopped after the last one. A package
// declares one as a variable,
//
//	var shared = childproc.NewShared("dynalite", start, (*Server).stop)
//
// and its TestMain runs the tests through shared.Wrap (and logcheck.Run),
// so the server stops before logcheck checks its output.
type Shared[S any] struct {
	pkg   string // the package offering it, for the message when TestMain lacks Wrap
	start func() (S, error)
	stop  func(S)

	mu      sync.Mutex
	inMain  bool // Wrap was called
	started bool // start was called; srv and err hold what it returned
	srv     S
	err     error
}

// NewShared returns a Shared whose server start starts and stop stops;
// pkg names the package that offers it, such as "dynalite".
func NewShared[S any](pkg string, start func() (S, error), stop func(S)) *Shared[S] {
	return &Shared[S]{pkg: pkg, start: start, stop: stop}
}

// Wrap returns m with the shared server stopped after its tests, before
// logcheck's check. Call it in TestMain (through the package's Main or
// Wrap).
func (s *Shared[S]) Wrap(m logcheck.M) logcheck.M {
	s.mu.Lock()
	s.inMain = true
	s.mu.Unlock()
	return withShared[S]{m, s}
}

type withShared[S any] struct {
	logcheck.M
	s *Shared[S]
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

// Get returns the shared server, starting it on first use. It fails t if
// the server cannot start (every later Get fails the same way) or if
// TestMain did not call Wrap.
func (s *Shared[S]) Get(t testing.TB) S {
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
