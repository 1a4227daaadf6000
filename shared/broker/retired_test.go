package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testcatalog"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// revokingEntry is codeEntry with a revocation endpoint; the test adds
// revoke_on_reconnect where it wants it.
const revokingEntry = codeEntry + "    revocation_url: REVOKE_URL\n"

// newRevokingFixture is newFixture for revokingEntry + extra.
func newRevokingFixture(t *testing.T, cfg providertest.Config, extra string) *fixture {
	t.Helper()
	return newFixture(t, cfg, revokingEntry+extra)
}

// revokeOnReconnect is the catalog line that has a reconnect's replaced
// grant revoked.
const revokeOnReconnect = "    revoke_on_reconnect: true\n"

// reconnected is a revoking fixture (PKCE, day-long tokens, revokingEntry
// + extra) where c1 connected twice: it returns the connection the second
// connect replaced and the one it stored.
func reconnected(t *testing.T, extra string) (f *fixture, replaced, current store.Connection) {
	t.Helper()
	f = newRevokingFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: 24 * time.Hour}, extra)
	replaced = f.connect(t, "c1")
	current = f.connect(t, "c1")
	return f, replaced, current
}

// sweepNow runs the refresh schedule with the clock set to the wall
// clock: a store dates a retired grant by the wall clock (the reconnect's
// time), which the fixture's clock, set when it was made, trails by as long
// as the connects took.
func (f *fixture) sweepNow(t *testing.T) broker.RefreshSummary {
	t.Helper()
	f.Clock.Set(time.Now())
	return f.sweepAt(t, 0)
}

// revocations returns the requests that reached the revocation endpoint.
func revocations(s *providertest.Server) []providertest.Recorded {
	var out []providertest.Recorded
	for _, r := range s.Requests() {
		if r.Path == "/revoke" {
			out = append(out, r)
		}
	}
	return out
}

// TestReconnectRevokesReplacedGrant: where the entry sets
// revoke_on_reconnect, the grant a reconnect replaces is revoked at the
// provider (RFC 7009) by the next sweep, after the new one is saved; the
// new grant and the connection are untouched and no token request is
// made. Without it (the default), the replaced grant is left alone.
func TestReconnectRevokesReplacedGrant(t *testing.T) {
	for _, tc := range []struct {
		name   string
		extra  string
		revoke bool
	}{
		{"revoke_on_reconnect", revokeOnReconnect, true},
		{"default", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, first, second := reconnected(t, tc.extra)
			if !f.prov.ValidRefresh(first.RefreshToken) {
				t.Fatal("the replaced grant was revoked before any sweep: the callback must not wait for it")
			}
			tokenRequests := f.prov.TokenRequests()
			sum := f.sweepNow(t)
			want := broker.RefreshSummary{}
			if tc.revoke {
				want = broker.RefreshSummary{Due: 1, Revoked: 1}
			}
			if sum != want {
				t.Errorf("sweep = %+v, want %+v", sum, want)
			}
			if got := f.prov.ValidRefresh(first.RefreshToken); got == tc.revoke {
				t.Errorf("replaced refresh token valid after the sweep = %v, want %v", got, !tc.revoke)
			}
			if !f.prov.ValidRefresh(second.RefreshToken) || !f.prov.Valid(second.AccessToken) {
				t.Error("the new grant was revoked")
			}
			if got := f.get(t, "c1"); got.Version != second.Version || got.RefreshToken != second.RefreshToken {
				t.Errorf("the connection changed: version %d→%d", second.Version, got.Version)
			}
			if n := f.prov.TokenRequests(); n != tokenRequests {
				t.Errorf("the sweep made %d token requests, want none", n-tokenRequests)
			}
			if !tc.revoke {
				if r := revocations(f.prov); len(r) != 0 {
					t.Errorf("%d revocation requests without revoke_on_reconnect", len(r))
				}
				return
			}
			r := revocations(f.prov)
			if len(r) != 1 || r[0].Params.Get("token") != first.RefreshToken || r[0].Params.Get("token_type_hint") != "refresh_token" || r[0].Status != 200 {
				t.Fatalf("revocation requests = %+v, want one for the replaced refresh token, answered 200", r)
			}
			if sum := f.sweepAt(t, time.Hour); sum != (broker.RefreshSummary{}) {
				t.Errorf("a later sweep = %+v, want nothing left", sum)
			}
		})
	}
}

