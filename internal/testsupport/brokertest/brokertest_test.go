package brokertest_test

import (
	"context"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// The World a test gets runs the flows: a whole connect through the
// provider's consent stores a live grant, a seeded connection refreshes
// when the clock reaches it, an entry served by another's server has that
// server's client credentials, and a rewritten client secret is what the
// broker reads next.
func TestWorld(t *testing.T) {
	w := brokertest.New(t, brokertest.Options{Providers: []brokertest.Provider{
		{Name: "acme", Config: providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour, RotateRefreshTokens: true}},
		{Name: "twin", SharedWith: "acme"},
	}})
	if c := w.Connected(t, "acme", "c1"); c.Status != store.StatusConnected || !w.Server(t, "acme").Valid(c.AccessToken) {
		t.Fatalf("connected %+v", c.Status)
	}
	if w.Server(t, "twin") != w.Server(t, "acme") || w.Secrets.Clients["twin"] != w.Secrets.Clients["acme"] {
		t.Fatal("twin is not served by acme's server with its credentials")
	}

	seeded := w.Seed(t, "acme", "s1", 10*time.Minute)
	if sum := w.Sweep(t); sum.Refreshed != 0 {
		t.Fatalf("sweep before due: %+v", sum)
	}
	w.Clock.Add(11 * time.Minute)
	if sum := w.Sweep(t); sum.Refreshed != 1 {
		t.Fatalf("sweep when due: %+v", sum)
	}
	if c := w.Get(t, "acme", "s1"); c.RefreshToken == seeded.RefreshToken {
		t.Fatal("seeded connection not refreshed")
	}

	w.Rewrite(t, func(s *testsecrets.Set) {
		s.Clients["acme"] = testsecrets.Client{ID: "cid", Secret: "rotated-secret-brokertest-0123"}
	})
	raw, err := w.Broker.Secrets.Secret(context.Background(), testsecrets.Prefix+"provider/acme")
	if err != nil || string(raw) != `{"client_id":"cid","client_secret":"rotated-secret-brokertest-0123"}` {
		t.Fatalf("after Rewrite the broker reads %s, %v", raw, err)
	}
}
