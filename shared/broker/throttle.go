package broker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Provider throttling for sweeps.
const (
	// defaultRetryAfter pauses a provider that answered 429 without a
	// usable Retry-After.
	defaultRetryAfter = 10 * time.Second
	// tripAfter consecutive unavailable answers (5xx, timeouts) pause a
	// provider for tripPause, so a failing provider does not hold workers
	// the other providers could use.
	tripAfter = 3
	tripPause = 30 * time.Second
	// clientPause: a provider that refused the client credentials twice
	// (with a fresh read of the secret between) is left alone this long,
	// so one bad secret rotation marks one connection needs_reauth per
	// pause — and raises the alarm — rather than every due connection.
	clientPause = 5 * time.Minute
	// maxIdleWait: a sweep with nothing running waits at most this long
	// for a provider to become ready; a longer pause (a Retry-After) leaves
	// its connections to a later tick rather than bill an idle Lambda.
	maxIdleWait = 10 * time.Second
)

// throttle is one provider's sending discipline in this process: its rate
// budget (provider.RateLimit) and a pause after 429 or repeated failures.
// It lives as long as the warm function, across sweeps.
type throttle struct {
	mu          sync.Mutex
	lim         *rate.Limiter // nil without a budget
	pausedUntil time.Time
	unavailable int // consecutive unavailable answers
}

func (b *Broker) throttleFor(name string) *throttle {
	if t, ok := b.throttles.Load(name); ok {
		return t.(*throttle)
	}
	t := &throttle{}
	if p, ok := b.Catalog.Get(name); ok {
		if every := p.RateLimit.Every(); every > 0 {
			// A burst of one: the budget is spent evenly, so no window of
			// the provider's period sees more than its Requests.
			t.lim = rate.NewLimiter(rate.Every(every), 1)
		}
	}
	got, _ := b.throttles.LoadOrStore(name, t)
	return got.(*throttle)
}

// state reports whether the provider may be called at now; if not, when
// to ask again and whether that is because it is paused (rather than
// pacing its rate budget). It reserves nothing: the request is reserved
// when it is about to go out (callPermit.acquire).
func (t *throttle) state(now time.Time) (ready bool, at time.Time, paused bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Before(t.pausedUntil) {
		return false, t.pausedUntil, true
	}
	if t.lim == nil {
		return true, now, false
	}
	tokens := t.lim.TokensAt(now)
	if tokens >= 1 {
		return true, now, false
	}
	wait := time.Duration((1 - tokens) / float64(t.lim.Limit()) * float64(time.Second))
	return false, now.Add(max(wait, time.Millisecond)), false
}

// paused reports whether the provider is paused at now (429, failures).
func (t *throttle) paused(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return now.Before(t.pausedUntil)
}

// ready reports whether the provider may be called at now.
func (t *throttle) ready(now time.Time) bool {
	ok, _, _ := t.state(now)
	return ok
}

// reserve takes one request of the budget at now and returns it with how
// long to wait before sending it, or false if the provider is paused. The
// reservation is nil without a budget; one whose request is never sent
// goes back with release.
func (t *throttle) reserve(now time.Time) (*rate.Reservation, time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Before(t.pausedUntil) {
		return nil, 0, false
	}
	if t.lim == nil {
		return nil, 0, true
	}
	r := t.lim.ReserveN(now, 1)
	return r, r.DelayFrom(now), true
}

// release gives back the budget r took for a request that was not sent,
// as far as x/time/rate can: fully for the latest reservation before its
// time to act, otherwise not (the budget then refills on its own).
func (t *throttle) release(r *rate.Reservation, now time.Time) {
	if r == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r.CancelAt(now)
}

// pause leaves the provider alone until until.
func (t *throttle) pause(until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pausedUntil = later(t.pausedUntil, until)
}

