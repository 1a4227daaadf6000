package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/oidcprovider"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// oidcFixture is a broker whose "acme" entry is a real, independent
// authorization server (panva's oidc-provider): refresh tokens rotate,
// reuse revokes the grant, and one browser session keeps one grant.
type oidcFixture struct {
	*brokertest.World
	srv *oidcprovider.Server
}

func newOIDCFixture(t *testing.T, extra string) *oidcFixture {
	t.Helper()
	srv := oidcprovider.Start(t, oidcprovider.Options{RedirectURIs: []string{base + "/callback/acme"}, Scopes: []string{"read"}, AccessTokenTTL: time.Hour})
	w := brokertest.New(t, brokertest.Options{
		Catalog: "  acme:\n    authorization_url: " + srv.AuthorizationEndpoint + "\n    token_url: " + srv.TokenEndpoint +
			"\n    revocation_url: " + srv.RevocationEndpoint + "\n    grant_types: [authorization_code, refresh_token]\n    default_scopes: [read]\n" + extra,
		Clients: map[string]testsecrets.Client{"acme": {ID: srv.ClientID, Secret: srv.ClientSecret}},
		Now:     time.Now, // the server's clock
	})
	return &oidcFixture{World: w, srv: srv}
}

// connect runs a whole flow for id in browser and returns the connection.
func (f *oidcFixture) connect(t *testing.T, browser *oidcprovider.Browser, id string) store.Connection {
	t.Helper()
	res, err := f.Connect("acme", f.Link(t, "acme", id, nil))
	if err != nil {
		t.Fatal(err)
	}
	redirect := browser.Authorize(t, res.Location)
	if cb, err := f.Callback("acme", res, redirect.Query()); err != nil || cb.Connection == nil {
		t.Fatalf("callback: %v", err)
	}
	return f.Get(t, "acme", id)
}

// renews reports whether the stored connection id still renews at the
// server: a forced refresh through the broker.
func (f *oidcFixture) renews(t *testing.T, id string) bool {
	t.Helper()
	c, err := f.Broker.Token(context.Background(), "acme", id, true)
	if err != nil {
		t.Logf("forced refresh of %s: %v", id, err)
	}
	return err == nil && c.Status == store.StatusConnected
}

// TestReconnectOnARealServer runs reconnects against oidc-provider, whose
// grant model is the reason revoke_on_reconnect is off by default
// (docs/providers.md):
//   - default, reconnect from the same browser session (the server joins
//     the new authorization to the old grant): the new connection keeps
//     renewing, as the replaced grant is left alone;
//   - revoke_on_reconnect, reconnect from another session (a grant of its
//     own): the sweep revokes the replaced grant at the server — its
//     refresh token is refused — and the new connection keeps renewing;
//   - (TestReconnectOnARealServerSharedGrantHazard) revoke_on_reconnect,
//     same session: revoking the replaced grant ends
//     the new connection too (needs_reauth) — the hazard docs/providers.md
//     warns of, asserted so that the warning stays true.
func TestReconnectOnARealServer(t *testing.T) {
	t.Run("default, same session", func(t *testing.T) {
		f := newOIDCFixture(t, "")
		browser := f.srv.NewBrowser()
		f.connect(t, browser, "c1")
		f.connect(t, browser, "c1")
		if len(browser.Prompts) != 0 {
			t.Fatalf("the second authorization went through %v: the server did not reuse the session's grant", browser.Prompts)
		}
		if sum, err := f.Broker.Sweep(context.Background()); err != nil || sum != (broker.RefreshSummary{}) {
			t.Errorf("sweep = %+v, %v; want nothing to do", sum, err)
		}
		if !f.renews(t, "c1") || !f.renews(t, "c1") {
			t.Error("the reconnected connection does not renew")
		}
	})
	t.Run("revoke_on_reconnect, new session", func(t *testing.T) {
		f := newOIDCFixture(t, "    revoke_on_reconnect: true\n")
		first := f.connect(t, f.srv.NewBrowser(), "c1")
		f.connect(t, f.srv.NewBrowser(), "c1")
		sum, err := f.Broker.Sweep(context.Background())
		if err != nil || sum != (broker.RefreshSummary{Due: 1, Revoked: 1}) {
			t.Errorf("sweep = %+v, %v; want the replaced grant revoked", sum, err)
		}
		// The replaced refresh token is dead at the server: a client
		// presenting it is refused.
		old, err := f.Broker.ProviderClient.Refresh(context.Background(), mustResolve(t, f.Broker.Catalog), secrets.ClientCredentials{ClientID: f.srv.ClientID, ClientSecret: f.srv.ClientSecret}, first.RefreshToken)
		if err == nil || old != nil {
			t.Errorf("the replaced refresh token still works at the server")
		}
		if !f.renews(t, "c1") || !f.renews(t, "c1") {
			t.Error("the reconnected connection does not renew")
		}
	})
}

func TestReconnectOnARealServerSharedGrantHazard(t *testing.T) {
	f := newOIDCFixture(t, "    revoke_on_reconnect: true\n")
	browser := f.srv.NewBrowser()
	f.connect(t, browser, "c1")
	f.connect(t, browser, "c1")
	if sum, err := f.Broker.Sweep(context.Background()); err != nil || sum.Revoked != 1 {
		t.Fatalf("sweep = %+v, %v; want the replaced grant revoked", sum, err)
	}
	if f.renews(t, "c1") {
		t.Fatal("the new connection survived revoking a token of the grant it shares: docs/providers.md's warning is wrong")
	}
	c, err := f.Broker.Store.GetConnection(context.Background(), "acme", "c1")
	if err != nil || c.Status != store.StatusNeedsReauth || c.FailureClass != string(broker.ClassInvalidGrant) {
		t.Errorf("connection = %s/%s, %v; want needs_reauth, invalid_grant", c.Status, c.FailureClass, err)
	}
}

func mustResolve(t *testing.T, cat *provider.Catalog) *provider.Endpoint {
	t.Helper()
	p, _ := cat.Get("acme")
	rp, err := p.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}
