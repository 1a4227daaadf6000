// Package dispatch runs a sweep's jobs lane by lane: each lane (a
// provider) within its rate budget and pauses (Gate), at most Workers
// calls at once (Permit), served round-robin so that a slow, paced or
// failing lane does not hold up the rest, and no job started too close to
// the deadline. It knows nothing of what a job does: the caller names each
// job's lane and does the work.
package dispatch

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/clock"
)

// maxIdleWait: a run with nothing running waits at most this long for a
// lane to become ready; a longer pause (a Retry-After) leaves its jobs to
// a later run rather than bill an idle Lambda.
const maxIdleWait = 10 * time.Second

// Config is how Run dispatches.
type Config struct {
	// Workers bounds the calls at once (Permit); as many jobs again may
	// be doing their work around a call (in the broker: leasing, saving).
	Workers int
	// Call is one whole call's length: a request leaves only if this much
	// is left before its context's deadline (Permit.Acquire).
	Call time.Duration
	// StartReserve: no job starts once ctx's deadline is closer than this.
	StartReserve time.Duration
	// Gate returns a lane's gate.
	Gate func(lane string) *Gate
	// Clock is the record clock the gates are asked on; waits and the
	// deadline are measured in real time.
	Clock clock.Clock
}

// Outcome is what a job reports back.
type Outcome int

const (
	// Done: the job ran (whatever it came to).
	Done Outcome = iota
	// HeldBack: the job left its key untouched because its lane became
	// unavailable meanwhile; it counts as deferred.
	HeldBack
)

// Report is what a run came to.
type Report struct {
	// Started counts the jobs that were started.
	Started int
	// Deferred counts the jobs never started and those held back.
	Deferred int
	// Held names, sorted, the lanes that deferred jobs.
	Held []string
}

// Run runs work on jobs, lane names from lane, until every job is done,
// ctx ends, its deadline is closer than StartReserve, or nothing can start
// soon enough (see maxIdleWait). A lane is served only when its gate is
// ready, and holds at most half the goroutines while another lane could
// use them. work gets a Permit to acquire just before its call and to give
// back with Done.
func Run[J any](ctx context.Context, cfg Config, jobs []J, lane func(J) string, work func(context.Context, J, *Permit) Outcome) Report {
	r := newRun(ctx, cfg, jobs, lane)
	for r.open(ctx) {
		now := cfg.Clock.Now()
		c := r.pick(now)
		if c.lane == nil {
			if !r.wait(ctx, now, c) {
				break
			}
			continue
		}
		r.start(ctx, c, work)
	}
	r.wg.Wait()
	return r.report()
}

// lane is one lane's queue of jobs in a run.
type lane[J any] struct {
	name     string
	gate     *Gate
	jobs     []J
	inflight int // guarded by run.mu
	heldBack int // guarded by run.mu
}

// run is one Run's state; only Run's goroutine touches it, except the
// lanes' counters (mu) and free.
type run[J any] struct {
	cfg     Config
	all     []*lane[J] // in order of first job, for the report
	lanes   []*lane[J] // those with jobs left
	mu      sync.Mutex
	wg      sync.WaitGroup
	limit   int           // goroutines: Workers calling, as many around calls
	free    chan struct{} // a job finished
	slots   chan struct{} // call slots, shared by the run's permits
	rr      int           // round-robin position in lanes
	running int
	started int
	// lastStart is when a job last started (real time), for the idle
	// guard of runs without a deadline.
	lastStart   time.Time
	stopAt      time.Time // real: ctx's deadline less StartReserve
	hasDeadline bool
}

func newRun[J any](ctx context.Context, cfg Config, jobs []J, laneOf func(J) string) *run[J] {
	r := &run[J]{cfg: cfg, limit: 2 * cfg.Workers}
	r.free = make(chan struct{}, r.limit)
	r.slots = make(chan struct{}, cfg.Workers)
	byName := map[string]*lane[J]{}
	for _, j := range jobs {
		name := laneOf(j)
		l := byName[name]
		if l == nil {
			l = &lane[J]{name: name, gate: cfg.Gate(name)}
			byName[name] = l
			r.all = append(r.all, l)
		}
		l.jobs = append(l.jobs, j)
	}
	r.lanes = slices.Clone(r.all)
	r.lastStart = cfg.Clock.Start()
	dl, ok := ctx.Deadline()
	r.stopAt, r.hasDeadline = dl.Add(-cfg.StartReserve), ok
	return r
}

// open reaps finished jobs and reports whether the run may start more:
// ctx is live, its deadline not within StartReserve, and jobs are left.
func (r *run[J]) open(ctx context.Context) bool {
	for drained := false; !drained; {
		select {
		case <-r.free:
			r.running--
		default:
			drained = true
		}
	}
	if ctx.Err() != nil || r.hasDeadline && r.cfg.Clock.Until(r.stopAt) <= 0 {
		return false
	}
	r.lanes = slices.DeleteFunc(r.lanes, func(l *lane[J]) bool { return len(l.jobs) == 0 })
	return len(r.lanes) > 0
}

