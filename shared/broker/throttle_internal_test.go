package broker

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/oauthbroker/oauthbroker/shared/provider"
)

// permitFor is a callPermit on a throttle with a budget of one request per
// every, for a broker whose provider calls take at most timeout.
func permitFor(every, timeout time.Duration) *callPermit {
	b := &Broker{Wire: &provider.Client{HTTP: &http.Client{Timeout: timeout}}}
	t := &throttle{lim: rate.NewLimiter(rate.Every(every), 1)}
	return &callPermit{b: b, t: t, slots: make(chan struct{}, 4)}
}

// TestAcquireRefusesCallThatCannotFinish: a request whose budget wait plus
// one whole provider call would run past the deadline is refused at once,
// unsent, and its reservation goes back to the budget, so the next request
// waits for the one before it only.
func TestAcquireRefusesCallThatCannotFinish(t *testing.T) {
	const every = time.Second
	c := permitFor(every, time.Second)
	if err := c.acquire(context.Background()); err != nil { // spends the burst
		t.Fatal(err)
	}
	c.done()

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond) // wait 1 s + call 1 s > 1.5 s
	defer cancel()
	start := time.Now()
	second := &callPermit{b: c.b, t: c.t, slots: c.slots}
	if err := second.acquire(ctx); !errors.Is(err, errNotSent) {
		t.Fatalf("acquire = %v, want errNotSent", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("refusal took %v: it waited for a budget it could not use", d)
	}
	if second.held || len(c.slots) != 0 {
		t.Error("a refused request holds a call slot")
	}
	// Released: the next reservation waits for the first request's
	// interval only (under 1 s), not for the refused one's too (2 s).
	r, wait, ok := c.t.reserve(time.Now())
	if !ok || wait > every {
		t.Errorf("next request waits %v, want at most %v: the refused reservation was not cancelled", wait, every)
	}
	c.t.release(r, time.Now())
}

// TestAcquireRechecksPauseAfterWait: a provider paused (a 429's
// Retry-After) while a request waited for the budget holds that request
// back: it is not sent and holds no call slot.
func TestAcquireRechecksPauseAfterWait(t *testing.T) {
	c := permitFor(300*time.Millisecond, time.Second)
	if err := c.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.done()
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.t.pause(time.Now().Add(time.Minute)) // the 429 of the request in flight
	}()
	queued := &callPermit{b: c.b, t: c.t, slots: c.slots}
	if err := queued.acquire(context.Background()); !errors.Is(err, errNotSent) {
		t.Fatalf("acquire after a pause = %v, want errNotSent", err)
	}
	if queued.held || len(c.slots) != 0 {
		t.Error("a held-back request holds a call slot")
	}
}

// TestAcquireLetsCallWithTimeGo: with the whole call fitting before the
// deadline after the wait, the request goes, holding a slot until done.
func TestAcquireLetsCallWithTimeGo(t *testing.T) {
	c := permitFor(200*time.Millisecond, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for range 2 {
		if err := c.acquire(ctx); err != nil {
			t.Fatalf("acquire = %v", err)
		}
		if !c.held || len(c.slots) != 1 {
			t.Fatal("granted request holds no slot")
		}
		c.done()
	}
}
