package dispatch

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// A lane's pauses.
const (
	// defaultRetryAfter pauses a lane whose request was rate limited
	// without a usable Retry-After.
	defaultRetryAfter = 10 * time.Second
	// tripAfter consecutive unavailable answers (5xx, timeouts) pause a
	// lane for tripPause, so a failing lane does not hold workers the
	// other lanes could use.
	tripAfter = 3
	tripPause = 30 * time.Second
)

// Gate is one lane's sending discipline in this process: its rate budget
// and a pause after a rate-limited answer or repeated failures. It lives
// as long as the warm function, across sweeps. Every method takes the
// record clock's time (package clock): pauses come from the answers'
// Retry-After, and the rate budget is spent at the times requests leave.
type Gate struct {
	mu          sync.Mutex
	lim         *rate.Limiter // nil without a budget
	pausedUntil time.Time
	unavailable int // consecutive unavailable answers
}

// newGate is a gate with a budget of one request per every (none if every
// is not positive). The burst is one: the budget is spent evenly, so no
// window of the budget's period sees more than its requests.
func newGate(every time.Duration) *Gate {
	g := &Gate{}
	if every > 0 {
		g.lim = rate.NewLimiter(rate.Every(every), 1)
	}
	return g
}

// Gates holds each lane's Gate for as long as the process lives. The zero
// value is ready to use.
type Gates struct{ m sync.Map } // lane → *Gate

// Get returns lane's gate, made on first use with the budget every gives.
func (gs *Gates) Get(lane string, every func() time.Duration) *Gate {
	if g, ok := gs.m.Load(lane); ok {
		return g.(*Gate)
	}
	g, _ := gs.m.LoadOrStore(lane, newGate(every()))
	return g.(*Gate)
}

// state reports whether the lane may send at now; if not, when to ask
// again and whether that is because it is paused (rather than pacing its
// budget). It reserves nothing: a request reserves its budget when it is
// about to leave (Permit.Acquire).
func (g *Gate) state(now time.Time) (ready bool, at time.Time, paused bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.pausedUntil) {
		return false, g.pausedUntil, true
	}
	if g.lim == nil {
		return true, now, false
	}
	tokens := g.lim.TokensAt(now)
	if tokens >= 1 {
		return true, now, false
	}
	wait := time.Duration((1 - tokens) / float64(g.lim.Limit()) * float64(time.Second))
	return false, now.Add(max(wait, time.Millisecond)), false
}

// Ready reports whether the lane may send at now.
func (g *Gate) Ready(now time.Time) bool {
	ok, _, _ := g.state(now)
	return ok
}

// Paused reports whether the lane is paused at now.
func (g *Gate) Paused(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return now.Before(g.pausedUntil)
}

// Pause leaves the lane alone until until (or a later pause's end).
func (g *Gate) Pause(until time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pausedUntil = later(g.pausedUntil, until)
}

// Answer is what a lane's request came to, as its gate counts it. The
// zero Answer (a success, or a refusal that says nothing of the lane's
// health) ends a run of unavailable answers.
type Answer struct {
	// RateLimited pauses the lane for RetryAfter (defaultRetryAfter when
	// not positive).
	RateLimited bool
	RetryAfter  time.Duration
	// Unavailable counts toward the circuit breaker: tripAfter in a row
	// pause the lane for tripPause.
	Unavailable bool
}

// Observe updates the lane's pause from an answer received at now.
func (g *Gate) Observe(now time.Time, a Answer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case a.RateLimited:
		wait := a.RetryAfter
		if wait <= 0 {
			wait = defaultRetryAfter
		}
		g.pausedUntil = later(g.pausedUntil, now.Add(wait))
	case a.Unavailable:
		if g.unavailable++; g.unavailable >= tripAfter {
			g.unavailable = 0
			g.pausedUntil = later(g.pausedUntil, now.Add(tripPause))
		}
	default:
		g.unavailable = 0
	}
}

// reserve takes one request of the budget at now and returns it with how
// long to wait before sending it, or false if the lane is paused. The
// reservation is nil without a budget; one whose request is never sent
// goes back with release.
func (g *Gate) reserve(now time.Time) (*rate.Reservation, time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.pausedUntil) {
		return nil, 0, false
	}
	if g.lim == nil {
		return nil, 0, true
	}
	r := g.lim.ReserveN(now, 1)
	return r, r.DelayFrom(now), true
}

// release gives back the budget r took for a request that was not sent,
// as far as x/time/rate can: fully for the latest reservation before its
// time to act, otherwise not (the budget then refills on its own).
func (g *Gate) release(r *rate.Reservation, now time.Time) {
	if r == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r.CancelAt(now)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
