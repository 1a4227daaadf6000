package broker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testcatalog"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// TestForcedRefreshWithoutRenewal: a connection its provider entry and
// stored tokens give no way to renew — VerticalResponse issues no refresh
// token; Omnisend issues one but its entry has no refresh_token grant — is
// never scheduled, and a forced refresh (the app got a 401) answers
// ErrReauthRequired without calling the provider, marking it needs_reauth
// with class cannot_renew and a fixed cause, still never scheduled.
func TestForcedRefreshWithoutRenewal(t *testing.T) {
	const codeOnly = "    authorization_url: AUTH_URL\n    token_url: TOKEN_URL\n    grant_types: [authorization_code]\n"
	tests := []struct {
		name      string
		cfg       providertest.Config
		entry     string
		lastError string
	}{
		{"no refresh token (VerticalResponse)", providertest.Config{NoRefreshTokens: true}, codeEntry, "connection has no refresh token"},
		{"entry without refresh_token grant (Omnisend)", providertest.Config{}, codeOnly, "provider entry does not allow the refresh_token grant"},
		{"expiring token, entry without refresh_token grant", providertest.Config{AccessTokenTTL: time.Hour}, codeOnly, "provider entry does not allow the refresh_token grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.RequirePKCE = true
			f := newFixture(t, tt.cfg, tt.entry)
			c := f.connect(t, "c1")
			if !c.NextRefresh.IsZero() {
				t.Fatalf("a connection that cannot renew is due at %v", c.NextRefresh)
			}
			sent := f.prov.TokenRequests()

			got, err := f.Broker.Token(context.Background(), "acme", "c1", true)
			if !errors.Is(err, broker.ErrReauthRequired) {
				t.Fatalf("forced refresh: %v, want ErrReauthRequired", err)
			}
			if n := f.prov.TokenRequests() - sent; n != 0 {
				t.Errorf("forced refresh sent %d token requests, want none", n)
			}
			stored := f.get(t, "c1")
			if got.Status != store.StatusNeedsReauth || stored.Status != store.StatusNeedsReauth || stored.FailureClass != string(broker.ClassCannotRenew) ||
				stored.LastError != tt.lastError || !stored.NextRefresh.IsZero() || stored.AccessToken != c.AccessToken || stored.RefreshToken != c.RefreshToken {
				t.Errorf("after forced refresh: status %s class %q cause %q due %v, tokens kept %v",
					stored.Status, stored.FailureClass, stored.LastError, stored.NextRefresh, stored.AccessToken == c.AccessToken && stored.RefreshToken == c.RefreshToken)
			}
			if sum := f.sweepAt(t, 2*time.Hour); sum.Due != 0 {
				t.Errorf("sweep after the forced refresh: %+v, want nothing due", sum)
			}
			if _, err := f.Broker.Token(context.Background(), "acme", "c1", false); !errors.Is(err, broker.ErrReauthRequired) {
				t.Errorf("read after: %v, want ErrReauthRequired", err)
			}
			if n := f.prov.TokenRequests() - sent; n != 0 {
				t.Errorf("%d token requests after connecting, want none", n)
			}
		})
	}
}

// TestEntryLosingRefreshGrantIsRetried: a scheduled connection whose
// entry loses the refresh_token grant afterwards (an operator's change,
// perhaps for one deploy) keeps its tokens and is retried, class catalog,
// and restoring the entry recovers it — it is not sent to needs_reauth.
func TestEntryLosingRefreshGrantIsRetried(t *testing.T) {
	f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, codeEntry)
	c := f.connect(t, "c1")
	if c.NextRefresh.IsZero() {
		t.Fatal("test setup: connection not scheduled")
	}
	withRefresh := f.Broker.Catalog
	codeOnly := "    authorization_url: " + f.prov.AuthorizeURL() + "\n    token_url: " + f.prov.TokenURL() + "\n    grant_types: [authorization_code]\n"
	cat, err := testcatalog.Load(t, []byte("providers:\n  acme:\n"+codeOnly))
	if err != nil {
		t.Fatal(err)
	}
	f.Broker.Catalog = cat
	if sum := f.sweepAt(t, 56*time.Minute); sum.Failed != 1 {
		t.Fatalf("sweep under the changed entry: %+v", sum)
	}
	got := f.get(t, "c1")
	if got.Status != store.StatusConnected || got.FailureClass != string(broker.ClassCatalog) || got.NextRefresh.IsZero() || got.RefreshToken != c.RefreshToken {
		t.Fatalf("after the entry lost refresh_token: status %s class %q due %v", got.Status, got.FailureClass, got.NextRefresh)
	}
	f.Broker.Catalog = withRefresh
	if sum := f.sweepAt(t, 2*time.Hour); sum.Refreshed != 1 {
		t.Fatalf("sweep after restoring the entry: %+v", sum)
	}
}
