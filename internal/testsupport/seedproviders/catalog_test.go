package seedproviders_test

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/seedproviders"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
)

// TestEmbeddedEntries proves each seed entry of the embedded catalog
// (shared/provider/providers.yaml) by behaviour rather than by a copy of
// its values: resolved for a connection and with only its hosts moved
// onto the seed server (Mount), the authorization request the broker
// builds from it is accepted, and the token client speaking the entry's
// encoding, client authentication and quirks completes every grant the
// entry offers; a grant it does not offer is refused by the server too.
func TestEmbeddedEntries(t *testing.T) {
	cat, err := provider.Load("")
	if err != nil {
		t.Fatal(err)
	}
	creds := secrets.ClientCredentials{ClientID: clientID, ClientSecret: clientSecret}
	for _, tc := range []struct {
		name   string
		params map[string]string
		srv    func(t *testing.T) *providertest.Server
	}{
		{"omnisend", nil, func(t *testing.T) *providertest.Server {
			return seedproviders.Omnisend(t, client, []string{"contacts"})
		}},
		{"outstand", nil, func(t *testing.T) *providertest.Server { return seedproviders.Outstand(t, client) }},
		{"verticalresponse", nil, func(t *testing.T) *providertest.Server { return seedproviders.VerticalResponse(t, client) }},
		{"kaisa", nil, func(t *testing.T) *providertest.Server { return seedproviders.Kaisa(t, client) }},
		{"getresponse", nil, func(t *testing.T) *providertest.Server { return seedproviders.GetResponse(t, client) }},
		{"getresponse360 com", map[string]string{"domain": "mail.example.com"}, func(t *testing.T) *providertest.Server {
			return seedproviders.GetResponse360(t, client, "mail.example.com", "com")
		}},
		{"getresponse360 pl", map[string]string{"domain": "news.example.pl", "region": "pl"}, func(t *testing.T) *providertest.Server {
			return seedproviders.GetResponse360(t, client, "news.example.pl", "pl")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := cat.Get(strings.Fields(tc.name)[0])
			if !ok {
				t.Fatalf("not in the embedded catalog")
			}
			ep, err := p.Resolve(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			s := tc.srv(t)
			moved := *ep
			moved.TokenURL = seedproviders.Mount(s.URL, ep.TokenURL)
			wire := &provider.Client{}
			ctx := context.Background()

			var tok *provider.Token
			if p.Supports(provider.GrantAuthorizationCode) {
				code, verifier := brokerAuthorize(t, s, p, seedproviders.Mount(s.URL, ep.AuthorizationURL))
				if tok, err = wire.Exchange(ctx, &moved, creds, code, redirectURI, verifier); err != nil {
					t.Fatalf("code exchange: %v", err)
				}
				if !s.Valid(tok.AccessToken) {
					t.Fatal("the exchanged access token is not one the server issued")
				}
				for _, field := range p.MetadataFields { // what the entry keeps, the server sends
					if tok.Metadata[field] == "" {
						t.Errorf("metadata field %s not in the token response", field)
					}
				}
			}
			if p.Supports(provider.GrantRefreshToken) {
				if tok == nil || tok.RefreshToken == "" {
					t.Fatal("the entry offers refresh_token but the code exchange gave none")
				}
				refreshed, err := wire.Refresh(ctx, &moved, creds, tok.RefreshToken)
				if err != nil || !s.Valid(refreshed.AccessToken) {
					t.Fatalf("refresh: %v", err)
				}
			}
			cc, err := wire.ClientCredentials(ctx, &moved, creds, nil)
			if p.Supports(provider.GrantClientCredentials) != (err == nil) {
				t.Fatalf("client credentials (offered: %v): %v", p.Supports(provider.GrantClientCredentials), err)
			}
			if err == nil && !s.Valid(cc.AccessToken) {
				t.Fatal("the client credentials token is not one the server issued")
			}
		})
	}
}

// brokerAuthorize sends the authorization request the broker builds for p (as
// broker.Connect does) to authorizeURL and returns the code and the PKCE
// verifier ("" without PKCE).
func brokerAuthorize(t *testing.T, s *providertest.Server, p *provider.Provider, authorizeURL string) (code, verifier string) {
	t.Helper()
	cfg := oauth2.Config{ClientID: clientID, RedirectURL: redirectURI, Endpoint: oauth2.Endpoint{AuthURL: authorizeURL}}
	var opts []oauth2.AuthCodeOption
	if p.UsesPKCE() {
		verifier = oauth2.GenerateVerifier()
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	if len(p.DefaultScopes) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam(p.ScopeParam, strings.Join(p.DefaultScopes, p.ScopeSeparator)))
	}
	for k, v := range p.AuthorizeParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	loc := s.Authorize(t, cfg.AuthCodeURL("seed-state", opts...))
	if code = loc.Query().Get("code"); code == "" {
		t.Fatalf("authorization refused: %s", loc)
	}
	return code, verifier
}