// observe updates the pause from a provider's answer (nil: success).
func (t *throttle) observe(now time.Time, pe *provider.Error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case pe == nil:
		t.unavailable = 0
	case pe.Status == 429:
		wait := pe.RetryAfter
		if wait <= 0 {
			wait = defaultRetryAfter
		}
		t.pausedUntil = later(t.pausedUntil, now.Add(wait))
	case pe.Failure == provider.FailureUnavailable:
		if t.unavailable++; t.unavailable >= tripAfter {
			t.unavailable = 0
			t.pausedUntil = later(t.pausedUntil, now.Add(tripPause))
		}
	default:
		t.unavailable = 0
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// callPermit lets a sweep's worker call its provider: acquire waits for
// the provider's rate budget and for one of the sweep's call slots (at
// most Workers provider calls at once), done gives the slot back. Leases
// and saves run outside the slots, so a worker's DynamoDB requests overlap
// other workers' provider calls. A nil permit (an on-demand refresh) does
// nothing.
type callPermit struct {
	b     *Broker
	t     *throttle
	slots chan struct{}
	held  bool
}

// errNotSent: the request was not sent (the provider was paused
// meanwhile, the wait would leave too little time before the deadline, or
// no slot freed up in time); the connection is released, not failed.
var errNotSent = errors.New("provider call not started: provider paused, too little time left, or no call slot in time")

// acquire waits for the provider's rate budget and a call slot, and lets
// the request go only if it may still leave when both are there:
//
//   - the provider is not paused: a 429's Retry-After (or the circuit
//     breaker) seen while this request queued holds it back too;
//   - the whole provider call still fits before ctx's deadline (the lease's
//     end less the save reserve): a request cut off by the deadline may have
//     been honoured, and with a rotating refresh token the broker would keep
//     a dead one (RFC 9700 §4.14). Checked before the wait too, so a request
//     that could not leave in time does not queue at all.
//
// A request that may not leave returns errNotSent and gives its budget
// back, so it costs the provider's other connections nothing.
func (c *callPermit) acquire(ctx context.Context) (err error) {
	if c == nil {
		return nil
	}
	r, wait, ok := c.t.reserve(c.b.now())
	if !ok {
		return errNotSent
	}
	defer func() {
		if err != nil {
			c.t.release(r, c.b.now())
		}
	}()
	need := c.b.Wire.Timeout()
	if !fitsBefore(ctx, wait, need) {
		return errNotSent
	}
	if wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return errNotSent
		}
	}
	select {
	case c.slots <- struct{}{}:
		c.held = true
	case <-ctx.Done():
		return errNotSent
	}
	if c.t.paused(c.b.now()) || !fitsBefore(ctx, 0, need) {
		c.done()
		return errNotSent
	}
	return nil
}

// fitsBefore reports whether a call of length need, starting after wait,
// ends before ctx's deadline.
func fitsBefore(ctx context.Context, wait, need time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl)-wait >= need
}

func (c *callPermit) done() {
	if c != nil && c.held {
		c.held = false
		<-c.slots
	}
}

// lane is one provider's queue of due connections in a sweep.
type lane struct {
	provider string
	keys     []store.Key
	inflight int
	heldBack int // keys work held back untouched
}