// TestRetiredGrantRetriedThenGivenUp: a provider that cannot revoke (503)
// costs the connection nothing: the revocation is tried again
// retiredRetry (15 minutes) later, succeeds once the provider is back,
// and is given up after 8 attempts, never blocking the sweep.
func TestRetiredGrantRetriedThenGivenUp(t *testing.T) {
	t.Run("retried", func(t *testing.T) {
		f, first, _ := reconnected(t, revokeOnReconnect)
		f.prov.FailRevocations(true)
		if sum := f.sweepNow(t); sum != (broker.RefreshSummary{Due: 1, RevokeFailed: 1}) {
			t.Errorf("sweep with the provider down = %+v", sum)
		}
		if sum := f.sweepAt(t, 14*time.Minute); sum != (broker.RefreshSummary{}) {
			t.Errorf("sweep before the retry is due = %+v, want nothing", sum)
		}
		f.prov.FailRevocations(false)
		if sum := f.sweepAt(t, time.Minute+time.Second); sum != (broker.RefreshSummary{Due: 1, Revoked: 1}) {
			t.Errorf("sweep once the provider is back = %+v", sum)
		}
		if f.prov.ValidRefresh(first.RefreshToken) {
			t.Error("the replaced grant is still valid")
		}
	})
	t.Run("given up", func(t *testing.T) {
		f, _, second := reconnected(t, revokeOnReconnect)
		f.prov.FailRevocations(true)
		for i := range 8 {
			if sum := f.sweepAt(t, 15*time.Minute+time.Second); sum != (broker.RefreshSummary{Due: 1, RevokeFailed: 1}) {
				t.Fatalf("attempt %d: sweep = %+v", i+1, sum)
			}
		}
		if sum := f.sweepAt(t, 15*time.Minute+time.Second); sum != (broker.RefreshSummary{}) {
			t.Errorf("after 8 attempts, sweep = %+v, want the grant given up", sum)
		}
		if n := len(revocations(f.prov)); n != 8 {
			t.Errorf("%d revocation requests, want 8", n)
		}
		if got := f.get(t, "c1"); got.Version != second.Version || got.Status != store.StatusConnected {
			t.Errorf("the failing revocations changed the connection: %+v", got)
		}
	})
}

// lostAnswerStore: the first write it is told to spoil commits, but the
// caller sees ErrConflict — a PutItem whose answer was lost (a 500, a
// reset), retried by the SDK, fails its own version condition.
type lostAnswerStore struct {
	store.Store
	replace, leased bool
}

func (s *lostAnswerStore) ReplaceConnection(ctx context.Context, c store.Connection) (store.Connection, error) {
	saved, err := s.Store.ReplaceConnection(ctx, c)
	if s.replace && err == nil {
		s.replace = false
		return store.Connection{}, store.ErrConflict
	}
	return saved, err
}

func (s *lostAnswerStore) SaveLeased(ctx context.Context, c store.Connection, owner string) (store.Connection, error) {
	saved, err := s.Store.SaveLeased(ctx, c, owner)
	if s.leased && err == nil {
		s.leased = false
		return store.Connection{}, store.ErrConflict
	}
	return saved, err
}

