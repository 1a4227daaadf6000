package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/store"
)

// testLinks checks link uses: a connect link works from the first browser
// that used it, and from no other.
func testLinks(t *testing.T, newStore func(t *testing.T) store.Store) {
	use := func(id, browser string) store.LinkUse {
		return store.LinkUse{ID: id, BindingHash: browser, ExpiresAt: base.Add(time.Hour + sub)}
	}
	t.Run("FirstBrowserOnly", func(t *testing.T) {
		s := newStore(t)
		for i, step := range []struct {
			u    store.LinkUse
			want error
		}{
			{use("l1", "browser-a"), nil},
			{use("l1", "browser-a"), nil},               // a retry from the same browser
			{use("l1", "browser-b"), store.ErrConflict}, // another browser
			{use("l1", "browser-a"), nil},               // the refusal changed nothing
			{use("l2", "browser-b"), nil},               // another link
		} {
			if err := s.UseLink(t.Context(), step.u); !errors.Is(err, step.want) || step.want == nil && err != nil {
				t.Fatalf("step %d: UseLink(%s by %s) = %v, want %v", i, step.u.ID, step.u.BindingHash, err, step.want)
			}
		}
	})
	t.Run("ConcurrentFirstUses", func(t *testing.T) {
		s := newStore(t)
		errs := race(func(i int) error { return s.UseLink(t.Context(), use("race", "browser-"+string(rune('a'+i)))) })
		checkOneWinner(t, errs, store.ErrConflict)
	})
	t.Run("Empty", func(t *testing.T) {
		s := newStore(t)
		for _, u := range []store.LinkUse{use("", "b"), use("l", "")} {
			if err := s.UseLink(t.Context(), u); err == nil || errors.Is(err, store.ErrConflict) {
				t.Errorf("UseLink(%+v) = %v, want a plain error", u, err)
			}
		}
	})
}