// choice is pick's answer: a lane to start a job of, or when a lane
// could next be served.
type choice[J any] struct {
	lane      *lane[J]
	pacedWake time.Time // earliest a rate budget allows a request
	pauseWake time.Time // earliest a paused lane comes back
}

// pick chooses the next lane round-robin among those whose gate is ready
// at now and that hold fewer than their share of the goroutines.
func (r *run[J]) pick(now time.Time) choice[J] {
	var c choice[J]
	if r.running >= r.limit {
		return c
	}
	share := r.share(now)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.lanes {
		l := r.lanes[(r.rr+i)%len(r.lanes)]
		if l.inflight >= share {
			continue
		}
		ok, at, paused := l.gate.state(now)
		switch {
		case ok:
			c.lane, r.rr = l, (r.rr+i+1)%len(r.lanes)
			l.inflight++
			return c
		case paused:
			c.pauseWake = earliest(c.pauseWake, at)
		default:
			c.pacedWake = earliest(c.pacedWake, at)
		}
	}
	return c
}

// share is how many goroutines one lane may hold: all of them, unless
// another lane can use them now too (a paused or pacing lane leaves them
// to the rest); then half.
func (r *run[J]) share(now time.Time) int {
	contending := 0
	for _, l := range r.lanes {
		if l.gate.Ready(now) {
			contending++
		}
	}
	if contending > 1 {
		return max(1, (r.limit+1)/2)
	}
	return r.limit
}

// wait waits, when no lane could be picked, for a job to finish or a lane
// to become ready; false when there is nothing to wait for.
func (r *run[J]) wait(ctx context.Context, now time.Time, c choice[J]) bool {
	wake := r.wake(now, c)
	if r.running == 0 && wake.IsZero() {
		return false // nothing can start soon enough
	}
	var fire <-chan time.Time
	if !wake.IsZero() {
		timer := time.NewTimer(wake.Sub(now)) // real time: the record clock only says how long
		defer timer.Stop()
		fire = timer.C
	}
	select {
	case <-r.free:
		r.running--
	case <-fire:
	case <-ctx.Done():
	}
	return true
}

// wake is when to look again for a lane to serve, or zero. With nothing
// running, a run waits for a rate budget up to the deadline (pacing is the
// budget's point), but for a paused lane at most maxIdleWait: a long
// Retry-After is left to a later run rather than billed as an idle Lambda.
// Without a deadline (local runs, tests) every wait is capped so, and so
// is the time since the last start.
func (r *run[J]) wake(now time.Time, c choice[J]) time.Time {
	var wake time.Time
	if r.fits(now, c.pacedWake, r.cfg.Clock.Until(r.stopAt)) {
		wake = c.pacedWake
	}
	if r.fits(now, c.pauseWake, maxIdleWait) {
		wake = earliest(wake, c.pauseWake)
	}
	return wake
}

// fits reports whether waiting until at (record clock, from now) ends
// before the run stops starting jobs and within limit.
func (r *run[J]) fits(now, at time.Time, limit time.Duration) bool {
	if at.IsZero() {
		return false
	}
	wait := at.Sub(now)
	if r.hasDeadline {
		return wait < r.cfg.Clock.Until(r.stopAt) && wait <= limit
	}
	return wait <= maxIdleWait && r.cfg.Clock.Since(r.lastStart) <= maxIdleWait
}

// start runs the next job of c's lane in a goroutine of its own.
func (r *run[J]) start(ctx context.Context, c choice[J], work func(context.Context, J, *Permit) Outcome) {
	l := c.lane
	j := l.jobs[0]
	l.jobs = l.jobs[1:]
	r.running++
	r.started++
	r.lastStart = r.cfg.Clock.Start()
	permit := &Permit{gate: l.gate, slots: r.slots, clock: r.cfg.Clock, need: r.cfg.Call}
	r.wg.Go(func() {
		out := work(ctx, j, permit)
		r.mu.Lock()
		l.inflight--
		if out == HeldBack {
			l.heldBack++
		}
		r.mu.Unlock()
		r.free <- struct{}{}
	})
}

// report counts, once every job has returned, what the run left.
func (r *run[J]) report() Report {
	rep := Report{Started: r.started}
	for _, l := range r.all {
		if n := len(l.jobs) + l.heldBack; n > 0 {
			rep.Deferred += n
			rep.Held = append(rep.Held, l.name)
		}
	}
	slices.Sort(rep.Held)
	return rep
}

// earliest is the earlier of a and b, a zero time meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}
