// Package storetest is the conformance suite that every store.Store
// implementation must pass.
package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Run runs the suite. newStore must return an empty Store for each call;
// it is called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("State", func(t *testing.T) { testState(t, newStore) })
	t.Run("Connection", func(t *testing.T) { testConnection(t, newStore) })
	t.Run("ListDue", func(t *testing.T) { testListDue(t, newStore) })
	t.Run("Lease", func(t *testing.T) { testLease(t, newStore) })
	t.Run("Retired", func(t *testing.T) { testRetired(t, newStore) })
	t.Run("Links", func(t *testing.T) { testLinks(t, newStore) })
	t.Run("Pending", func(t *testing.T) { testPending(t, newStore) })
}

// base is an arbitrary fixed instant; sub is a sub-second offset that every
// store must truncate away.
var (
	base = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	sub  = 700 * time.Millisecond
)

// concurrency is the number of goroutines racing in the concurrency tests.
const concurrency = 16

func newState(id string) store.StateRecord {
	return store.StateRecord{
		ID:           id,
		Provider:     "github",
		ConnectionID: "conn-1",
		ReturnTo:     "https://app.example/done?x=1",
		Scopes:       []string{"repo", "read:user"},
		PKCEVerifier: "verifier-" + id,
		Grant:        "authorization_code",
		Params:       map[string]string{"domain": "mail.example.com", "region": "pl"},
		BindingHash:  "binding-" + id,
		ExpiresAt:    base.Add(10*time.Minute + sub),
	}
}

func testState(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		minimal := store.StateRecord{ID: "min", Provider: "p", ConnectionID: "c", BindingHash: "b", Scopes: []string{}, ExpiresAt: base}
		local := newState("local")
		local.ExpiresAt = base.In(time.FixedZone("X", 3600)).Add(sub)
		for _, r := range []store.StateRecord{newState("full"), minimal, local} {
			t.Run(r.ID, func(t *testing.T) {
				s := newStore(t)
				if err := s.PutState(t.Context(), r); err != nil {
					t.Fatalf("PutState: %v", err)
				}
				got, err := s.TakeState(t.Context(), r.ID, r.BindingHash)
				if err != nil {
					t.Fatalf("TakeState: %v", err)
				}
				if want := r.Stored(); !reflect.DeepEqual(got, want) {
					t.Errorf("TakeState = %+v, want %+v", got, want)
				}
			})
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := newStore(t)
		r := newState("s1")
		if err := s.PutState(t.Context(), r); err != nil {
			t.Fatalf("PutState: %v", err)
		}
		for _, tc := range []struct{ name, id, binding string }{
			{"absent", "nope", r.BindingHash},
			{"wrong binding", r.ID, "binding-other"},
			{"empty binding", r.ID, ""},
			{"unbound marker on a bound state", r.ID, store.Unbound},
		} {
			if _, err := s.TakeState(t.Context(), tc.id, tc.binding); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: TakeState error = %v, want ErrNotFound", tc.name, err)
			}
		}
		// The failed takes left the record in place: it can still be taken, once.
		if got, err := s.TakeState(t.Context(), r.ID, r.BindingHash); err != nil {
			t.Fatalf("TakeState after failed takes: %v", err)
		} else if got.ID != r.ID {
			t.Errorf("TakeState ID = %q, want %q", got.ID, r.ID)
		}
		if _, err := s.TakeState(t.Context(), r.ID, r.BindingHash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second TakeState error = %v, want ErrNotFound", err)
		}
	})

	t.Run("Duplicate", func(t *testing.T) {
		s := newStore(t)
		r := newState("dup")
		if err := s.PutState(t.Context(), r); err != nil {
			t.Fatalf("PutState: %v", err)
		}
		r2 := r
		r2.BindingHash, r2.ReturnTo = "binding-attacker", "https://evil.example/"
		if err := s.PutState(t.Context(), r2); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate PutState error = %v, want ErrConflict", err)
		}
		got, err := s.TakeState(t.Context(), r.ID, r.BindingHash)
		if err != nil {
			t.Fatalf("TakeState: %v", err)
		}
		if got.ReturnTo != r.ReturnTo {
			t.Errorf("ReturnTo = %q: duplicate PutState overwrote the record", got.ReturnTo)
		}
	})

	t.Run("ConcurrentTake", func(t *testing.T) {
		s := newStore(t)
		r := newState("race")
		if err := s.PutState(t.Context(), r); err != nil {
			t.Fatalf("PutState: %v", err)
		}
		errs := race(func(int) error {
			_, err := s.TakeState(t.Context(), r.ID, r.BindingHash)
			return err
		})
		checkOneWinner(t, errs, store.ErrNotFound)
	})
}

