package dispatch

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// job is a test job: its lane and its name.
type job struct{ lane, name string }

func jobLane(j job) string { return j.lane }

func jobs(lane string, n int) []job {
	var out []job
	for i := range n {
		out = append(out, job{lane, lane + strconv.Itoa(i)})
	}
	return out
}

// laneSetup is a lane's gate in a Run test, on the test's record clock.
type laneSetup struct {
	every    time.Duration // budget: one request per every
	spent    bool          // its one request already spent
	paused   time.Duration // paused this long from the start
	heldBack bool          // its jobs report HeldBack
}

// TestRunDefers, on a record clock that does not move: which jobs a run
// starts and which it leaves (deferred) for a later run, and the lanes
// that left them.
func TestRunDefers(t *testing.T) {
	tests := []struct {
		name         string
		lanes        map[string]laneSetup
		jobs         []job
		deadline     time.Duration // 0: none
		startReserve time.Duration
		cancelled    bool
		want         Report
	}{
		{
			name:  "all start",
			lanes: map[string]laneSetup{"a": {}, "b": {}},
			jobs:  append(jobs("a", 3), jobs("b", 2)...),
			want:  Report{Started: 5},
		},
		{
			name:  "a long pause defers its lane only",
			lanes: map[string]laneSetup{"paused": {paused: time.Minute}, "ok": {}},
			jobs:  append(jobs("paused", 3), jobs("ok", 2)...),
			want:  Report{Started: 2, Deferred: 3, Held: []string{"paused"}},
		},
		{
			name:  "a pause longer than maxIdleWait is not waited for",
			lanes: map[string]laneSetup{"paused": {paused: maxIdleWait + time.Second}},
			jobs:  jobs("paused", 2),
			want:  Report{Deferred: 2, Held: []string{"paused"}},
		},
		{
			name:  "a budget far off is not waited for without a deadline",
			lanes: map[string]laneSetup{"paced": {every: time.Hour, spent: true}},
			jobs:  jobs("paced", 3),
			want:  Report{Deferred: 3, Held: []string{"paced"}},
		},
		{
			name:     "a budget past the deadline is not waited for",
			lanes:    map[string]laneSetup{"paced": {every: time.Hour, spent: true}},
			jobs:     jobs("paced", 2),
			deadline: time.Minute,
			want:     Report{Deferred: 2, Held: []string{"paced"}},
		},
		{
			name:  "held back jobs count as deferred",
			lanes: map[string]laneSetup{"back": {heldBack: true}, "ok": {}},
			jobs:  append(jobs("back", 2), jobs("ok", 1)...),
			want:  Report{Started: 3, Deferred: 2, Held: []string{"back"}},
		},
		{
			name:         "too close to the deadline to start",
			lanes:        map[string]laneSetup{"a": {}, "b": {}},
			jobs:         append(jobs("a", 2), jobs("b", 1)...),
			deadline:     20 * time.Second,
			startReserve: 26 * time.Second,
			want:         Report{Deferred: 3, Held: []string{"a", "b"}},
		},
		{
			name:      "context ended",
			lanes:     map[string]laneSetup{"a": {}},
			jobs:      jobs("a", 2),
			cancelled: true,
			want:      Report{Deferred: 2, Held: []string{"a"}},
		},
		{
			name: "no jobs",
			want: Report{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			gates := map[string]*Gate{}
			for name, s := range tt.lanes {
				g := newGate(s.every)
				if s.spent {
					g.reserve(clk.Now())
				}
				if s.paused > 0 {
					g.Pause(clk.Now().Add(s.paused))
				}
				gates[name] = g
			}
			ctx := caseContext(t, tt.deadline, tt.cancelled)
			cfg := Config{Workers: 2, Call: time.Second, StartReserve: tt.startReserve, Gate: func(l string) *Gate { return gates[l] }, Clock: recordClock(clk)}
			var mu sync.Mutex
			var ran []string
			start := time.Now()
			got := Run(ctx, cfg, tt.jobs, jobLane, func(ctx context.Context, j job, p *Permit) Outcome {
				if tt.lanes[j.lane].heldBack {
					return HeldBack
				}
				if err := p.Acquire(ctx); err != nil {
					return HeldBack
				}
				defer p.Done()
				mu.Lock()
				ran = append(ran, j.name)
				mu.Unlock()
				return Done
			})
			if got.Started != tt.want.Started || got.Deferred != tt.want.Deferred || !slices.Equal(got.Held, tt.want.Held) {
				t.Errorf("Run = %+v, want %+v (ran %v)", got, tt.want, ran)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Run took %v: it waited for a lane it could not serve", d)
			}
		})
	}
}

