package oidcprovider_test

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/oidcprovider"
)

// These tests pin down oidc-provider's grant model, on which the broker's
// handling of refresh tokens and reconnects relies: what rotation, reuse
// and revocation do to a grant, and when two authorizations share one.

const redirectURI = "http://127.0.0.1:9/callback/oidcp"

// scope is the scope the tests ask for: a plain OAuth 2.0 scope, as the
// broker's providers use.
const scope = "read"

// options are the server's options, with those of a test applied by edit.
func options(edit func(*oidcprovider.Options)) oidcprovider.Options {
	o := oidcprovider.Options{RedirectURIs: []string{redirectURI}, Scopes: []string{scope}}
	if edit != nil {
		edit(&o)
	}
	return o
}

// Client authentication methods (RFC 6749 §2.3.1).
const (
	basic = "client_secret_basic"
	post  = "client_secret_post"
)

// tokens is a token endpoint answer (RFC 6749 §5.1, §5.2).
type tokens struct {
	status       int
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	Error        string `json:"error"`
}

// authorization is one authorization request of the test client.
type authorization struct {
	state, verifier string
}

func newAuthorization() authorization {
	return authorization{state: rand.Text(), verifier: oauth2.GenerateVerifier()}
}

// url is the authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3).
func (a authorization) url(srv *oidcprovider.Server) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {srv.ClientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {scope},
		"state":                 {a.state},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(a.verifier)},
		"code_challenge_method": {"S256"},
	}
	return srv.AuthorizationEndpoint + "?" + q.Encode()
}

// code checks the authorization response (RFC 6749 §4.1.2, RFC 9207) and
// returns its code.
func (a authorization) code(t *testing.T, srv *oidcprovider.Server, redirect *url.URL) string {
	t.Helper()
	q := redirect.Query()
	if q.Get("error") != "" || q.Get("code") == "" {
		t.Fatalf("authorization answered error=%q (%s), want a code", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != a.state {
		t.Errorf("authorization response's state differs from the request's")
	}
	if q.Get("iss") != srv.Issuer {
		t.Errorf("authorization response's iss = %q, want %q", q.Get("iss"), srv.Issuer)
	}
	return q.Get("code")
}

// redeem exchanges code with verifier, authenticating with method (RFC
// 6749 §4.1.3, RFC 7636 §4.5).
func redeem(t *testing.T, srv *oidcprovider.Server, method, code, verifier string) tokens {
	t.Helper()
	return tokenRequest(t, srv, method, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	})
}

// connect authorizes in b and redeems the code: the test client's
// connect flow.
func connect(t *testing.T, srv *oidcprovider.Server, b *oidcprovider.Browser) tokens {
	t.Helper()
	a := newAuthorization()
	code := a.code(t, srv, b.Authorize(t, a.url(srv)))
	tok := redeem(t, srv, basic, code, a.verifier)
	if tok.status != http.StatusOK || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("code exchange answered %d %q, access token %t, refresh token %t; want 200 with both",
			tok.status, tok.Error, tok.AccessToken != "", tok.RefreshToken != "")
	}
	return tok
}

// tokenRequest posts form to the token endpoint, authenticating the client
// with method.
func tokenRequest(t *testing.T, srv *oidcprovider.Server, method string, form url.Values) tokens {
	t.Helper()
	resp := clientPost(t, srv, srv.TokenEndpoint, method, form)
	defer resp.Body.Close()
	var tok tokens
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatalf("token endpoint answered %s, not JSON: %v", resp.Status, err)
	}
	tok.status = resp.StatusCode
	return tok
}

func refresh(t *testing.T, srv *oidcprovider.Server, refreshToken string) tokens {
	t.Helper()
	return tokenRequest(t, srv, basic, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}})
}

// revokeRefreshToken revokes a refresh token (RFC 7009 §2.1) and checks
// the answer (§2.2).
func revokeRefreshToken(t *testing.T, srv *oidcprovider.Server, refreshToken string) {
	t.Helper()
	resp := clientPost(t, srv, srv.RevocationEndpoint, basic, url.Values{
		"token":           {refreshToken},
		"token_type_hint": {"refresh_token"},
	})
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation answered %s, want 200", resp.Status)
	}
}

