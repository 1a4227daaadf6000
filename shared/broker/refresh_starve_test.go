package broker_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// A provider that is paused keeps its due connections at the front of the
// due index. When they fill the sweep's whole batch, the sweep lists again
// past that provider, so a backlog at one provider never starves the
// others (and a provider pacing a rate budget does not either).
func TestBackloggedProviderDoesNotStarveOthers(t *testing.T) {
	e := newFaultEnv(t, faultOptions{
		providers: []brokertest.Provider{
			{Name: "fast", Config: providertest.Config{AccessTokenTTL: time.Hour}},
			{Name: "slow", Config: providertest.Config{AccessTokenTTL: time.Hour}},
		},
		refresh: broker.RefreshOptions{Workers: 4, Batch: 5},
	})
	// 10 slow connections fall due first, then 3 fast ones: a listing of 5
	// holds only slow connections.
	for i := range 10 {
		c := e.seed(t, "slow", fmt.Sprint("s", i))
		c.NextRefresh = e.now().Add(-time.Hour)
		if _, err := e.Store.SaveConnection(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	e.seedN(t, "fast", "f", 3)
	e.Servers["slow"].FailNext(1000, http.StatusTooManyRequests, "application/json", `{"error":"slow_down"}`, http.Header{"Retry-After": {"600"}})

	sum, took := e.sweep(t)
	if sum.Refreshed != 3 || sum.Lost != 0 || took > 5*time.Second {
		t.Fatalf("sweep %+v in %v: want the 3 fast connections refreshed at once", sum, took)
	}
	for i := range 3 {
		if c := e.get(t, "fast", fmt.Sprint("f", i)); c.Status != store.StatusConnected || !e.Servers["fast"].Valid(c.AccessToken) || c.NextRefresh.Before(e.now()) {
			t.Errorf("fast connection f%d not refreshed: %+v", i, c.Status)
		}
	}
	// The slow provider is asked only by the connections already under way
	// when its first 429 came back (at most the first batch of 5); then it
	// is paused and listed past.
	if n := e.Servers["slow"].TokenRequests(); n < 1 || n > 5 {
		t.Errorf("slow provider got %d requests, want 1 to 5 (before its pause)", n)
	}
	// Listed: the first batch (5 slow) and, past the slow provider, the 3
	// fast ones; each listed slow connection failed once (429) or was
	// deferred by the pause.
	if sum.Due != 8 || sum.Failed+sum.Deferred != 5 || sum.Failed < 1 {
		t.Errorf("sweep %+v: want 8 listed, the 5 slow ones failed or deferred", sum)
	}
}