// TestRunBoundsCalls: at most Workers calls at once, and at most twice as
// many jobs running around them.
func TestRunBoundsCalls(t *testing.T) {
	const workers = 3
	clk := newFakeClock()
	var gs Gates
	cfg := Config{Workers: workers, Call: time.Second, Gate: func(l string) *Gate { return gs.Get(l, func() time.Duration { return 0 }) }, Clock: recordClock(clk)}
	var running, calling, maxRunning, maxCalling atomic.Int32
	bump := func(n *atomic.Int32, peak *atomic.Int32) {
		v := n.Add(1)
		for p := peak.Load(); v > p && !peak.CompareAndSwap(p, v); p = peak.Load() {
		}
	}
	got := Run(t.Context(), cfg, append(jobs("a", 20), jobs("b", 20)...), jobLane, func(ctx context.Context, _ job, p *Permit) Outcome {
		bump(&running, &maxRunning)
		defer running.Add(-1)
		time.Sleep(2 * time.Millisecond) // the lease
		if err := p.Acquire(ctx); err != nil {
			t.Error(err)
			return Done
		}
		bump(&calling, &maxCalling)
		time.Sleep(5 * time.Millisecond) // the call
		calling.Add(-1)
		p.Done()
		time.Sleep(2 * time.Millisecond) // the save
		return Done
	})
	if got.Started != 40 || got.Deferred != 0 {
		t.Errorf("Run = %+v, want all 40 started", got)
	}
	if m := maxCalling.Load(); m > workers {
		t.Errorf("%d calls at once, want at most %d", m, workers)
	}
	if m := maxRunning.Load(); m > 2*workers {
		t.Errorf("%d jobs at once, want at most %d", m, 2*workers)
	}
}

// TestRunSharesWorkers: while another lane can use them, one lane holds
// at most half the goroutines, even when its jobs are slow and the other
// lane's quick; a lane that is paused leaves them all to the rest.
func TestRunSharesWorkers(t *testing.T) {
	const workers = 2 // 4 goroutines
	tests := []struct {
		name    string
		pausedB bool
		want    int32 // most of lane a's jobs running at once while b had jobs to run
	}{
		{name: "two lanes ready", want: workers},
		{name: "the other lane paused", pausedB: true, want: 2 * workers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			gates := map[string]*Gate{"a": newGate(0), "b": newGate(0)}
			if tt.pausedB {
				gates["b"].Pause(clk.Now().Add(time.Hour))
			}
			cfg := Config{Workers: workers, Call: time.Second, Gate: func(l string) *Gate { return gates[l] }, Clock: recordClock(clk)}
			const nb, look = 200, 50 // b's jobs, and how many of them are done when a is looked at
			var inA, peakA, doneB, seen atomic.Int32
			release := make(chan struct{})
			var once sync.Once
			stop := func() { once.Do(func() { seen.Store(peakA.Load()); close(release) }) }
			Run(t.Context(), cfg, append(jobs("a", 8), jobs("b", nb)...), jobLane, func(ctx context.Context, j job, p *Permit) Outcome {
				if j.lane == "b" { // quick
					switch n := doneB.Add(1); {
					case n == look: // b has jobs left, so it can use its share
						for deadline := time.Now().Add(time.Second); inA.Load() < workers && time.Now().Before(deadline); {
							time.Sleep(time.Millisecond) // let a's picked jobs get going
						}
						stop()
					case n > look:
						// Held until a is looked at: b must not run out of
						// jobs meanwhile, which would leave a every goroutine.
						<-release
					}
					return Done
				}
				v := inA.Add(1) // slow: held until look, or the run full
				defer inA.Add(-1)
				for pk := peakA.Load(); v > pk && !peakA.CompareAndSwap(pk, v); pk = peakA.Load() {
				}
				if tt.pausedB && v == 2*workers {
					stop()
				}
				select {
				case <-release:
				case <-time.After(2 * time.Second): // b never got its share
					stop()
				}
				return Done
			})
			if got := seen.Load(); got != tt.want {
				t.Errorf("lane a held %d goroutines at once, want %d", got, tt.want)
			}
		})
	}
}