func newConn(provider, id string) store.Connection {
	return store.Connection{
		Provider:     provider,
		ConnectionID: id,
		Status:       store.StatusConnected,
		AccessToken:  "access-" + id,
		RefreshToken: "refresh-" + id,
		TokenType:    "Bearer",
		ExpiresAt:    base.Add(time.Hour + sub),
		Scope:        "repo read:user",
		Metadata:     map[string]string{"user_id": "42", "login": "octo"},
		Grant:        "authorization_code",
		Params:       map[string]string{"domain": "mail.example.com"},
		NextRefresh:  base.Add(50*time.Minute + sub),
	}
}

func testConnection(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		failing := newConn("github", "failing")
		failing.Status, failing.FailureCount, failing.FailureClass, failing.LastError = store.StatusFailing, 3, "unavailable", "token endpoint: 503"
		failing.CreatedAt = base.Add(-time.Hour + sub)
		for _, tc := range []struct {
			name string
			c    store.Connection
		}{
			{"full", newConn("github", "full")},
			{"minimal", store.Connection{Provider: "p", ConnectionID: "min", Status: store.StatusConnected, AccessToken: "a"}},
			{"empty metadata", store.Connection{Provider: "p", ConnectionID: "m", AccessToken: "a", Metadata: map[string]string{}, Params: map[string]string{}}},
			{"no tokens", store.Connection{Provider: "p", ConnectionID: "n", Status: store.StatusNeedsReauth}},
			{"failing, created earlier", failing},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := newStore(t)
				before := time.Now().Truncate(time.Second)
				saved, err := s.SaveConnection(t.Context(), tc.c)
				if err != nil {
					t.Fatalf("SaveConnection: %v", err)
				}
				after := time.Now()
				if saved.Version != 1 {
					t.Errorf("Version = %d, want 1", saved.Version)
				}
				if saved.UpdatedAt.Before(before) || saved.UpdatedAt.After(after) {
					t.Errorf("UpdatedAt = %v, want between %v and %v", saved.UpdatedAt, before, after)
				}
				want := tc.c
				want.Version, want.UpdatedAt = 1, saved.UpdatedAt
				if want.CreatedAt.IsZero() {
					want.CreatedAt = saved.UpdatedAt
				}
				want = want.Stored()
				if !reflect.DeepEqual(saved, want) {
					t.Errorf("SaveConnection returned\n%+v, want\n%+v", saved, want)
				}
				got, err := s.GetConnection(t.Context(), tc.c.Provider, tc.c.ConnectionID)
				if err != nil {
					t.Fatalf("GetConnection: %v", err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("GetConnection =\n%+v, want\n%+v", got, want)
				}
				// PeekConnection: the same connection without its credentials.
				peeked, err := s.PeekConnection(t.Context(), tc.c.Provider, tc.c.ConnectionID)
				if err != nil {
					t.Fatalf("PeekConnection: %v", err)
				}
				wantPeek := want
				wantPeek.AccessToken, wantPeek.RefreshToken = "", ""
				if !reflect.DeepEqual(peeked, wantPeek) {
					t.Errorf("PeekConnection =\n%+v, want\n%+v", peeked, wantPeek)
				}
			})
		}
		t.Run("peek missing", func(t *testing.T) {
			if _, err := newStore(t).PeekConnection(t.Context(), "github", "ghost"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("PeekConnection error = %v, want ErrNotFound", err)
			}
		})
	})

	t.Run("Update", func(t *testing.T) {
		s := newStore(t)
		v1 := mustSave(t, s, newConn("github", "c"))
		next := v1
		next.AccessToken, next.Metadata = "access-2", nil
		v2, err := s.SaveConnection(t.Context(), next)
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		if v2.Version != 2 || v2.AccessToken != "access-2" || v2.Metadata != nil {
			t.Errorf("update returned version %d, token %q, metadata %v", v2.Version, v2.AccessToken, v2.Metadata)
		}
		if !v2.CreatedAt.Equal(v1.CreatedAt) || v2.UpdatedAt.Before(v1.UpdatedAt) {
			t.Errorf("update times: created %v → %v, updated %v → %v", v1.CreatedAt, v2.CreatedAt, v1.UpdatedAt, v2.UpdatedAt)
		}
		if got := mustGet(t, s, "github", "c"); !reflect.DeepEqual(got, v2) {
			t.Errorf("GetConnection =\n%+v, want\n%+v", got, v2)
		}
	})

	t.Run("Conflict", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			version int64 // version of the write that must fail
		}{
			{"create when exists", 0},
			{"stale version", 1},
			{"future version", 3},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := newStore(t)
				v1 := mustSave(t, s, newConn("github", "c"))
				v2 := mustSave(t, s, v1)
				bad := newConn("github", "c")
				bad.AccessToken, bad.Version = "access-lost", tc.version
				if _, err := s.SaveConnection(t.Context(), bad); !errors.Is(err, store.ErrConflict) {
					t.Fatalf("SaveConnection error = %v, want ErrConflict", err)
				}
				if got := mustGet(t, s, "github", "c"); !reflect.DeepEqual(got, v2) {
					t.Errorf("after conflict GetConnection =\n%+v, want unchanged\n%+v", got, v2)
				}
			})
		}
		t.Run("update when absent", func(t *testing.T) {
			s := newStore(t)
			c := newConn("github", "ghost")
			c.Version = 1
			if _, err := s.SaveConnection(t.Context(), c); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("SaveConnection error = %v, want ErrConflict", err)
			}
			if _, err := s.GetConnection(t.Context(), "github", "ghost"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetConnection error = %v, want ErrNotFound", err)
			}
		})
	})

	t.Run("NotFound", func(t *testing.T) {
		s := newStore(t)
		mustSave(t, s, newConn("github", "c"))
		for _, k := range []store.Key{{Provider: "github", ConnectionID: "other"}, {Provider: "gitlab", ConnectionID: "c"}} {
			if _, err := s.GetConnection(t.Context(), k.Provider, k.ConnectionID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetConnection(%v) error = %v, want ErrNotFound", k, err)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		s := newStore(t)
		saved := mustSave(t, s, newConn("github", "c"))
		mustSave(t, s, newConn("gitlab", "c"))
		leased, err := s.Lease(t.Context(), store.Key{Provider: "github", ConnectionID: "c"}, store.LeaseRequest{Owner: "o", Now: time.Now(), Until: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.DeleteConnection(t.Context(), "github", "c")
		if err != nil {
			t.Fatalf("DeleteConnection: %v", err)
		}
		if got.AccessToken != saved.AccessToken || got.RefreshToken != saved.RefreshToken || got.Version != leased.Version {
			t.Errorf("DeleteConnection returned %+v, want the stored connection", got)
		}
		if _, err := s.GetConnection(t.Context(), "github", "c"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetConnection after delete: %v, want ErrNotFound", err)
		}
		if _, err := s.SaveLeased(t.Context(), leased, "o"); !errors.Is(err, store.ErrConflict) {
			t.Errorf("SaveLeased by the lease holder after delete: %v, want ErrConflict (the deletion stands)", err)
		}
		if _, err := s.GetConnection(t.Context(), "github", "c"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the deleted connection came back: %v", err)
		}
		if _, err := s.DeleteConnection(t.Context(), "github", "c"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second DeleteConnection: %v, want ErrNotFound", err)
		}
		if keys, _ := s.ListDue(t.Context(), time.Now().Add(48*time.Hour), 10); slices.ContainsFunc(keys, func(k store.Key) bool { return k.Provider == "github" }) {
			t.Errorf("deleted connection still listed due: %v", keys)
		}
		mustGet(t, s, "gitlab", "c") // the other provider's is untouched
	})

	t.Run("SameIDOtherProvider", func(t *testing.T) {
		s := newStore(t)
		mustSave(t, s, newConn("github", "c"))
		other := newConn("gitlab", "c")
		other.AccessToken = "gitlab-token"
		mustSave(t, s, other)
		if got := mustGet(t, s, "github", "c"); got.AccessToken != "access-c" {
			t.Errorf("github connection token = %q, overwritten by gitlab's", got.AccessToken)
		}
	})

	t.Run("ConcurrentSave", func(t *testing.T) {
		for _, version := range []int64{0, 1} {
			t.Run(fmt.Sprint("version ", version), func(t *testing.T) {
				s := newStore(t)
				if version == 1 {
					mustSave(t, s, newConn("github", "c"))
				}
				errs := race(func(i int) error {
					c := newConn("github", "c")
					c.AccessToken, c.Version = fmt.Sprint("token-", i), version
					_, err := s.SaveConnection(t.Context(), c)
					return err
				})
				winner := checkOneWinner(t, errs, store.ErrConflict)
				got := mustGet(t, s, "github", "c")
				if want := fmt.Sprint("token-", winner); got.AccessToken != want || got.Version != version+1 {
					t.Errorf("stored token %q version %d, want the winner's %q version %d", got.AccessToken, got.Version, want, version+1)
				}
			})
		}
	})
}

func testListDue(t *testing.T, newStore func(t *testing.T) store.Store) {
	// save stores one connection per entry of due (zero: never due) and
	// returns their keys.
	save := func(t *testing.T, s store.Store, due ...time.Time) []store.Key {
		var keys []store.Key
		for i, at := range due {
			c := newConn([]string{"github", "gitlab", "google"}[i%3], fmt.Sprint("c", i))
			c.NextRefresh = at
			mustSave(t, s, c)
			keys = append(keys, store.Key{Provider: c.Provider, ConnectionID: c.ConnectionID})
		}
		return keys
	}

	// Keys due at the same second come in key order, however the store
	// gathered them (dynamo: from different shards).
	t.Run("TiesByKey", func(t *testing.T) {
		s := newStore(t)
		var want []store.Key
		for _, k := range []store.Key{{Provider: "gitlab", ConnectionID: "b"}, {Provider: "github", ConnectionID: "z"}, {Provider: "gitlab", ConnectionID: "a"}, {Provider: "github", ConnectionID: "y"}} {
			c := newConn(k.Provider, k.ConnectionID)
			c.NextRefresh = base
			mustSave(t, s, c)
			want = append(want, k)
		}
		slices.SortFunc(want, func(a, b store.Key) int {
			return cmp.Or(strings.Compare(a.Provider, b.Provider), strings.Compare(a.ConnectionID, b.ConnectionID))
		})
		if got := mustListDue(t, s, base, 10); !slices.Equal(got, want) {
			t.Errorf("ListDue = %v, want %v", got, want)
		}
	})

	t.Run("OnlyDue", func(t *testing.T) {
		s := newStore(t)
		k := save(t, s,
			base.Add(-10*time.Minute), // due
			time.Time{},               // never
			base.Add(sub),             // due: truncated to base
			base.Add(time.Second),     // not yet
			base.Add(-time.Hour),      // due
		)
		want := []store.Key{k[4], k[0], k[2]}
		if got := mustListDue(t, s, base, 10); !slices.Equal(got, want) {
			t.Errorf("ListDue = %v, want %v", got, want)
		}
		if got := mustListDue(t, s, base.Add(-2*time.Hour), 10); len(got) != 0 {
			t.Errorf("ListDue before anything is due = %v, want none", got)
		}
		// Skipped providers are left out, before the limit applies.
		for _, tc := range []struct {
			limit int
			skip  []string
			want  []store.Key
		}{
			{10, []string{"github"}, []store.Key{k[4], k[2]}},
			{10, []string{"github", "google"}, []store.Key{k[4]}},
			{1, []string{"gitlab"}, []store.Key{k[0]}},
			{10, []string{"nobody"}, want},
		} {
			got, err := s.ListDue(t.Context(), base, tc.limit, tc.skip...)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("ListDue(limit %d, skip %v) = %v, %v; want %v", tc.limit, tc.skip, got, err, tc.want)
			}
		}
	})

	t.Run("OrderAndLimit", func(t *testing.T) {
		s := newStore(t)
		// 24 connections due one minute apart, saved out of order so they
		// spread over shards and insertion order does not match due order.
		var due []time.Time
		for i := range 24 {
			due = append(due, base.Add(-time.Duration((i*7)%24+1)*time.Minute))
		}
		keys := save(t, s, due...)
		all := slices.Clone(keys)
		slices.SortStableFunc(all, func(a, b store.Key) int {
			return due[slices.Index(keys, a)].Compare(due[slices.Index(keys, b)])
		})
		for _, limit := range []int{0, 1, 5, 24, 100} {
			want := all[:min(limit, len(all))]
			if got := mustListDue(t, s, base, limit); !slices.Equal(got, want) {
				t.Errorf("ListDue(limit %d) = %v, want %v", limit, got, want)
			}
		}
	})

	t.Run("Rescheduled", func(t *testing.T) {
		s := newStore(t)
		c := newConn("github", "c")
		c.NextRefresh = base.Add(-time.Minute)
		c = mustSave(t, s, c)
		key := []store.Key{{Provider: "github", ConnectionID: "c"}}
		for _, step := range []struct {
			name string
			due  time.Time
			want []store.Key
		}{
			{"cleared", time.Time{}, nil},
			{"due again", base.Add(-time.Minute), key},
			{"moved later", base.Add(time.Hour), nil},
			{"moved earlier", base, key},
		} {
			c.NextRefresh = step.due
			c = mustSave(t, s, c)
			if got := mustListDue(t, s, base, 10); !slices.Equal(got, step.want) {
				t.Errorf("%s: ListDue = %v, want %v", step.name, got, step.want)
			}
		}
	})
}

// race runs f(0..concurrency-1) in goroutines released together and returns
// their errors.
func race(f func(i int) error) []error {
	errs := make([]error, concurrency)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range concurrency {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// checkOneWinner checks that exactly one error is nil and all others are
// loser, and returns the winner's index.
func checkOneWinner(t *testing.T, errs []error, loser error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("goroutines %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, loser):
			t.Errorf("goroutine %d: error = %v, want %v", i, err, loser)
		}
	}
	if winner < 0 {
		t.Fatalf("no goroutine succeeded")
	}
	return winner
}

func mustSave(t *testing.T, s store.Store, c store.Connection) store.Connection {
	t.Helper()
	saved, err := s.SaveConnection(t.Context(), c)
	if err != nil {
		t.Fatalf("SaveConnection(%s/%s, version %d): %v", c.Provider, c.ConnectionID, c.Version, err)
	}
	return saved
}

func mustGet(t *testing.T, s store.Store, provider, id string) store.Connection {
	t.Helper()
	c, err := s.GetConnection(t.Context(), provider, id)
	if err != nil {
		t.Fatalf("GetConnection(%s/%s): %v", provider, id, err)
	}
	return c
}

func mustListDue(t *testing.T, s store.Store, now time.Time, limit int) []store.Key {
	t.Helper()
	keys, err := s.ListDue(t.Context(), now, limit)
	if err != nil {
		t.Fatalf("ListDue: %v", err)
	}
	return keys
}

func testLease(t *testing.T, newStore func(t *testing.T) store.Store) {
	// sameExceptLease compares two views of one connection, ignoring what a
	// lease write changes (Version, UpdatedAt, Lease, NextRefresh).
	sameExceptLease := func(t *testing.T, got, want store.Connection) {
		t.Helper()
		got, want = got.Stored(), want.Stored()
		for _, c := range []*store.Connection{&got, &want} {
			c.Version, c.UpdatedAt, c.Lease, c.NextRefresh = 0, time.Time{}, store.Lease{}, time.Time{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("lease changed the connection:\n got %+v\nwant %+v", got, want)
		}
	}
	until := base.Add(time.Minute)
	req := func(owner string, now time.Time) store.LeaseRequest {
		return store.LeaseRequest{Owner: owner, Now: now, Until: now.Add(time.Minute)}
	}
	k := store.Key{Provider: "github", ConnectionID: "c1"}

	t.Run("TakeHoldExpire", func(t *testing.T) {
		s := newStore(t)
		saved := mustSave(t, s, newConn("github", "c1"))
		got, err := s.Lease(t.Context(), k, req("owner-a", base))
		if err != nil {
			t.Fatalf("Lease on a free connection: %v", err)
		}
		if got.Lease.Owner != "owner-a" || !got.Lease.Until.Equal(until) || got.Version != saved.Version+1 {
			t.Errorf("Lease returned lease %+v version %d, want owner-a until %v version %d", got.Lease, got.Version, until, saved.Version+1)
		}
		if !got.NextRefresh.Equal(saved.NextRefresh) {
			t.Errorf("a lease without Due moved NextRefresh to %v", got.NextRefresh)
		}
		sameExceptLease(t, got, saved)
		if stored := mustGet(t, s, "github", "c1"); !reflect.DeepEqual(stored.Stored(), got.Stored()) {
			t.Errorf("stored %+v, Lease returned %+v", stored, got)
		}
		// Held, up to and including its last second.
		for _, now := range []time.Time{base, until} {
			if _, err := s.Lease(t.Context(), k, req("owner-b", now)); !errors.Is(err, store.ErrConflict) {
				t.Errorf("Lease of a held lease at %v: err = %v, want ErrConflict", now, err)
			}
		}
		if v := mustGet(t, s, "github", "c1").Version; v != got.Version {
			t.Errorf("refused lease changed the version: %d, want %d", v, got.Version)
		}
		// Expired: another owner takes it, and the first can no longer save.
		taken, err := s.Lease(t.Context(), k, req("owner-b", until.Add(time.Second)))
		if err != nil || taken.Lease.Owner != "owner-b" {
			t.Fatalf("Lease of an expired lease: %+v, %v", taken.Lease, err)
		}
		late := got
		late.AccessToken = "late"
		if _, err := s.SaveLeased(t.Context(), late, "owner-a"); !errors.Is(err, store.ErrConflict) {
			t.Errorf("SaveLeased by the expired holder: err = %v, want ErrConflict", err)
		}
		late.Version = taken.Version
		if _, err := s.SaveLeased(t.Context(), late, "owner-a"); !errors.Is(err, store.ErrConflict) {
			t.Errorf("SaveLeased by the expired holder with the current version: err = %v, want ErrConflict", err)
		}
		// The holder saves and releases in one write.
		taken.AccessToken, taken.FailureCount = "renewed", 0
		done, err := s.SaveLeased(t.Context(), taken, "owner-b")
		if err != nil {
			t.Fatalf("SaveLeased by the holder: %v", err)
		}
		if done.Lease != (store.Lease{}) || done.Version != taken.Version+1 {
			t.Errorf("SaveLeased returned lease %+v version %d, want no lease, version %d", done.Lease, done.Version, taken.Version+1)
		}
		stored := mustGet(t, s, "github", "c1")
		if stored.AccessToken != "renewed" || stored.Lease != (store.Lease{}) {
			t.Errorf("after SaveLeased: token %q lease %+v", stored.AccessToken, stored.Lease)
		}
		if _, err := s.SaveLeased(t.Context(), stored, "owner-b"); !errors.Is(err, store.ErrConflict) {
			t.Errorf("SaveLeased after release: err = %v, want ErrConflict", err)
		}
		// Released: free again at once.
		if _, err := s.Lease(t.Context(), k, req("owner-c", base)); err != nil {
			t.Errorf("Lease after release: %v", err)
		}
	})

	t.Run("PlainSaveSupersedes", func(t *testing.T) {
		s := newStore(t)
		mustSave(t, s, newConn("github", "c1"))
		held, err := s.Lease(t.Context(), k, req("owner-a", base))
		if err != nil {
			t.Fatal(err)
		}
		reconnect := held
		reconnect.AccessToken = "reconnected"
		saved := mustSave(t, s, reconnect)
		if saved.Lease != (store.Lease{}) || mustGet(t, s, "github", "c1").Lease != (store.Lease{}) {
			t.Errorf("a plain save kept the lease")
		}
		held.AccessToken = "refreshed"
		if _, err := s.SaveLeased(t.Context(), held, "owner-a"); !errors.Is(err, store.ErrConflict) {
			t.Errorf("SaveLeased after a plain save: err = %v, want ErrConflict", err)
		}
		if got := mustGet(t, s, "github", "c1").AccessToken; got != "reconnected" {
			t.Errorf("token = %q, want the reconnect's", got)
		}
	})

	t.Run("Due", func(t *testing.T) {
		s := newStore(t)
		c := newConn("github", "c1") // due at base+50m
		mustSave(t, s, c)
		never := newConn("github", "never")
		never.NextRefresh = time.Time{}
		mustSave(t, s, never)
		due := func(owner string, now time.Time) store.LeaseRequest {
			r := req(owner, now)
			r.Due = true
			return r
		}
		if _, err := s.Lease(t.Context(), k, due("a", base)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Due lease before NextRefresh: err = %v, want ErrConflict", err)
		}
		if _, err := s.Lease(t.Context(), store.Key{Provider: "github", ConnectionID: "never"}, due("a", base.Add(time.Hour))); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Due lease of a connection never due: err = %v, want ErrConflict", err)
		}
		now := base.Add(50*time.Minute + sub) // NextRefresh, to the second
		got, err := s.Lease(t.Context(), k, due("a", now))
		if err != nil {
			t.Fatalf("Due lease at NextRefresh: %v", err)
		}
		if want := store.StoredTime(now.Add(time.Minute)); !got.NextRefresh.Equal(want) {
			t.Errorf("NextRefresh = %v, want moved to the lease's end %v", got.NextRefresh, want)
		}
		if keys := mustListDue(t, s, now, 10); len(keys) != 0 {
			t.Errorf("ListDue while leased = %v, want none", keys)
		}
		if keys := mustListDue(t, s, now.Add(time.Minute), 10); len(keys) != 1 {
			t.Errorf("ListDue at the lease's end = %v, want the connection back", keys)
		}
		if _, err := s.Lease(t.Context(), k, due("b", now.Add(30*time.Second))); !errors.Is(err, store.ErrConflict) {
			t.Errorf("second Due lease while held: err = %v, want ErrConflict", err)
		}
		if _, err := s.Lease(t.Context(), k, due("b", now.Add(2*time.Minute))); err != nil {
			t.Errorf("Due lease after a holder died: %v", err)
		}
	})

	t.Run("Version", func(t *testing.T) {
		s := newStore(t)
		saved := mustSave(t, s, newConn("github", "c1"))
		r := req("a", base)
		r.Version = saved.Version + 1
		if _, err := s.Lease(t.Context(), k, r); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Lease with a stale version: err = %v, want ErrConflict", err)
		}
		r.Version = saved.Version
		if _, err := s.Lease(t.Context(), k, r); err != nil {
			t.Errorf("Lease with the current version: %v", err)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Lease(t.Context(), k, req("a", base)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Lease of a missing connection: err = %v, want ErrConflict", err)
		}
		if _, err := s.GetConnection(t.Context(), "github", "c1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Lease created the connection: %v", err)
		}
		c := newConn("github", "c1")
		c.Version = 1
		if _, err := s.SaveLeased(t.Context(), c, "a"); !errors.Is(err, store.ErrConflict) {
			t.Errorf("SaveLeased of a missing connection: err = %v, want ErrConflict", err)
		}
	})

	t.Run("BadRequest", func(t *testing.T) {
		s := newStore(t)
		mustSave(t, s, newConn("github", "c1"))
		good := store.LeaseRequest{Owner: "a", Now: base, Until: until}
		for _, tt := range []struct {
			name string
			k    store.Key
			r    store.LeaseRequest
		}{
			{"no owner", k, store.LeaseRequest{Now: base, Until: until}},
			{"Until not after Now", k, store.LeaseRequest{Owner: "a", Now: base, Until: base}},
			{"a retired grant's key", store.Key{Provider: "github", ConnectionID: "c1", Retired: "r1"}, good},
			{"no provider", store.Key{ConnectionID: "c1"}, good},
			{"# in the provider", store.Key{Provider: "git#hub", ConnectionID: "c1"}, good},
		} {
			if _, err := s.Lease(t.Context(), tt.k, tt.r); err == nil || errors.Is(err, store.ErrConflict) {
				t.Errorf("Lease, %s: err = %v, want a request error", tt.name, err)
			}
		}
		if _, err := s.SaveLeased(t.Context(), mustGet(t, s, "github", "c1"), ""); err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("SaveLeased without owner: err = %v, want a request error", err)
		}
	})

	t.Run("Race", func(t *testing.T) {
		s := newStore(t)
		c := newConn("github", "c1")
		c.NextRefresh = base
		mustSave(t, s, c)
		errs := race(func(i int) error {
			_, err := s.Lease(t.Context(), k, store.LeaseRequest{Owner: fmt.Sprint("owner-", i), Now: base, Until: until, Due: i%2 == 0})
			return err
		})
		w := checkOneWinner(t, errs, store.ErrConflict)
		if got := mustGet(t, s, "github", "c1").Lease.Owner; got != fmt.Sprint("owner-", w) {
			t.Errorf("lease owner = %q, want the winner owner-%d", got, w)
		}
	})
}