// dispatch runs work on keys: at most workers provider calls at once
// (callPermit), with as many connections again being leased or saved
// around them. Keys are grouped by provider and served round-robin; a
// provider is served only when its throttle allows, and holds at most half
// the goroutines while another provider could use them, so a slow,
// throttled or failing provider does not hold up the rest. It stops starting work when ctx ends or its deadline is
// closer than startReserve, and returns how many keys it left and the
// providers they belong to.
//
// work reports whether it held the key back untouched because its
// provider became unavailable meanwhile; such keys count as left.
func (b *Broker) dispatch(ctx context.Context, keys []store.Key, workers int, work func(context.Context, store.Key, *callPermit) (heldBack bool)) (left int, held []string) {
	var lanes []*lane
	byProvider := map[string]*lane{}
	for _, k := range keys {
		l := byProvider[k.Provider]
		if l == nil {
			l = &lane{provider: k.Provider}
			byProvider[k.Provider] = l
			lanes = append(lanes, l)
		}
		l.keys = append(l.keys, k)
	}
	var (
		mu    sync.Mutex // guards lanes' inflight
		wg    sync.WaitGroup
		limit = 2 * workers                // goroutines: workers calling, as many leasing or saving
		free  = make(chan struct{}, limit) // a goroutine finished
		slots = make(chan struct{}, workers)
		rr    int
	)
	running := 0
	lastStart := time.Now() // real time of the last start, for the idle guard
	deadline, hasDeadline := ctx.Deadline()
	stopAt := deadline.Add(-startReserve)
	for {
		// Reap finished workers without blocking.
		for drained := false; !drained; {
			select {
			case <-free:
				running--
			default:
				drained = true
			}
		}
		if ctx.Err() != nil || hasDeadline && !time.Now().Before(stopAt) {
			break
		}
		now := b.now() // throttles run on the broker's clock
		// Drop finished lanes.
		active := lanes[:0]
		for _, l := range lanes {
			if len(l.keys) > 0 {
				active = append(active, l)
			}
		}
		lanes = active
		if len(lanes) == 0 {
			break
		}
		// A provider holds at most half the workers while another one can
		// use them now; a paused or pacing provider leaves them to the rest.
		contending := 0
		for _, l := range lanes {
			if b.throttleFor(l.provider).ready(now) {
				contending++
			}
		}
		perLane := limit
		if contending > 1 {
			perLane = max(1, (limit+1)/2)
		}
		var (
			picked    *lane
			permit    *callPermit
			pacedWake time.Time // earliest a rate budget allows a request
			pauseWake time.Time // earliest a paused provider comes back
		)
		if running < limit {
			mu.Lock()
			for i := range lanes {
				l := lanes[(rr+i)%len(lanes)]
				if l.inflight >= perLane {
					continue
				}
				t := b.throttleFor(l.provider)
				ok, at, paused := t.state(now)
				switch {
				case ok:
					picked, permit, rr = l, &callPermit{b: b, t: t, slots: slots}, (rr+i+1)%len(lanes)
				case paused && (pauseWake.IsZero() || at.Before(pauseWake)):
					pauseWake = at
				case !paused && (pacedWake.IsZero() || at.Before(pacedWake)):
					pacedWake = at
				}
				if picked != nil {
					break
				}
			}
			if picked != nil {
				picked.inflight++
			}
			mu.Unlock()
		}
		if picked == nil {
			// Wait for a worker to finish or a provider to become ready.
			// With nothing running, wait for a rate budget up to the
			// deadline (pacing is the budget's point), but for a paused
			// provider at most maxIdleWait: a long Retry-After is left to a
			// later tick rather than billed as an idle Lambda. Without a
			// deadline (local runs, tests) every wait is capped.
			fits := func(at time.Time, limit time.Duration) bool {
				if at.IsZero() {
					return false
				}
				wait := at.Sub(now)
				if hasDeadline {
					return time.Now().Add(wait).Before(stopAt) && wait <= limit
				}
				return wait <= maxIdleWait && time.Since(lastStart) <= maxIdleWait
			}
			var wake time.Time
			if fits(pacedWake, time.Until(stopAt)) {
				wake = pacedWake
			}
			if fits(pauseWake, maxIdleWait) && (wake.IsZero() || pauseWake.Before(wake)) {
				wake = pauseWake
			}
			if running == 0 && wake.IsZero() {
				break // nothing can start soon enough
			}
			var timer *time.Timer
			var fire <-chan time.Time
			if !wake.IsZero() {
				timer = time.NewTimer(wake.Sub(now))
				fire = timer.C
			}
			select {
			case <-free:
				running--
			case <-fire:
			case <-ctx.Done():
			}
			if timer != nil {
				timer.Stop()
			}
			continue
		}
		k := picked.keys[0]
		picked.keys = picked.keys[1:]
		running++
		lastStart = time.Now()
		wg.Go(func() {
			back := work(ctx, k, permit)
			mu.Lock()
			picked.inflight--
			if back {
				picked.heldBack++
			}
			mu.Unlock()
			free <- struct{}{}
		})
	}
	wg.Wait()
	for _, l := range byProvider {
		if n := len(l.keys) + l.heldBack; n > 0 {
			left += n
			held = append(held, l.provider)
		}
	}
	slices.Sort(held)
	return left, held
}
