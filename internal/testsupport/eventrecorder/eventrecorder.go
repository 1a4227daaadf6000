// Package eventrecorder holds Recorder, a lifecycle.Publisher that keeps
// the events it is given so that a test can assert on them.
package eventrecorder

import (
	"context"
	"fmt"
	"sync"

	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
)

// Recorder keeps the events published to it. It refuses an event of an
// unknown type, as every lifecycle.Publisher does. The zero value is ready
// to use; it is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []lifecycle.Event
}

var _ lifecycle.Publisher = (*Recorder)(nil)

// Publish implements lifecycle.Publisher.
func (r *Recorder) Publish(_ context.Context, e lifecycle.Event) error {
	if !e.Type.Valid() {
		return fmt.Errorf("eventrecorder: unknown event type %q", e.Type)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

// Events returns the events published so far, oldest first.
func (r *Recorder) Events() []lifecycle.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]lifecycle.Event(nil), r.events...)
}
