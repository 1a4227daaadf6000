package broker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// These tests queue several due connections of one provider behind its
// rate budget and check that a request waiting for the budget leaves only
// when it still may: not into a Retry-After that came meanwhile, and not
// with too little time left to finish before its deadline.

// TestRetryAfterHoldsQueuedRequests: Outstand-like, the provider allows one
// call and answers the next 429 with Retry-After 30. The requests already
// waiting for the budget see the pause when their turn comes and are not
// sent: their connections are deferred, untouched, no attempt counted.
func TestRetryAfterHoldsQueuedRequests(t *testing.T) {
	const n = 6
	e := newFaultEnv(t, faultOptions{
		providers: []brokertest.Provider{{
			Name:   "metered",
			Config: providertest.Config{AccessTokenTTL: time.Hour, RotateRefreshTokens: true, RateLimit: 1, RateWindow: 30 * time.Second},
			Entry:  codeEntry + "    rate_limit: {requests: 1, period_seconds: 1}\n",
		}},
		realClock: true,
		refresh:   broker.RefreshOptions{Workers: 8},
	})
	prov := e.Servers["metered"]
	seeded := e.seedN(t, "metered", "m", n)
	sum, elapsed := e.sweep(t)
	starts, _ := e.net.of(prov)
	t.Logf("sweep %+v in %v; %d token requests", sum, elapsed, len(starts))

	// One refreshed, one answered 429, the four queued behind them held.
	if want := (broker.RefreshSummary{Due: n, Refreshed: 1, Failed: 1, Deferred: n - 2}); sum != want {
		t.Errorf("summary %+v, want %+v", sum, want)
	}
	if got := prov.TokenRequests(); got != 2 {
		slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
		for i, s := range starts {
			t.Logf("request %d left at +%v", i, s.Sub(starts[0]))
		}
		t.Errorf("provider got %d token requests, want 2: requests left inside the Retry-After window", got)
	}
	var refreshed, limited, deferred int
	for id, s := range seeded {
		c := e.get(t, "metered", id)
		if c.Lease != (store.Lease{}) {
			t.Errorf("%s still leased", id)
		}
		switch {
		case c.AccessToken != s.AccessToken:
			refreshed++
		case c.FailureClass == string(broker.ClassRateLimited) && c.FailureCount == 1:
			limited++
		case c.FailureCount == 0 && c.FailureClass == "" && c.Status == store.StatusConnected && len(changedFields(c, s)) == 0 && prov.ValidRefresh(c.RefreshToken):
			deferred++
		default:
			t.Errorf("%s: status %s class %q count %d", id, c.Status, c.FailureClass, c.FailureCount)
		}
	}
	if refreshed != 1 || limited != 1 || deferred != n-2 {
		t.Errorf("%d refreshed, %d rate limited, %d deferred untouched; want 1, 1, %d", refreshed, limited, deferred, n-2)
	}
	e.assertNoCredentialLogged(t)
}

// TestQueuedRequestLeavesOnlyWithTimeToFinish (S21): connections queued
// behind a slow budget (one request per 2 s) with a deadline near. A
// request leaves only if the whole provider call (the HTTP client's 15 s
// timeout) still fits before the call deadline (the invocation's end less
// its save reserve); the others are released unsent, deferred with their
// rotating refresh token still valid, instead of being cut off after the
// provider may have rotated it.
func TestQueuedRequestLeavesOnlyWithTimeToFinish(t *testing.T) {
	const (
		n           = 6
		every       = 2 * time.Second
		httpTimeout = 15 * time.Second
		// The sweep's deadline: 31 s from now leaves 20 s for provider
		// calls (the broker keeps 11 s for saving and answering), so the
		// requests at 0, 2 and 4 s may leave (20-4 ≥ 15) and the one at 6 s
		// may not (20-6 < 15): a second of margin on either side.
		deadline = 31 * time.Second
		callEnd  = 20 * time.Second
	)
	e := newFaultEnv(t, faultOptions{
		providers: []brokertest.Provider{{
			Name:   "metered",
			Config: providertest.Config{AccessTokenTTL: time.Hour, RotateRefreshTokens: true},
			Entry:  codeEntry + "    rate_limit: {requests: 1, period_seconds: 2}\n",
		}},
		httpTimeout: httpTimeout,
		realClock:   true,
		refresh:     broker.RefreshOptions{Workers: 8},
	})
	prov := e.Servers["metered"]
	seeded := e.seedN(t, "metered", "m", n)
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	sum, err := e.Broker.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	starts, _ := e.net.of(prov)
	t.Logf("sweep %+v in %v; %d token requests", sum, elapsed, len(starts))

	if want := (broker.RefreshSummary{Due: n, Refreshed: 3, Deferred: n - 3}); sum != want {
		t.Errorf("summary %+v, want %+v", sum, want)
	}
	for i, s := range starts {
		if left := callEnd - s.Sub(start); left < httpTimeout {
			t.Errorf("request %d left with %v before its call deadline, want at least the HTTP timeout %v", i, left, httpTimeout)
		}
	}
	if elapsed > 8*time.Second {
		t.Errorf("sweep took %v: refused requests waited for a budget they could not use", elapsed)
	}
	deferred := 0
	for id, s := range seeded {
		c := e.get(t, "metered", id)
		if c.AccessToken != s.AccessToken {
			continue
		}
		if c.FailureCount != 0 || c.FailureClass != "" || c.Status != store.StatusConnected || len(changedFields(c, s)) > 0 || !prov.ValidRefresh(c.RefreshToken) || c.NextRefresh.After(time.Now()) {
			t.Errorf("deferred %s: status %s class %q count %d due %v, refresh token valid %v",
				id, c.Status, c.FailureClass, c.FailureCount, c.NextRefresh, prov.ValidRefresh(c.RefreshToken))
		}
		deferred++
	}
	if deferred != n-3 {
		t.Errorf("%d connections deferred, want %d", deferred, n-3)
	}
}
