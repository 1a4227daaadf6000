package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
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
		{"revoke_on_reconnect", "    revoke_on_reconnect: true\n", true},
		{"default", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRevokingFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: 24 * time.Hour}, tc.extra)
			first := f.connect(t, "c1")
			second := f.connect(t, "c1")
			if !f.prov.ValidRefresh(first.RefreshToken) {
				t.Fatal("the replaced grant was revoked before any sweep: the callback must not wait for it")
			}
			tokenRequests := f.prov.TokenRequests()
			sum := f.sweepAt(t, 0)
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
		f := newRevokingFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: 24 * time.Hour}, "    revoke_on_reconnect: true\n")
		first := f.connect(t, "c1")
		f.connect(t, "c1")
		f.prov.FailRevocations(true)
		if sum := f.sweepAt(t, 0); sum != (broker.RefreshSummary{Due: 1, RevokeFailed: 1}) {
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
		f := newRevokingFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: 24 * time.Hour}, "    revoke_on_reconnect: true\n")
		f.connect(t, "c1")
		second := f.connect(t, "c1")
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

// supersedingStore runs reconnect once, just before the refresher's save:
// a customer reconnecting while the provider answered the refresh.
type supersedingStore struct {
	store.Store
	reconnect func()
	saved     string // refresh token the refresher tried to save
}

func (s *supersedingStore) SaveLeased(ctx context.Context, c store.Connection, owner string) (store.Connection, error) {
	if s.reconnect != nil {
		s.saved = c.RefreshToken
		s.reconnect()
		s.reconnect = nil
	}
	return s.Store.SaveLeased(ctx, c, owner)
}

// TestSupersededRefreshRevokesItsTokens: a refresh whose result a
// reconnect superseded holds tokens of the replaced grant that nothing
// will use: with revoke_on_reconnect they are revoked at once, and the
// reconnect's grant survives.
func TestSupersededRefreshRevokesItsTokens(t *testing.T) {
	f := newRevokingFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour, RotateRefreshTokens: true}, "    revoke_on_reconnect: true\n")
	f.connect(t, "c1")
	var second store.Connection
	st := &supersedingStore{Store: f.st}
	st.reconnect = func() { second = f.connect(t, "c1") }
	f.b.Store = st
	sum := f.sweepAt(t, time.Hour)
	if sum.Superseded != 1 {
		t.Fatalf("sweep = %+v, want the refresh superseded", sum)
	}
	if st.saved == "" || f.prov.ValidRefresh(st.saved) {
		t.Error("the superseded refresh's rotated refresh token is still valid at the provider")
	}
	if !f.prov.ValidRefresh(second.RefreshToken) {
		t.Error("the reconnect's grant was revoked")
	}
	if got := f.get(t, "c1"); got.RefreshToken != second.RefreshToken {
		t.Error("the reconnect's tokens were not kept")
	}
}
