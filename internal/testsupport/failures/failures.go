// Package failures lets a test check how a test helper fails: that a
// missing tool names how to install it, that a refused configuration says
// why, that a wait gives up with the count it saw.
//
//	msgs := failures.Of(t, func(tb testing.TB) { moto.Start(tb) })
//
// The helpers here report failures with Errorf and Fatalf; Of records
// those instead of failing the test.
package failures

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Of calls fn with a testing.TB that records the messages of Errorf and
// Fatalf instead of failing t, and returns them in order. Fatalf ends fn
// as it ends a test: fn runs on a goroutine of its own, which Fatalf ends
// with runtime.Goexit. Everything else is t's own, Fatal and Error
// included, so a helper's unexpected failure still fails the test, and
// what fn registers with Cleanup runs when t ends.
func Of(t testing.TB, fn func(testing.TB)) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs
}

// Want fails t unless fn fails exactly once, with a message that holds
// every one of wants: the check of how a helper refuses, such as a
// harness whose tool is missing naming how to install it.
func Want(t testing.TB, fn func(testing.TB), wants ...string) {
	t.Helper()
	msgs := Of(t, fn)
	if len(msgs) == 1 && !slices.ContainsFunc(wants, func(w string) bool { return !strings.Contains(msgs[0], w) }) {
		return
	}
	t.Errorf("failures %q, want one naming %q", msgs, wants)
}

type recorder struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// Helper does nothing: the recorded messages carry no file and line.
func (r *recorder) Helper() {}