// testPending checks pending grants: kept apart from the connection until
// taken once before they expire, listed as due when they expire, then
// retired like a replaced grant.
func testPending(t *testing.T, newStore func(t *testing.T) store.Store) {
	key := store.Key{Provider: "github", ConnectionID: "c1", Pending: "code-hash-1"}
	newPending := func(k store.Key) store.PendingGrant {
		c := newConn(k.Provider, k.ConnectionID)
		c.Status, c.AccessToken, c.RefreshToken = "", "access-pending", "refresh-pending"
		return store.PendingGrant{Key: k, Connection: c, ExpiresAt: base.Add(10*time.Minute + sub)}
	}
	put := func(t *testing.T, s store.Store, g store.PendingGrant) {
		t.Helper()
		if err := s.PutPending(t.Context(), g); err != nil {
			t.Fatalf("PutPending: %v", err)
		}
	}
	before := base.Add(9 * time.Minute)
	after := base.Add(11 * time.Minute)

	t.Run("TakeRoundTrip", func(t *testing.T) {
		s := newStore(t)
		g := newPending(key)
		put(t, s, g)
		got, err := s.TakePending(t.Context(), key, before)
		if err != nil {
			t.Fatalf("TakePending: %v", err)
		}
		want := g
		want.ExpiresAt = store.StoredTime(g.ExpiresAt)
		want.Connection = store.Connection{
			Provider: "github", ConnectionID: "c1", AccessToken: "access-pending", RefreshToken: "refresh-pending",
			TokenType: g.Connection.TokenType, ExpiresAt: g.Connection.ExpiresAt, Scope: g.Connection.Scope,
			Metadata: g.Connection.Metadata, Grant: g.Connection.Grant, Params: g.Connection.Params, NextRefresh: g.Connection.NextRefresh,
		}.Stored()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("TakePending = %+v\n want %+v", got, want)
		}
		if _, err := s.TakePending(t.Context(), key, before); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second TakePending = %v, want ErrNotFound", err)
		}
	})
	t.Run("ApartFromTheConnection", func(t *testing.T) {
		s := newStore(t)
		serving := mustSave(t, s, newConn("github", "c1"))
		put(t, s, newPending(key))
		if got := mustGet(t, s, "github", "c1"); got.AccessToken != serving.AccessToken || got.Version != serving.Version {
			t.Errorf("the connection changed under a pending grant: %+v", got)
		}
		if _, err := s.GetConnection(t.Context(), "github", "c2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetConnection(c2) = %v", err)
		}
		other := newPending(store.Key{Provider: "github", ConnectionID: "c2", Pending: "code-hash-2"})
		put(t, s, other)
		if _, err := s.GetConnection(t.Context(), "github", "c2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a pending grant alone reads as a connection: %v", err)
		}
	})
	t.Run("Refused", func(t *testing.T) {
		s := newStore(t)
		put(t, s, newPending(key))
		for name, k := range map[string]store.Key{
			"wrong code":       {Provider: "github", ConnectionID: "c1", Pending: "code-hash-x"},
			"other connection": {Provider: "github", ConnectionID: "c2", Pending: key.Pending},
			"other provider":   {Provider: "gitlab", ConnectionID: "c1", Pending: key.Pending},
		} {
			if _, err := s.TakePending(t.Context(), k, before); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: TakePending = %v, want ErrNotFound", name, err)
			}
		}
		if _, err := s.TakePending(t.Context(), key, base.Add(10*time.Minute)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("expired: TakePending = %v, want ErrNotFound", err)
		}
		if err := s.PutPending(t.Context(), newPending(key)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutPending twice = %v, want ErrConflict", err)
		}
		// None of the refusals used it up.
		if _, err := s.TakePending(t.Context(), key, before); err != nil {
			t.Errorf("TakePending after the refusals: %v", err)
		}
	})
	t.Run("ConcurrentTake", func(t *testing.T) {
		s := newStore(t)
		put(t, s, newPending(key))
		errs := race(func(int) error {
			_, err := s.TakePending(t.Context(), key, before)
			return err
		})
		checkOneWinner(t, errs, store.ErrNotFound)
	})
	t.Run("ExpiredIsDueThenRetired", func(t *testing.T) {
		s := newStore(t)
		put(t, s, newPending(key))
		if keys := mustListDue(t, s, before, 10); len(keys) != 0 {
			t.Fatalf("ListDue before expiry = %v", keys)
		}
		keys := mustListDue(t, s, after, 10)
		if !reflect.DeepEqual(keys, []store.Key{key}) {
			t.Fatalf("ListDue after expiry = %+v, want the pending key", keys)
		}
		g, err := s.LeaseRetired(t.Context(), key, after, after.Add(time.Hour))
		if err != nil {
			t.Fatalf("LeaseRetired: %v", err)
		}
		if g.Key != key || g.AccessToken != "access-pending" || g.RefreshToken != "refresh-pending" || g.Attempts != 1 ||
			g.Params["domain"] != "mail.example.com" || !g.RetiredAt.Equal(store.StoredTime(base.Add(10*time.Minute+sub))) {
			t.Errorf("LeaseRetired = %+v", g)
		}
		// Leased for revocation, it cannot be confirmed any more, even by a
		// clock that runs behind.
		if _, err := s.TakePending(t.Context(), key, before); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TakePending after the lease = %v, want ErrNotFound", err)
		}
		if keys := mustListDue(t, s, after, 10); len(keys) != 0 {
			t.Errorf("ListDue while leased = %v", keys)
		}
		if _, err := s.LeaseRetired(t.Context(), key, after, after.Add(time.Hour)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("second lease = %v, want ErrConflict", err)
		}
		if err := s.DropRetired(t.Context(), key); err != nil {
			t.Fatalf("DropRetired: %v", err)
		}
		if keys := mustListDue(t, s, after.Add(2*time.Hour), 10); len(keys) != 0 {
			t.Errorf("ListDue after the drop = %v", keys)
		}
		if _, err := s.LeaseRetired(t.Context(), key, after.Add(2*time.Hour), after.Add(3*time.Hour)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("lease after the drop = %v, want ErrConflict", err)
		}
	})
	t.Run("DroppedWithoutLease", func(t *testing.T) {
		// The sweep drops an expired grant it will not revoke (no
		// revocation endpoint) without leasing it.
		s := newStore(t)
		put(t, s, newPending(key))
		if err := s.DropRetired(t.Context(), key); err != nil {
			t.Fatalf("DropRetired: %v", err)
		}
		if keys := mustListDue(t, s, after, 10); len(keys) != 0 {
			t.Errorf("ListDue after the drop = %v", keys)
		}
		if _, err := s.TakePending(t.Context(), key, before); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TakePending after the drop = %v, want ErrNotFound", err)
		}
	})
	t.Run("NotDueNotLeased", func(t *testing.T) {
		s := newStore(t)
		put(t, s, newPending(key))
		if _, err := s.LeaseRetired(t.Context(), key, before, after); !errors.Is(err, store.ErrConflict) {
			t.Errorf("LeaseRetired before expiry = %v, want ErrConflict", err)
		}
		if _, err := s.TakePending(t.Context(), key, before); err != nil {
			t.Errorf("TakePending after a refused lease: %v", err)
		}
	})
	t.Run("BadKeys", func(t *testing.T) {
		s := newStore(t)
		for _, k := range []store.Key{
			{Provider: "github", ConnectionID: "c1"},
			{Provider: "github", ConnectionID: "c1", Pending: "p", Retired: "r"},
		} {
			g := newPending(k)
			if err := s.PutPending(t.Context(), g); err == nil || errors.Is(err, store.ErrConflict) {
				t.Errorf("PutPending(%+v) = %v, want a plain error", k, err)
			}
			if _, err := s.TakePending(t.Context(), k, before); err == nil || errors.Is(err, store.ErrNotFound) {
				t.Errorf("TakePending(%+v) = %v, want a plain error", k, err)
			}
		}
	})
}
