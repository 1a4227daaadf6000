package storetest

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/store"
)

// testRetired checks retired grants: what a reconnect replaced, listed
// until it is revoked and dropped.
func testRetired(t *testing.T, newStore func(t *testing.T) store.Store) {
	// replace saves c, then replaces it by a reconnect with new tokens and
	// parameters; it returns the replacement as saved.
	replace := func(t *testing.T, s store.Store, c store.Connection) store.Connection {
		t.Helper()
		saved := mustSave(t, s, c)
		next := saved
		next.AccessToken, next.RefreshToken = "access-new", "refresh-new"
		next.Params = map[string]string{"domain": "new.example.com"}
		got, err := s.ReplaceConnection(t.Context(), next)
		if err != nil {
			t.Fatalf("ReplaceConnection: %v", err)
		}
		return got
	}
	retiredKeys := func(t *testing.T, s store.Store, now time.Time) []store.Key {
		t.Helper()
		var out []store.Key
		for _, k := range mustListDue(t, s, now, 100) {
			if k.Retired != "" {
				out = append(out, k)
			}
		}
		return out
	}
	// oneRetired returns a store whose github/c1 was replaced once, the key
	// of the grant that replace retired, and a time at which it is due.
	oneRetired := func(t *testing.T) (store.Store, store.Key, time.Time) {
		t.Helper()
		s := newStore(t)
		replace(t, s, newConn("github", "c1"))
		now := time.Now().Add(time.Second)
		return s, retiredKeys(t, s, now)[0], now
	}

	t.Run("ReplaceRetiresWhatItReplaced", func(t *testing.T) {
		s := newStore(t)
		c := newConn("github", "c1")
		c.NextRefresh = time.Time{}
		saved := replace(t, s, c)
		if saved.Version != 2 || saved.RefreshToken != "refresh-new" {
			t.Fatalf("replaced connection = version %d, refresh %q; want 2, refresh-new", saved.Version, saved.RefreshToken)
		}
		if got := mustGet(t, s, "github", "c1"); got.RefreshToken != "refresh-new" || got.AccessToken != "access-new" {
			t.Errorf("connection after the replace holds %q/%q, want the new tokens", got.AccessToken, got.RefreshToken)
		}
		now := time.Now()
		keys := retiredKeys(t, s, now.Add(time.Second))
		if len(keys) != 1 || keys[0].Provider != "github" || keys[0].ConnectionID != "c1" {
			t.Fatalf("retired keys listed = %v, want one for github/c1", keys)
		}
		g, err := s.LeaseRetired(t.Context(), keys[0], now.Add(time.Second), now.Add(time.Hour))
		if err != nil {
			t.Fatalf("LeaseRetired: %v", err)
		}
		want := store.RetiredGrant{Key: keys[0], Params: map[string]string{"domain": "mail.example.com"},
			AccessToken: "access-c1", RefreshToken: "refresh-c1", Attempts: 1, InUse: false}
		got := g
		got.RetiredAt = time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("LeaseRetired = %+v\n want %+v", got, want)
		}
		if d := g.RetiredAt.Sub(now); d < -2*time.Second || d > 2*time.Second {
			t.Errorf("RetiredAt = %v, want about %v", g.RetiredAt, now)
		}
	})

	t.Run("LeaseHoldsUntilThenCountsAgain", func(t *testing.T) {
		s, k, now := oneRetired(t)
		if _, err := s.LeaseRetired(t.Context(), k, now, now.Add(time.Hour)); err != nil {
			t.Fatalf("LeaseRetired: %v", err)
		}
		if _, err := s.LeaseRetired(t.Context(), k, now.Add(time.Minute), now.Add(2*time.Hour)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("a second lease while the first holds: %v, want ErrConflict", err)
		}
		if got := retiredKeys(t, s, now.Add(time.Minute)); len(got) != 0 {
			t.Errorf("a leased retired grant is listed before its lease ends: %v", got)
		}
		if got := retiredKeys(t, s, now.Add(time.Hour)); len(got) != 1 || got[0] != k {
			t.Errorf("after its lease ends, listed = %v, want [%v]", got, k)
		}
		g, err := s.LeaseRetired(t.Context(), k, now.Add(time.Hour), now.Add(2*time.Hour))
		if err != nil || g.Attempts != 2 {
			t.Errorf("lease after the first ended: attempts %d, %v; want 2, nil", g.Attempts, err)
		}
	})

	t.Run("DropTakesItOff", func(t *testing.T) {
		s, k, now := oneRetired(t)
		for range 2 { // dropping twice is no error
			if err := s.DropRetired(t.Context(), k); err != nil {
				t.Fatalf("DropRetired: %v", err)
			}
		}
		if got := retiredKeys(t, s, now.Add(time.Hour)); len(got) != 0 {
			t.Errorf("a dropped retired grant is still listed: %v", got)
		}
		if _, err := s.LeaseRetired(t.Context(), k, now.Add(time.Hour), now.Add(2*time.Hour)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("LeaseRetired after the drop: %v, want ErrConflict", err)
		}
		if got := mustGet(t, s, "github", "c1"); got.RefreshToken != "refresh-new" {
			t.Errorf("dropping the retired grant changed the connection: refresh %q", got.RefreshToken)
		}
	})

	t.Run("EachReconnectRetiresOne", func(t *testing.T) {
		s := newStore(t)
		saved := replace(t, s, newConn("github", "c1"))
		saved.AccessToken, saved.RefreshToken = "access-third", "refresh-third"
		if _, err := s.ReplaceConnection(t.Context(), saved); err != nil {
			t.Fatalf("second ReplaceConnection: %v", err)
		}
		now := time.Now().Add(time.Second)
		var refresh []string
		for _, k := range retiredKeys(t, s, now) {
			g, err := s.LeaseRetired(t.Context(), k, now, now.Add(time.Hour))
			if err != nil {
				t.Fatalf("LeaseRetired(%v): %v", k, err)
			}
			refresh = append(refresh, g.RefreshToken)
		}
		if len(refresh) != 2 || refresh[0] == refresh[1] || !slices.Contains(refresh, "refresh-c1") || !slices.Contains(refresh, "refresh-new") {
			t.Errorf("retired refresh tokens = %v, want refresh-c1 and refresh-new", refresh)
		}
	})

	t.Run("InUse", func(t *testing.T) {
		// The replacing connection holds one of the retired tokens: a
		// provider that issued the refresh token again, or a write that
		// replaced its own result.
		for _, tc := range []struct {
			name          string
			access, fresh string
			inUse         bool
		}{
			{"new tokens", "access-new", "refresh-new", false},
			{"same refresh token", "access-new", "refresh-c1", true},
			{"same access token", "access-c1", "", true},
			{"same tokens", "access-c1", "refresh-c1", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := newStore(t)
				saved := mustSave(t, s, newConn("github", "c1"))
				saved.AccessToken, saved.RefreshToken = tc.access, tc.fresh
				if _, err := s.ReplaceConnection(t.Context(), saved); err != nil {
					t.Fatal(err)
				}
				now := time.Now().Add(time.Second)
				g, err := s.LeaseRetired(t.Context(), retiredKeys(t, s, now)[0], now, now.Add(time.Hour))
				if err != nil || g.InUse != tc.inUse {
					t.Errorf("LeaseRetired: InUse %v, %v; want %v", g.InUse, err, tc.inUse)
				}
			})
		}
	})

	t.Run("ListedWithConnections", func(t *testing.T) {
		// Retired grants come in the one due order with connections, are
		// counted by the limit, and are left out with their provider.
		s := newStore(t)
		now := time.Now()
		early := newConn("gitlab", "early")
		early.NextRefresh = now.Add(-time.Hour)
		mustSave(t, s, early)
		replace(t, s, newConn("github", "c1")) // retired at about now; c1 never due
		late := newConn("google", "late")
		late.NextRefresh = now.Add(time.Hour)
		mustSave(t, s, late)
		at := now.Add(2 * time.Hour)
		got := mustListDue(t, s, at, 10)
		if len(got) != 3 || got[0].ConnectionID != "early" || got[1].Retired == "" || got[1].Provider != "github" || got[2].ConnectionID != "late" {
			t.Fatalf("ListDue = %v, want early, the retired grant of github/c1, late", got)
		}
		if lim := mustListDue(t, s, at, 2); len(lim) != 2 || lim[1] != got[1] {
			t.Errorf("ListDue(limit 2) = %v, want %v", lim, got[:2])
		}
		skipped, err := s.ListDue(t.Context(), at, 10, "github")
		if err != nil || len(skipped) != 2 || skipped[0] != got[0] || skipped[1] != got[2] {
			t.Errorf("ListDue(skip github) = %v, %v; want %v", skipped, err, []store.Key{got[0], got[2]})
		}
	})

	t.Run("LostRaceRetiresNothing", func(t *testing.T) {
		s := newStore(t)
		saved := mustSave(t, s, newConn("github", "c1"))
		stale := saved
		stale.Version = 0
		if _, err := s.ReplaceConnection(t.Context(), stale); err == nil {
			t.Error("ReplaceConnection with version 0 succeeded: it replaces nothing")
		}
		saved.Version++ // not the stored version
		if _, err := s.ReplaceConnection(t.Context(), saved); !errors.Is(err, store.ErrConflict) {
			t.Errorf("ReplaceConnection on a stale version: %v, want ErrConflict", err)
		}
		if got := retiredKeys(t, s, time.Now().Add(time.Hour)); len(got) != 0 {
			t.Errorf("a lost replace retired %v", got)
		}
	})

	t.Run("NoCredentialsNothingRetired", func(t *testing.T) {
		s := newStore(t)
		c := newConn("github", "c1")
		c.AccessToken, c.RefreshToken = "", ""
		saved := mustSave(t, s, c)
		saved.AccessToken = "access-new"
		if _, err := s.ReplaceConnection(t.Context(), saved); err != nil {
			t.Fatalf("ReplaceConnection: %v", err)
		}
		if got := retiredKeys(t, s, time.Now().Add(time.Hour)); len(got) != 0 {
			t.Errorf("replacing a connection without credentials retired %v", got)
		}
	})

	t.Run("ConnectionKeysOnly", func(t *testing.T) {
		s := newStore(t)
		mustSave(t, s, newConn("github", "c1"))
		k := store.Key{Provider: "github", ConnectionID: "c1"}
		if _, err := s.LeaseRetired(t.Context(), k, time.Now(), time.Now().Add(time.Hour)); err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("LeaseRetired on a connection's key: %v, want a usage error", err)
		}
		k.Retired = "x"
		if _, err := s.Lease(t.Context(), k, store.LeaseRequest{Owner: "o", Now: time.Now(), Until: time.Now().Add(time.Minute)}); err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("Lease on a retired grant's key: %v, want a usage error", err)
		}
		k.Retired = ""
		if err := s.DropRetired(t.Context(), k); err == nil {
			t.Error("DropRetired on a connection's key succeeded, want a usage error")
		}
	})
}
