package storetest

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/store"
)

// RunClock checks that the times a store stamps itself (CreatedAt,
// UpdatedAt, a retired grant's RetiredAt and due time) come from its
// record clock, now, and that the times it judges a request by come with
// the request. newStore must return an empty Store on now for each call.
func RunClock(t *testing.T, newStore func(t *testing.T, now func() time.Time) store.Store) {
	open := func(t *testing.T) (store.Store, *settable) {
		clk := &settable{}
		clk.set(base)
		return newStore(t, clk.now), clk
	}
	t.Run("SaveStampsCreatedAndUpdated", func(t *testing.T) {
		s, clk := open(t)
		c := newConn("github", "c1")
		c.CreatedAt, c.UpdatedAt = time.Time{}, time.Time{}
		first, err := s.SaveConnection(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		clk.set(base.Add(time.Hour))
		second, err := s.SaveConnection(t.Context(), first)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetConnection(t.Context(), "github", "c1")
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name     string
			at, want time.Time
		}{
			{"first save CreatedAt", first.CreatedAt, base},
			{"first save UpdatedAt", first.UpdatedAt, base},
			{"second save CreatedAt", second.CreatedAt, base},
			{"second save UpdatedAt", second.UpdatedAt, base.Add(time.Hour)},
			{"read CreatedAt", got.CreatedAt, base},
			{"read UpdatedAt", got.UpdatedAt, base.Add(time.Hour)},
		} {
			if !tc.at.Equal(tc.want) {
				t.Errorf("%s = %v, want the store's clock %v", tc.name, tc.at, tc.want)
			}
		}
	})
	t.Run("LeaseStampsUpdatedJudgesByRequest", func(t *testing.T) {
		s, clk := open(t)
		c, err := s.SaveConnection(t.Context(), newConn("github", "c1"))
		if err != nil {
			t.Fatal(err)
		}
		clk.set(base.Add(2 * time.Hour))
		// The request's own time, not the store's, decides whether the
		// connection is due: it is, at the request's time only.
		reqNow := c.NextRefresh.Add(time.Minute)
		if _, err := s.Lease(t.Context(), store.Key{Provider: "github", ConnectionID: "c1"}, store.LeaseRequest{Owner: "o1", Now: c.NextRefresh.Add(-time.Minute), Until: c.NextRefresh.Add(time.Minute), Due: true}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Lease before due by the request's time = %v, want ErrConflict", err)
		}
		leased, err := s.Lease(t.Context(), store.Key{Provider: "github", ConnectionID: "c1"}, store.LeaseRequest{Owner: "o1", Now: reqNow, Until: reqNow.Add(time.Minute), Due: true})
		if err != nil {
			t.Fatal(err)
		}
		if !leased.UpdatedAt.Equal(base.Add(2 * time.Hour)) {
			t.Errorf("leased UpdatedAt = %v, want the store's clock %v", leased.UpdatedAt, base.Add(2*time.Hour))
		}
	})
	t.Run("ReplaceRetiresAtTheClock", func(t *testing.T) {
		s, clk := open(t)
		c, err := s.SaveConnection(t.Context(), newConn("github", "c1"))
		if err != nil {
			t.Fatal(err)
		}
		retiredAt := base.Add(3 * time.Hour)
		clk.set(retiredAt)
		next := c
		next.AccessToken, next.RefreshToken = "access-2", "refresh-2"
		if _, err := s.ReplaceConnection(t.Context(), next); err != nil {
			t.Fatal(err)
		}
		retired := func(now time.Time) []store.Key {
			keys, err := s.ListDue(t.Context(), now, 10)
			if err != nil {
				t.Fatal(err)
			}
			var out []store.Key
			for _, k := range keys {
				if k.Retired != "" {
					out = append(out, k)
				}
			}
			return out
		}
		if ks := retired(retiredAt.Add(-time.Second)); len(ks) != 0 {
			t.Errorf("retired grant due before the store's clock: %v", ks)
		}
		ks := retired(retiredAt)
		if len(ks) != 1 {
			t.Fatalf("retired grants due at the store's clock: %v, want one", ks)
		}
		g, err := s.LeaseRetired(t.Context(), ks[0], retiredAt, retiredAt.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if !g.RetiredAt.Equal(retiredAt) {
			t.Errorf("RetiredAt = %v, want the store's clock %v", g.RetiredAt, retiredAt)
		}
	})
}

// settable is a record clock the test sets.
type settable struct{ unixNano atomic.Int64 }

func (c *settable) now() time.Time  { return time.Unix(0, c.unixNano.Load()).UTC() }
func (c *settable) set(t time.Time) { c.unixNano.Store(t.UnixNano()) }
