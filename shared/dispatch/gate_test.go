package dispatch

import (
	"testing"
	"time"
)

// TestGateBudget: a budget of one request per 2 s, burst one, on a record
// clock that only the test moves: when the lane is ready, and how long a
// reservation waits.
func TestGateBudget(t *testing.T) {
	const every = 2 * time.Second
	tests := []struct {
		name      string
		reserveAt []time.Duration // reservations before asking, at these offsets
		at        time.Duration   // ask at this offset
		ready     bool
		next      time.Duration // when not ready: the offset to ask again
		wait      time.Duration // a reservation made at at waits this long
	}{
		{name: "fresh budget", at: 0, ready: true, wait: 0},
		{name: "spent", reserveAt: []time.Duration{0}, at: 0, next: every, wait: every},
		{name: "half refilled", reserveAt: []time.Duration{0}, at: time.Second, next: every, wait: time.Second},
		{name: "refilled", reserveAt: []time.Duration{0}, at: every, ready: true, wait: 0},
		{name: "burst of one: a long idle saves no second request", reserveAt: []time.Duration{0, time.Hour}, at: time.Hour, next: time.Hour + every, wait: every},
		{name: "two queued", reserveAt: []time.Duration{0, 0}, at: 0, next: 2 * every, wait: 2 * every},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			t0 := clk.Now()
			g := newGate(every)
			for _, off := range tt.reserveAt {
				if _, _, ok := g.reserve(t0.Add(off)); !ok {
					t.Fatal("reserve refused on a lane that is not paused")
				}
			}
			ready, at, paused := g.state(t0.Add(tt.at))
			if ready != tt.ready || paused {
				t.Fatalf("State = ready %v paused %v, want ready %v, not paused", ready, paused, tt.ready)
			}
			if !ready && !at.Equal(t0.Add(tt.next)) {
				t.Errorf("ask again at +%v, want +%v", at.Sub(t0), tt.next)
			}
			r, wait, ok := g.reserve(t0.Add(tt.at))
			if !ok || wait != tt.wait || r == nil {
				t.Errorf("reserve = wait %v ok %v, want wait %v", wait, ok, tt.wait)
			}
		})
	}
}

// TestGateWithoutBudget: a lane without a budget is always ready and its
// reservations wait for nothing.
func TestGateWithoutBudget(t *testing.T) {
	g := newGate(0)
	now := newFakeClock().Now()
	for range 100 {
		r, wait, ok := g.reserve(now)
		if r != nil || wait != 0 || !ok {
			t.Fatalf("reserve = %v %v %v, want nothing to wait for", r, wait, ok)
		}
	}
	if !g.Ready(now) {
		t.Error("a lane without a budget is not ready")
	}
}

// TestGatePause: the answers a lane's requests got pause it (Retry-After,
// the circuit breaker) until the record clock passes the pause.
func TestGatePause(t *testing.T) {
	var (
		ok          = Answer{}
		unavailable = Answer{Unavailable: true}
		limited     = func(d time.Duration) Answer { return Answer{RateLimited: true, RetryAfter: d} }
	)
	tests := []struct {
		name    string
		answers []Answer
		pause   time.Duration // an explicit Pause from the first answer's time
		until   time.Duration // paused until this offset (0: not paused)
	}{
		{name: "success", answers: []Answer{ok}},
		{name: "429 with Retry-After", answers: []Answer{limited(30 * time.Second)}, until: 30 * time.Second},
		{name: "429 without Retry-After", answers: []Answer{limited(0)}, until: defaultRetryAfter},
		{name: "a shorter Retry-After does not shorten a pause", answers: []Answer{limited(time.Minute), limited(time.Second)}, until: time.Minute},
		{name: "two unavailable answers", answers: []Answer{unavailable, unavailable}},
		{name: "circuit breaker", answers: []Answer{unavailable, unavailable, unavailable}, until: tripPause},
		{name: "a success ends the run", answers: []Answer{unavailable, unavailable, ok, unavailable, unavailable}},
		{name: "a 429 does not end the run", answers: []Answer{unavailable, unavailable, limited(time.Second), unavailable}, until: tripPause},
		{name: "explicit pause", answers: []Answer{ok}, pause: 5 * time.Minute, until: 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			t0 := clk.Now()
			g := newGate(0)
			for _, a := range tt.answers {
				g.Observe(t0, a)
			}
			if tt.pause > 0 {
				g.Pause(t0.Add(tt.pause))
			}
			if tt.until == 0 {
				if g.Paused(t0) || !g.Ready(t0) {
					t.Fatal("paused, want not")
				}
				return
			}
			before := t0.Add(tt.until - time.Millisecond)
			if ready, at, paused := g.state(before); ready || !paused || !at.Equal(t0.Add(tt.until)) {
				t.Errorf("State just before the pause ends = ready %v at +%v paused %v, want paused until +%v", ready, at.Sub(t0), paused, tt.until)
			}
			if _, _, sent := g.reserve(before); sent {
				t.Error("reserve went through a pause")
			}
			if g.Paused(t0.Add(tt.until)) || !g.Ready(t0.Add(tt.until)) {
				t.Error("still paused when the pause ends")
			}
		})
	}
}

// TestGatesKeepOneGatePerLane: a lane's gate, and so its spent budget and
// pauses, lasts across runs; its budget is looked up once.
func TestGatesKeepOneGatePerLane(t *testing.T) {
	var gs Gates
	looks := map[string]int{}
	every := func(lane string) func() time.Duration {
		return func() time.Duration { looks[lane]++; return time.Second }
	}
	a := gs.Get("a", every("a"))
	now := newFakeClock().Now()
	a.Pause(now.Add(time.Minute))
	if got := gs.Get("a", every("a")); got != a || !got.Paused(now) {
		t.Error("a second Get returned another gate")
	}
	if gs.Get("b", every("b")).Paused(now) {
		t.Error("one lane's pause holds another")
	}
	if looks["a"] != 1 || looks["b"] != 1 {
		t.Errorf("budget looked up %v times, want once per lane", looks)
	}
}
