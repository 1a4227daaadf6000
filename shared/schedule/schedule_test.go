package schedule_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/schedule"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/embedded"
)

// listings is a store that counts the sweeps' listings of due connections.
type listings struct {
	store.Store
	n atomic.Int32
}

func (l *listings) ListDue(ctx context.Context, now time.Time, limit int, skip ...string) ([]store.Key, error) {
	l.n.Add(1)
	return l.Store.ListDue(ctx, now, limit, skip...)
}

// The schedule's own event (events/refresh.json, what the template's
// schedule sends) runs one sweep; anything else is refused before the store
// is read.
func TestHandler(t *testing.T) {
	scheduled, err := modroot.ReadFile("events", "refresh.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		event string
		sweep bool
	}{
		{"the schedule's event", string(scheduled), true},
		{"the action alone", `{"action":"refresh-due"}`, true},
		{"another action", `{"source":"oauthbroker.schedule","action":"refresh"}`, false},
		{"no action", `{"source":"oauthbroker.schedule"}`, false},
		{"an empty object", `{}`, false},
		{"not an object", `"refresh-due"`, false},
		{"not JSON", `refresh-due`, false},
		{"null", `null`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := embedded.Open("", nil)
			if err != nil {
				t.Fatal(err)
			}
			l := &listings{Store: st}
			b := brokertest.New(t, brokertest.Options{Store: l}).Broker
			sum, err := schedule.Handler(b)(context.Background(), json.RawMessage(tt.event))
			if tt.sweep != (err == nil) {
				t.Fatalf("err = %v, want a sweep: %v", err, tt.sweep)
			}
			if n := l.n.Load(); tt.sweep != (n > 0) {
				t.Errorf("%d listings of due connections, want a sweep: %v", n, tt.sweep)
			}
			if sum != (broker.RefreshSummary{}) {
				t.Errorf("summary %+v of an empty store", sum)
			}
		})
	}
}
