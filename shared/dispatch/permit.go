package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/clock"
)

// ErrNotSent: the request was not sent (its lane was paused meanwhile,
// the wait would leave too little time before the deadline, or no call
// slot freed up in time). The job is released, not failed.
var ErrNotSent = errors.New("provider call not started: provider paused, too little time left, or no call slot in time")

// Permit lets one job send its lane's request: Acquire waits for the
// lane's rate budget and for one of the run's call slots (at most Workers
// calls at once), Done gives the slot back. A job's other work (leasing,
// saving) runs outside the slots, so it overlaps other jobs' calls. A nil
// Permit (a call outside any run) does nothing.
type Permit struct {
	gate  *Gate
	slots chan struct{}
	clock clock.Clock
	need  time.Duration // one whole call
	held  bool
}

// Acquire waits for the lane's rate budget and a call slot, and lets the
// request go only if it may still leave when both are there:
//
//   - the lane is not paused: a Retry-After (or the circuit breaker) seen
//     while this request queued holds it back too;
//   - one whole call still fits before ctx's deadline: a request cut off
//     by the deadline may have been honoured, and with a rotating refresh
//     token the caller would keep a dead one (RFC 9700 §4.14). Checked
//     before the wait too, so a request that could not leave in time does
//     not queue at all.
//
// A request that may not leave returns ErrNotSent and gives its budget
// back, so it costs the lane's other jobs nothing.
func (p *Permit) Acquire(ctx context.Context) (err error) {
	if p == nil {
		return nil
	}
	r, wait, ok := p.gate.reserve(p.clock.Now())
	if !ok {
		return ErrNotSent
	}
	defer func() {
		if err != nil {
			p.gate.release(r, p.clock.Now())
		}
	}()
	if !p.clock.Fits(ctx, wait, p.need) || !sleep(ctx, wait) || !p.takeSlot(ctx) {
		return ErrNotSent
	}
	if p.gate.Paused(p.clock.Now()) || !p.clock.Fits(ctx, 0, p.need) {
		p.Done()
		return ErrNotSent
	}
	return nil
}

// Done gives the call slot back, if held.
func (p *Permit) Done() {
	if p != nil && p.held {
		p.held = false
		<-p.slots
	}
}

// takeSlot waits for a call slot; false if ctx ends first.
func (p *Permit) takeSlot(ctx context.Context) bool {
	select {
	case p.slots <- struct{}{}:
		p.held = true
		return true
	case <-ctx.Done():
		return false
	}
}

// sleep waits d of real time (a wait for the budget: the timer is real
// whatever the record clock says); false if ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
