package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/clock"
)

// permitFor is a Permit on a gate with a budget of one request per every,
// for calls that take at most need, on clk (real time if zero).
func permitFor(every, need time.Duration, clk clock.Clock) *Permit {
	return &Permit{gate: newGate(every), slots: make(chan struct{}, 4), clock: clk, need: need}
}

// next is another request of p's lane, sharing its gate and slots.
func (p *Permit) next() *Permit {
	return &Permit{gate: p.gate, slots: p.slots, clock: p.clock, need: p.need}
}

// TestAcquireTimeToFinish (S21), on a record clock that does not move: a
// request leaves only if its budget wait plus one whole call still fits
// before the deadline (real time), and one that may not leave is refused
// at once, holding no slot, its reservation given back.
func TestAcquireTimeToFinish(t *testing.T) {
	const every, need = time.Second, time.Second
	tests := []struct {
		name     string
		spent    bool          // the budget's one request is spent: the wait is every
		deadline time.Duration // 0: none
		paused   bool
		cancel   bool
		want     error
	}{
		{name: "no deadline", want: nil},
		{name: "call fits", deadline: 2 * need, want: nil},
		{name: "call does not fit", deadline: need / 2, want: ErrNotSent},
		{name: "wait plus call past the deadline", spent: true, deadline: every + need/2, want: ErrNotSent},
		{name: "paused", deadline: time.Minute, paused: true, want: ErrNotSent},
		{name: "cancelled while waiting", spent: true, cancel: true, want: ErrNotSent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			p := permitFor(every, need, recordClock(clk))
			if tt.spent {
				p.gate.reserve(clk.Now())
			}
			if tt.paused {
				p.gate.Pause(clk.Now().Add(time.Hour))
			}
			ctx := caseContext(t, tt.deadline, tt.cancel)
			start := time.Now()
			err := p.Acquire(ctx)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Acquire = %v, want %v", err, tt.want)
			}
			if d := time.Since(start); d > 200*time.Millisecond {
				t.Errorf("Acquire took %v: it waited for a budget it could not use", d)
			}
			if err == nil {
				if !p.held || len(p.slots) != 1 {
					t.Fatal("a granted request holds no slot")
				}
				p.Done()
				if len(p.slots) != 0 {
					t.Fatal("Done kept the slot")
				}
				return
			}
			if p.held || len(p.slots) != 0 {
				t.Error("a refused request holds a call slot")
			}
			if tt.paused {
				return
			}
			// Given back: the next reservation waits for what came before
			// the refused request only.
			want := time.Duration(0)
			if tt.spent {
				want = every
			}
			if _, wait, _ := p.gate.reserve(clk.Now()); wait != want {
				t.Errorf("next request waits %v, want %v: the refused reservation was not cancelled", wait, want)
			}
		})
	}
}

// TestAcquireRefusesCallThatCannotFinish, in real time: a request whose
// budget wait plus one whole call would run past the deadline is refused
// at once, unsent, and its reservation goes back to the budget, so the
// next request waits for the one before it only.
func TestAcquireRefusesCallThatCannotFinish(t *testing.T) {
	const every = time.Second
	c := permitFor(every, time.Second, clock.Clock{})
	if err := c.Acquire(context.Background()); err != nil { // spends the burst
		t.Fatal(err)
	}
	c.Done()

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond) // wait 1 s + call 1 s > 1.5 s
	defer cancel()
	start := time.Now()
	second := c.next()
	if err := second.Acquire(ctx); !errors.Is(err, ErrNotSent) {
		t.Fatalf("Acquire = %v, want ErrNotSent", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("refusal took %v: it waited for a budget it could not use", d)
	}
	if second.held || len(c.slots) != 0 {
		t.Error("a refused request holds a call slot")
	}
	// Released: the next reservation waits for the first request's
	// interval only (under 1 s), not for the refused one's too (2 s).
	r, wait, ok := c.gate.reserve(time.Now())
	if !ok || wait > every {
		t.Errorf("next request waits %v, want at most %v: the refused reservation was not cancelled", wait, every)
	}
	c.gate.release(r, time.Now())
}

// TestAcquireRechecksPauseAfterWait, in real time: a lane paused (a 429's
// Retry-After) while a request waited for the budget holds that request
// back: it is not sent and holds no call slot.
func TestAcquireRechecksPauseAfterWait(t *testing.T) {
	c := permitFor(300*time.Millisecond, time.Second, clock.Clock{})
	if err := c.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Done()
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.gate.Pause(time.Now().Add(time.Minute)) // the 429 of the request in flight
	}()
	queued := c.next()
	if err := queued.Acquire(context.Background()); !errors.Is(err, ErrNotSent) {
		t.Fatalf("Acquire after a pause = %v, want ErrNotSent", err)
	}
	if queued.held || len(c.slots) != 0 {
		t.Error("a held-back request holds a call slot")
	}
}

// TestAcquireLetsCallWithTimeGo, in real time: with the whole call
// fitting before the deadline after the wait, the request goes, holding a
// slot until done.
func TestAcquireLetsCallWithTimeGo(t *testing.T) {
	c := permitFor(200*time.Millisecond, time.Second, clock.Clock{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for range 2 {
		if err := c.Acquire(ctx); err != nil {
			t.Fatalf("Acquire = %v", err)
		}
		if !c.held || len(c.slots) != 1 {
			t.Fatal("granted request holds no slot")
		}
		c.Done()
	}
}

// TestNilPermit: outside a run (an on-demand refresh) there is nothing to
// wait for.
func TestNilPermit(t *testing.T) {
	var p *Permit
	if err := p.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	p.Done()
}