// TestAmbiguousWritesNeverRevokeTheLiveGrant: a write that landed but was
// answered with a conflict must not make the broker revoke the tokens the
// connection now holds — neither a reconnect whose retry replaces its own
// new tokens, nor a refresh whose save is reported superseded.
func TestAmbiguousWritesNeverRevokeTheLiveGrant(t *testing.T) {
	t.Run("reconnect", func(t *testing.T) {
		f := newRevokingFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: 24 * time.Hour}, revokeOnReconnect)
		f.connect(t, "c1")
		f.Broker.Store = &lostAnswerStore{Store: f.Store, replace: true}
		f.connect(t, "c1")
		live := f.get(t, "c1")
		f.sweepNow(t)
		if !f.prov.ValidRefresh(live.RefreshToken) {
			t.Error("the sweep revoked the live connection's refresh token")
		}
	})
	t.Run("refresh", func(t *testing.T) {
		f := newRevokingFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, revokeOnReconnect)
		f.connect(t, "c1")
		f.Broker.Store = &lostAnswerStore{Store: f.Store, leased: true}
		f.sweepAt(t, time.Hour)
		if live := f.get(t, "c1"); !f.prov.ValidRefresh(live.RefreshToken) {
			t.Error("a refresh reported superseded revoked the live connection's refresh token")
		}
		if n := len(revocations(f.prov)); n != 0 {
			t.Errorf("%d revocation requests, want none", n)
		}
	})
}

// TestRetiredGrantRules: what decides whether and when a retired grant is
// revoked — the catalog entry as it is at sweep time, the provider's rate
// budget (shared with refreshes), and a refusal that will not change.
func TestRetiredGrantRules(t *testing.T) {
	t.Run("entry no longer revokes", func(t *testing.T) {
		f, first, _ := reconnected(t, revokeOnReconnect)
		cat, err := testcatalog.Load(t, []byte("providers:\n  acme:\n"+strings.NewReplacer("AUTH_URL", f.prov.AuthorizeURL(), "TOKEN_URL", f.prov.TokenURL(), "REVOKE_URL", f.prov.RevokeURL()).Replace(revokingEntry)))
		if err != nil {
			t.Fatal(err)
		}
		f.Broker.Catalog = cat
		if sum := f.sweepNow(t); sum != (broker.RefreshSummary{Due: 1, Skipped: 1}) {
			t.Errorf("sweep = %+v, want the retired grant dropped", sum)
		}
		if sum := f.sweepAt(t, time.Hour); sum != (broker.RefreshSummary{}) {
			t.Errorf("later sweep = %+v, want nothing", sum)
		}
		if n := len(revocations(f.prov)); n != 0 || !f.prov.ValidRefresh(first.RefreshToken) {
			t.Errorf("%d revocation requests after the entry stopped revoking, want none", n)
		}
	})
	t.Run("within the rate budget", func(t *testing.T) {
		f := newRevokingFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: 24 * time.Hour}, revokeOnReconnect+"    rate_limit: {requests: 1, period_seconds: 3600}\n")
		for _, id := range []string{"c1", "c2"} {
			f.connect(t, id)
			f.connect(t, id)
		}
		// The sweep stops starting work startReserve (26 s) before its
		// deadline: give it two seconds of work.
		f.Clock.Set(time.Now()) // as sweepNow
		ctx, cancel := context.WithTimeout(context.Background(), 28*time.Second)
		defer cancel()
		sum, err := f.Broker.Sweep(ctx)
		if err != nil || sum.Revoked != 1 || sum.Deferred != 1 || len(revocations(f.prov)) != 1 {
			t.Errorf("sweep = %+v, %v with %d revocation requests; want one revoked and one deferred within a budget of one request", sum, err, len(revocations(f.prov)))
		}
	})
	t.Run("refused for good", func(t *testing.T) {
		f, _, _ := reconnected(t, revokeOnReconnect)
		// The client secret no longer matches: 401 invalid_client, which
		// another attempt would not change.
		f.Rewrite(t, func(s *testsecrets.Set) { s.Clients["acme"] = testsecrets.Client{ID: "cid", Secret: "wrong"} })
		if sum := f.sweepNow(t); sum != (broker.RefreshSummary{Due: 1, RevokeFailed: 1}) {
			t.Errorf("sweep = %+v", sum)
		}
		if sum := f.sweepAt(t, 15*time.Minute+time.Second); sum != (broker.RefreshSummary{}) {
			t.Errorf("sweep after a refusal for good = %+v, want the grant given up", sum)
		}
		if r := revocations(f.prov); len(r) != 1 || r[0].Status != 401 {
			t.Errorf("revocation requests = %d, want one answered 401", len(r))
		}
	})
}