func clientPost(t *testing.T, srv *oidcprovider.Server, endpoint, method string, form url.Values) *http.Response {
	t.Helper()
	switch method {
	case post:
		form.Set("client_id", srv.ClientID)
		form.Set("client_secret", srv.ClientSecret)
	case basic:
	default:
		t.Fatalf("unknown client authentication method %q", method)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if method == basic {
		req.SetBasicAuth(url.QueryEscape(srv.ClientID), url.QueryEscape(srv.ClientSecret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// An authorization code redeemed with its PKCE verifier gives an access and
// a refresh token, with either secret-based client authentication. Each
// refresh rotates the refresh token; presenting a rotated one again is
// refused and revokes the grant, so its successor is refused too.
func TestCodeExchangeAndRotation(t *testing.T) {
	for _, tc := range []struct {
		method string
		ttl    time.Duration
	}{
		{basic, 0}, // the default, 60 s
		{post, 90 * time.Second},
	} {
		t.Run(tc.method, func(t *testing.T) {
			srv := oidcprovider.Start(t, options(func(o *oidcprovider.Options) { o.AccessTokenTTL = tc.ttl }))
			wantTTL := int(max(tc.ttl, time.Minute) / time.Second)
			a := newAuthorization()
			code := a.code(t, srv, srv.NewBrowser().Authorize(t, a.url(srv)))

			first := redeem(t, srv, tc.method, code, a.verifier)
			if first.status != http.StatusOK || first.AccessToken == "" || first.RefreshToken == "" ||
				first.TokenType != "Bearer" || first.ExpiresIn != wantTTL || first.Scope != scope {
				t.Fatalf("code exchange answered %d %q, token_type %q, expires_in %d, scope %q, access token %t, refresh token %t; "+
					"want 200, Bearer, %d, %q, both tokens",
					first.status, first.Error, first.TokenType, first.ExpiresIn, first.Scope, first.AccessToken != "", first.RefreshToken != "",
					wantTTL, scope)
			}

			second := tokenRequest(t, srv, tc.method, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}})
			if second.status != http.StatusOK || second.RefreshToken == "" || second.AccessToken == "" {
				t.Fatalf("refresh answered %d %q; want 200 with both tokens", second.status, second.Error)
			}
			if second.RefreshToken == first.RefreshToken {
				t.Errorf("refresh answered the same refresh token: not rotated")
			}
			if second.AccessToken == first.AccessToken {
				t.Errorf("refresh answered the same access token")
			}

			if replay := refresh(t, srv, first.RefreshToken); replay.status != http.StatusBadRequest || replay.Error != "invalid_grant" {
				t.Errorf("replaying the rotated refresh token answered %d %q, want 400 invalid_grant", replay.status, replay.Error)
			}
			if after := refresh(t, srv, second.RefreshToken); after.status != http.StatusBadRequest || after.Error != "invalid_grant" {
				t.Errorf("after the replay, the current refresh token answered %d %q, want 400 invalid_grant (reuse revokes the grant)",
					after.status, after.Error)
			}
		})
	}
}

// PKCE is required, and the code is bound to its challenge.
func TestPKCERequired(t *testing.T) {
	srv := oidcprovider.Start(t, options(nil))
	b := srv.NewBrowser()

	t.Run("no challenge", func(t *testing.T) {
		a := newAuthorization()
		u, _ := url.Parse(a.url(srv))
		q := u.Query()
		q.Del("code_challenge")
		q.Del("code_challenge_method")
		u.RawQuery = q.Encode()
		redirect := b.Authorize(t, u.String())
		if got := redirect.Query().Get("error"); got != "invalid_request" || redirect.Query().Get("code") != "" {
			t.Errorf("authorization without code_challenge answered error=%q, code %t; want invalid_request, no code",
				got, redirect.Query().Get("code") != "")
		}
	})
	t.Run("wrong verifier", func(t *testing.T) {
		a := newAuthorization()
		code := a.code(t, srv, b.Authorize(t, a.url(srv)))
		tok := redeem(t, srv, basic, code, oauth2.GenerateVerifier())
		if tok.status != http.StatusBadRequest || tok.Error != "invalid_grant" {
			t.Errorf("code exchange with another verifier answered %d %q, want 400 invalid_grant", tok.status, tok.Error)
		}
	})
}

// Two authorizations in one provider session (the same Browser) share one
// grant: oidc-provider finds the session's grant for the client
// (loadExistingGrant), so the second authorization asks nothing, and
// issues the second refresh token under it. Revoking either refresh token
// revokes the whole grant (revokeGrantPolicy), so the other dies with it.
func TestSameSessionSharesTheGrant(t *testing.T) {
	srv := oidcprovider.Start(t, options(nil))
	b := srv.NewBrowser()
	first := connect(t, srv, b)
	if want := []string{"login", "consent"}; !slices.Equal(b.Prompts, want) {
		t.Errorf("the first authorization answered the prompts %q, want %q", b.Prompts, want)
	}
	second := connect(t, srv, b)
	if len(b.Prompts) != 0 {
		t.Errorf("the second authorization answered the prompts %q, want none (the session holds the grant)", b.Prompts)
	}
	if first.RefreshToken == second.RefreshToken {
		t.Fatalf("the two authorizations answered the same refresh token")
	}

	revokeRefreshToken(t, srv, first.RefreshToken)

	for _, tc := range []struct {
		name, refreshToken string
	}{
		{"the revoked refresh token", first.RefreshToken},
		{"the same session's other refresh token", second.RefreshToken},
	} {
		if got := refresh(t, srv, tc.refreshToken); got.status != http.StatusBadRequest || got.Error != "invalid_grant" {
			t.Errorf("refreshing with %s answered %d %q, want 400 invalid_grant", tc.name, got.status, got.Error)
		}
	}

	// The revocation destroyed the grant itself, not only its tokens: the
	// session's next authorization asks for consent again and makes a new
	// grant, which works.
	third := connect(t, srv, b)
	if want := []string{"consent"}; !slices.Equal(b.Prompts, want) {
		t.Errorf("the authorization after the revocation answered the prompts %q, want %q", b.Prompts, want)
	}
	if got := refresh(t, srv, third.RefreshToken); got.status != http.StatusOK || got.RefreshToken == "" {
		t.Errorf("refreshing with the new grant's refresh token answered %d %q, want 200 with a refresh token", got.status, got.Error)
	}
}

// Two authorizations of the same account in two provider sessions (two
// Browsers) make two grants: revoking the first one's refresh token leaves
// the second working.
func TestSeparateSessionsMakeSeparateGrants(t *testing.T) {
	srv := oidcprovider.Start(t, options(nil))
	b1, b2 := srv.NewBrowser(), srv.NewBrowser()
	if b1.Account != b2.Account {
		t.Fatalf("the browsers sign in as %q and %q, want one account", b1.Account, b2.Account)
	}
	first, second := connect(t, srv, b1), connect(t, srv, b2)
	if want := []string{"login", "consent"}; !slices.Equal(b2.Prompts, want) {
		t.Errorf("the second browser's authorization answered the prompts %q, want %q", b2.Prompts, want)
	}

	revokeRefreshToken(t, srv, first.RefreshToken)

	if got := refresh(t, srv, first.RefreshToken); got.status != http.StatusBadRequest || got.Error != "invalid_grant" {
		t.Errorf("refreshing with the revoked refresh token answered %d %q, want 400 invalid_grant", got.status, got.Error)
	}
	if got := refresh(t, srv, second.RefreshToken); got.status != http.StatusOK || got.RefreshToken == "" {
		t.Errorf("refreshing with the other session's refresh token answered %d %q, want 200 with a refresh token", got.status, got.Error)
	}
}

// Start's cleanup stops the server.
func TestStartStops(t *testing.T) {
	childproc.CheckStopsWithTest(t, func(t *testing.T) string {
		srv := oidcprovider.Start(t, options(nil))
		for _, e := range []string{srv.AuthorizationEndpoint, srv.TokenEndpoint, srv.RevocationEndpoint} {
			if !strings.HasPrefix(e, srv.Issuer+"/") {
				t.Errorf("endpoint %q is not under the issuer %q", e, srv.Issuer)
			}
		}
		return srv.Issuer
	})
}

// Without Node.js the server fails the test, naming how to install it.
func TestMissingNodeFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	failures.Want(t, func(tb testing.TB) { oidcprovider.Start(tb, options(nil)) }, "install nodejs and npm", "run 'make tools'")
}

// Authorize fails with the server's reason, and without the request's
// query (its state), when no redirect to a redirect URI comes.
func TestAuthorizeFailure(t *testing.T) {
	srv := oidcprovider.Start(t, options(nil))
	for _, tc := range []struct {
		name  string
		param string
		value string
		want  string
	}{
		{"unregistered redirect_uri", "redirect_uri", "http://127.0.0.1:9/elsewhere", "GET /auth answered 400 Bad Request: oidc-provider error invalid_redirect_uri: redirect_uri did not match any of the client's registered redirect_uris"},
		{"unknown client", "client_id", "someone-else", "GET /auth answered 400 Bad Request: oidc-provider error invalid_client: client is invalid"},
		{"server gone", "", "", "/auth: dial tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuthorization()
			u, err := url.Parse(a.url(srv))
			if err != nil {
				t.Fatal(err)
			}
			if tc.param != "" {
				q := u.Query()
				q.Set(tc.param, tc.value)
				u.RawQuery = q.Encode()
			} else {
				ports, err := childproc.FreePorts(1) // nothing listens there
				if err != nil {
					t.Fatal(err)
				}
				u.Host = "127.0.0.1:" + strconv.Itoa(ports[0])
			}
			var redirect *url.URL
			msg := strings.Join(failures.Of(t, func(tb testing.TB) { redirect = srv.NewBrowser().Authorize(tb, u.String()) }), "\n")
			if redirect != nil {
				t.Errorf("Authorize returned a redirect")
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("Authorize failed with %q, want it to say %q", msg, tc.want)
			}
			if strings.Contains(msg, a.state) {
				t.Errorf("Authorize's failure names the state")
			}
		})
	}
}
