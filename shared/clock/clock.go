// Package clock keeps the broker's two kinds of time apart.
//
// The record clock (Clock.Now) is the time written into records and
// compared with what they hold: refresh due times, token expiries, lease
// times, and the pauses and rate budgets kept on a provider's answers.
// Tests fake it to jump hours ahead.
//
// Deadline and latency measurement (Clock.Start, Since, Until, Left) is
// monotonic real time, never the record clock: context deadlines, timers
// and the HTTP client's timeouts all run on it, so a faked record clock
// must not move them.
package clock

import (
	"context"
	"time"
)

// Clock is the record clock and the real-time measurement beside it. The
// zero value keeps records on time.Now.
type Clock struct {
	// Record is the record clock; nil means time.Now.
	Record func() time.Time
}

// Now is the record clock's time.
func (c Clock) Now() time.Time {
	if c.Record != nil {
		return c.Record()
	}
	return time.Now()
}

// Start is a real, monotonic instant to measure from (a latency, a wait,
// a deadline derived from it).
func (Clock) Start() time.Time { return time.Now() }

// Since is the real time elapsed since start (from Start).
func (Clock) Since(start time.Time) time.Duration { return time.Since(start) }

// Until is the real time left before t, a real instant (a context
// deadline, or one derived from Start).
func (Clock) Until(t time.Time) time.Duration { return time.Until(t) }

// Left is the real time left before ctx's deadline, and whether it has one.
func (c Clock) Left(ctx context.Context) (time.Duration, bool) {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, false
	}
	return c.Until(dl), true
}

// Fits reports whether a call of length need, starting after wait, ends
// before ctx's deadline (always, without one).
func (c Clock) Fits(ctx context.Context, wait, need time.Duration) bool {
	left, ok := c.Left(ctx)
	return !ok || left-wait >= need
}
