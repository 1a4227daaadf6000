package oauthserver_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
)

// The protocol, run on providertest's test server for its recording and
// its logcheck registration (an external test package may import a package
// that imports the one under test).

const redirectURI = "https://broker.example/callback/acme?tenant=t1"

// A secret with characters that HTTP Basic must form-urlencode (RFC 6749 §2.3.1).
const clientSecret = "s3cr:t+/=%&é"

func baseConfig(auth, req string) providertest.Config {
	return providertest.Config{
		ClientID:       "client-1",
		ClientSecret:   clientSecret,
		RedirectURI:    redirectURI,
		ClientAuth:     auth,
		TokenRequest:   req,
		RequirePKCE:    true,
		Scopes:         []string{"read", "write", "admin"},
		AccessTokenTTL: time.Hour,
		Issuer:         "https://provider.example",
		ExtraResponse:  map[string]any{"user_id": "U123"},
	}
}

func newPKCE(t *testing.T) (verifier, challenge string) {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authURL builds an authorization request; extra overrides or (with "")
// removes parameters.
func authURL(s *providertest.Server, cfg providertest.Config, challenge string, extra map[string]string) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {cfg.ClientID},
		"redirect_uri":          {cfg.RedirectURI},
		"scope":                 {"read write"},
		"state":                 {"state-123"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	if challenge == "" {
		delete(q, "code_challenge")
		delete(q, "code_challenge_method")
	}
	for k, v := range extra {
		if v == "" {
			delete(q, k)
		} else {
			q.Set(k, v)
		}
	}
	return s.AuthorizeURL() + "?" + q.Encode()
}

// tokenRequest sends params the way cfg says, adding client authentication.
func tokenRequest(t *testing.T, s *providertest.Server, cfg providertest.Config, params url.Values) providertest.Reply {
	t.Helper()
	params = cloneValues(params)
	if cfg.ClientAuth == providertest.AuthBody {
		params.Set("client_id", cfg.ClientID)
		params.Set("client_secret", cfg.ClientSecret)
	}
	var req *http.Request
	var err error
	switch cfg.TokenRequest {
	case providertest.RequestForm:
		req, err = http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(params.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case providertest.RequestJSON:
		m := map[string]string{}
		for k := range params {
			m[k] = params.Get(k)
		}
		b, _ := json.Marshal(m)
		req, err = http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
	case providertest.RequestQuery:
		req, err = http.NewRequest(http.MethodGet, s.TokenURL()+"?"+params.Encode(), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth == providertest.AuthBasic {
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	}
	return providertest.Do(t, req)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// obtainCode runs the authorization step and returns code and verifier.
func obtainCode(t *testing.T, s *providertest.Server, cfg providertest.Config) (code, verifier string) {
	t.Helper()
	verifier, challenge := newPKCE(t)
	loc := s.Authorize(t, authURL(s, cfg, challenge, nil))
	code = loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code, verifier
}

func codeParams(code, verifier string) url.Values {
	return url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	}
}

func wantError(t *testing.T, r providertest.Reply, status int, code string) {
	t.Helper()
	if r.Status != status || r.Str("error") != code {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
	if r.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("error response headers %v", r.Header)
	}
	if strings.Contains(string(r.Raw), clientSecret) || strings.Contains(string(r.Raw), url.QueryEscape(clientSecret)) {
		t.Fatalf("the error echoes the client secret: %s", r.Raw)
	}
}

func TestCodeFlowEveryClientAuthAndEncoding(t *testing.T) {
	for _, auth := range []string{providertest.AuthBasic, providertest.AuthBody} {
		for _, enc := range []string{providertest.RequestForm, providertest.RequestJSON, providertest.RequestQuery} {
			t.Run(auth+"/"+enc, func(t *testing.T) {
				t.Parallel()
				cfg := baseConfig(auth, enc)
				s := providertest.New(t, cfg)

				// Authorization: 302 to the registered URI, its query kept.
				verifier, challenge := newPKCE(t)
				loc := s.Authorize(t, authURL(s, cfg, challenge, nil))
				if got := loc.Scheme + "://" + loc.Host + loc.Path; got != "https://broker.example/callback/acme" {
					t.Fatalf("redirected to %s", loc)
				}
				q := loc.Query()
				if q.Get("tenant") != "t1" || q.Get("state") != "state-123" || q.Get("iss") != "https://provider.example" || q.Get("code") == "" {
					t.Fatalf("redirect query %v", q)
				}

				// Code redemption.
				r := tokenRequest(t, s, cfg, codeParams(q.Get("code"), verifier))
				if r.Status != 200 {
					t.Fatalf("token: %s", r)
				}
				if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Pragma") != "no-cache" {
					t.Errorf("token response headers %v", r.Header)
				}
				at, rt := r.Str("access_token"), r.Str("refresh_token")
				if at == "" || rt == "" || r.Str("token_type") != "Bearer" || r.Body["expires_in"] != float64(3600) ||
					r.Str("scope") != "read write" || r.Str("user_id") != "U123" {
					t.Fatalf("token response %s", r.Raw)
				}
				if !s.Issued(at) || !s.Valid(at) || !s.ValidRefresh(rt) {
					t.Fatal("issued token not known as valid")
				}

				// The recorded request has the configured shape.
				reqs := s.Requests()
				last := reqs[len(reqs)-1]
				wantMethod := map[string]string{"form": "POST", "json": "POST", "query": "GET"}[enc]
				if last.Path != "/token" || last.Method != wantMethod || last.Params.Get("code") != q.Get("code") || last.Status != 200 {
					t.Fatalf("recorded %v %v", last, last.Params)
				}
				if (auth == providertest.AuthBasic) != (last.Header.Get("Authorization") != "") {
					t.Fatalf("Authorization header %q with %s", last.Header.Get("Authorization"), auth)
				}

				// The token works at the resource.
				req, _ := http.NewRequest(http.MethodGet, s.ResourceURL(), nil)
				req.Header.Set("Authorization", "Bearer "+at)
				if res := providertest.Do(t, req); res.Status != 200 || res.Str("scope") != "read write" {
					t.Fatalf("resource: %s", res)
				}

				// Refresh without rotation: new access token, no new refresh token.
				r2 := tokenRequest(t, s, cfg, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read"}})
				if r2.Status != 200 || r2.Str("access_token") == "" || r2.Str("access_token") == at || r2.Body["refresh_token"] != nil || r2.Str("scope") != "read" {
					t.Fatalf("refresh: %s", r2)
				}
				if !s.ValidRefresh(rt) {
					t.Fatal("refresh token gone without rotation")
				}

				// Client credentials: no refresh token (RFC 6749 §4.4.3).
				r3 := tokenRequest(t, s, cfg, url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}})
				if r3.Status != 200 || r3.Str("access_token") == "" || r3.Body["refresh_token"] != nil || r3.Str("scope") != "admin" {
					t.Fatalf("client_credentials: %s", r3)
				}
				if s.TokenRequests() != 3 {
					t.Fatalf("TokenRequests = %d", s.TokenRequests())
				}
				creds := s.Credentials()
				for _, c := range []string{clientSecret, q.Get("code"), at, rt, r2.Str("access_token"), r3.Str("access_token")} {
					if !slices.Contains(creds, c) {
						t.Errorf("Credentials lacks %q", c)
					}
				}
			})
		}
	}
}

func TestTokenRejections(t *testing.T) {
	basicForm := baseConfig(providertest.AuthBasic, providertest.RequestForm)
	bodyForm := baseConfig(providertest.AuthBody, providertest.RequestForm)
	s := providertest.New(t, basicForm)
	sb := providertest.New(t, bodyForm)

	post := func(srv *providertest.Server, contentType, body string, mutate func(*http.Request)) providertest.Reply {
		req, _ := http.NewRequest(http.MethodPost, srv.TokenURL(), strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if mutate != nil {
			mutate(req)
		}
		return providertest.Do(t, req)
	}
	basic := func(req *http.Request) { req.SetBasicAuth("client-1", url.QueryEscape(clientSecret)) }
	code, verifier := obtainCode(t, s, basicForm)
	good := codeParams(code, verifier).Encode()

	t.Run("wrong method", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.TokenURL()+"?"+good, nil)
		basic(req)
		wantError(t, providertest.Do(t, req), 405, "invalid_request")
	})
	t.Run("wrong content type", func(t *testing.T) {
		b, _ := json.Marshal(map[string]string{"grant_type": "authorization_code", "code": code})
		wantError(t, post(s, "application/json", string(b), basic), 400, "invalid_request")
		wantError(t, post(s, "", good, basic), 400, "invalid_request")
	})
	t.Run("parameters in the URL of a POST", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, s.TokenURL()+"?code="+code, strings.NewReader(good))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		basic(req)
		wantError(t, providertest.Do(t, req), 400, "invalid_request")
	})
	t.Run("secret in the body with basic", func(t *testing.T) {
		wantError(t, post(s, "application/x-www-form-urlencoded", good+"&client_secret="+url.QueryEscape(clientSecret), basic), 400, "invalid_request")
	})
	t.Run("no client authentication", func(t *testing.T) {
		r := post(s, "application/x-www-form-urlencoded", good+"&client_id=client-1", nil)
		wantError(t, r, 401, "invalid_client")
		if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic") {
			t.Fatalf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("secret not form-encoded in basic", func(t *testing.T) {
		r := post(s, "application/x-www-form-urlencoded", good, func(req *http.Request) { req.SetBasicAuth("client-1", clientSecret) })
		wantError(t, r, 401, "invalid_client")
	})
	t.Run("wrong secret", func(t *testing.T) {
		wantError(t, post(s, "application/x-www-form-urlencoded", good, func(req *http.Request) { req.SetBasicAuth("client-1", "nope") }), 401, "invalid_client")
	})
	t.Run("Authorization header with body auth", func(t *testing.T) {
		p := url.Values{"grant_type": {"client_credentials"}, "client_id": {"client-1"}, "client_secret": {clientSecret}}
		wantError(t, post(sb, "application/x-www-form-urlencoded", p.Encode(), basic), 400, "invalid_request")
		p.Set("client_secret", "nope")
		wantError(t, post(sb, "application/x-www-form-urlencoded", p.Encode(), nil), 401, "invalid_client")
	})
	t.Run("repeated parameter", func(t *testing.T) {
		wantError(t, post(s, "application/x-www-form-urlencoded", good+"&code="+code, basic), 400, "invalid_request")
	})
	t.Run("grant types", func(t *testing.T) {
		wantError(t, tokenRequest(t, s, basicForm, url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"p"}}), 400, "unsupported_grant_type")
		wantError(t, tokenRequest(t, s, basicForm, url.Values{"code": {code}}), 400, "invalid_request")
		wantError(t, tokenRequest(t, s, basicForm, url.Values{"grant_type": {"refresh_token"}}), 400, "invalid_request")
		wantError(t, tokenRequest(t, s, basicForm, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"ptr_made_up"}}), 400, "invalid_grant")
		wantError(t, tokenRequest(t, s, basicForm, url.Values{"grant_type": {"client_credentials"}, "scope": {"read root"}}), 400, "invalid_scope")
	})
	t.Run("bad verifier", func(t *testing.T) {
		c, v := obtainCode(t, s, basicForm)
		other, _ := newPKCE(t)
		wantError(t, tokenRequest(t, s, basicForm, codeParams(c, other)), 400, "invalid_grant")
		// A failed attempt uses the code up: the right verifier is too late.
		wantError(t, tokenRequest(t, s, basicForm, codeParams(c, v)), 400, "invalid_grant")
	})
	t.Run("missing verifier", func(t *testing.T) {
		c, _ := obtainCode(t, s, basicForm)
		p := codeParams(c, "")
		wantError(t, tokenRequest(t, s, basicForm, p), 400, "invalid_grant")
	})
	t.Run("verifier without challenge", func(t *testing.T) {
		cfg := basicForm
		cfg.RequirePKCE = false
		s2 := providertest.New(t, cfg)
		loc := s2.Authorize(t, authURL(s2, cfg, "", nil))
		v, _ := newPKCE(t)
		wantError(t, tokenRequest(t, s2, cfg, codeParams(loc.Query().Get("code"), v)), 400, "invalid_grant") // RFC 9700 §2.1.1
	})
	t.Run("wrong redirect_uri", func(t *testing.T) {
		for _, redirect := range []string{"", "https://broker.example/callback/acme", redirectURI + "/", "https://evil.example/callback/acme?tenant=t1"} {
			c, v := obtainCode(t, s, basicForm)
			p := codeParams(c, v)
			p.Set("redirect_uri", redirect)
			wantError(t, tokenRequest(t, s, basicForm, p), 400, "invalid_grant")
		}
	})
	t.Run("unknown code", func(t *testing.T) {
		_, v := obtainCode(t, s, basicForm)
		wantError(t, tokenRequest(t, s, basicForm, codeParams("ptc_madeup", v)), 400, "invalid_grant")
	})
	t.Run("expired code", func(t *testing.T) {
		cfg := basicForm
		clk := newClock()
		cfg.CodeTTL, cfg.Now = time.Minute, clk.Now
		s2 := providertest.New(t, cfg)
		c, v := obtainCode(t, s2, cfg)
		clk.Add(time.Minute)
		wantError(t, tokenRequest(t, s2, cfg, codeParams(c, v)), 400, "invalid_grant")
	})
	t.Run("reused code revokes its tokens", func(t *testing.T) {
		c, v := obtainCode(t, s, basicForm)
		first := tokenRequest(t, s, basicForm, codeParams(c, v))
		if first.Status != 200 {
			t.Fatalf("first redemption: %s", first)
		}
		at, rt := first.Str("access_token"), first.Str("refresh_token")
		wantError(t, tokenRequest(t, s, basicForm, codeParams(c, v)), 400, "invalid_grant")
		if s.Valid(at) || s.ValidRefresh(rt) || !s.Issued(at) {
			t.Fatal("tokens from a reused code still valid")
		}
		wantError(t, tokenRequest(t, s, basicForm, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}), 400, "invalid_grant")
	})
	t.Run("revoked refresh token", func(t *testing.T) {
		c, v := obtainCode(t, s, basicForm)
		rt := tokenRequest(t, s, basicForm, codeParams(c, v)).Str("refresh_token")
		s.RevokeRefresh(rt)
		wantError(t, tokenRequest(t, s, basicForm, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}), 400, "invalid_grant")
	})
	t.Run("refresh beyond the granted scope", func(t *testing.T) {
		c, v := obtainCode(t, s, basicForm)
		rt := tokenRequest(t, s, basicForm, codeParams(c, v)).Str("refresh_token")
		wantError(t, tokenRequest(t, s, basicForm, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read admin"}}), 400, "invalid_scope")
	})
}

func TestAuthorizeRejections(t *testing.T) {
	cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
	s := providertest.New(t, cfg)
	_, challenge := newPKCE(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// Never a redirect to an unregistered URI (RFC 6749 §4.1.2.1), and
	// nothing of the request echoed.
	var refused []string
	for _, extra := range []map[string]string{
		{"client_id": "client-2"},
		{"client_id": ""},
		{"redirect_uri": ""},
		{"redirect_uri": "https://evil.example/callback/acme?tenant=t1"},
		{"redirect_uri": "https://broker.example/callback/acme?tenant=t1&x=1"},
		{"redirect_uri": "https://broker.example/callback/acme/?tenant=t1"},
		{"redirect_uri": "https://broker.example/callback/acme/../evil?tenant=t1"},
		{"redirect_uri": "https://BROKER.example/callback/acme?tenant=t1"},
	} {
		refused = append(refused, authURL(s, cfg, challenge, extra))
	}
	refused = append(refused, authURL(s, cfg, challenge, nil)+"&redirect_uri=https%3A%2F%2Fevil.example%2F", // repeated
		s.AuthorizeURL()+"?state=%zz&client_id=evil") // malformed
	for _, u := range refused {
		resp, err := noRedirect.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || strings.Contains(string(body), "evil") {
			t.Errorf("%s: %d Location %q body %q", u, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}

	// Errors after the client is known go back to it (RFC 6749 §4.1.2.1).
	for _, tc := range []struct {
		name  string
		extra map[string]string
		want  string
	}{
		{"plain PKCE", map[string]string{"code_challenge_method": "plain"}, "invalid_request"},
		{"PKCE method missing", map[string]string{"code_challenge_method": ""}, "invalid_request"},
		{"PKCE missing", map[string]string{"code_challenge": "", "code_challenge_method": ""}, "invalid_request"},
		{"malformed challenge", map[string]string{"code_challenge": "short"}, "invalid_request"},
		{"unknown scope", map[string]string{"scope": "read root"}, "invalid_scope"},
		{"implicit", map[string]string{"response_type": "token"}, "unsupported_response_type"},
		{"no response_type", map[string]string{"response_type": ""}, "invalid_request"},
	} {
		loc := s.Authorize(t, authURL(s, cfg, challenge, tc.extra))
		if q := loc.Query(); q.Get("error") != tc.want || q.Get("state") != "state-123" || q.Get("code") != "" || loc.Host != "broker.example" {
			t.Errorf("%s: redirected to %s", tc.name, loc)
		}
	}
	// Without one usable state there is none to send back.
	for name, u := range map[string]string{
		"missing state":  authURL(s, cfg, challenge, map[string]string{"state": ""}),
		"repeated state": authURL(s, cfg, challenge, nil) + "&state=other",
		"state too long": authURL(s, cfg, challenge, map[string]string{"state": strings.Repeat("s", 1025)}),
	} {
		loc := s.Authorize(t, u)
		if q := loc.Query(); q.Get("error") != "invalid_request" || q.Has("state") || q.Has("code") {
			t.Errorf("%s: redirected to %s", name, loc)
		}
	}

	s.Deny(true)
	loc := s.Authorize(t, authURL(s, cfg, challenge, nil))
	if q := loc.Query(); q.Get("error") != "access_denied" || q.Get("error_description") == "" || q.Get("state") != "state-123" || q.Has("code") || q.Get("iss") != cfg.Issuer {
		t.Errorf("deny: redirected to %s", loc)
	}
	s.Deny(false)
	if loc := s.Authorize(t, authURL(s, cfg, challenge, nil)); !loc.Query().Has("code") {
		t.Errorf("after Deny(false): %s", loc)
	}

	resp, err := noRedirect.Post(s.AuthorizeURL(), "application/x-www-form-urlencoded", strings.NewReader("client_id=client-1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST /authorize: %d", resp.StatusCode)
	}
}

func TestRefreshRotationAndReplay(t *testing.T) {
	cfg := baseConfig(providertest.AuthBody, providertest.RequestJSON)
	cfg.RotateRefreshTokens = true
	cfg.AccessTokenTTL = 0
	s := providertest.New(t, cfg)
	code, verifier := obtainCode(t, s, cfg)
	first := tokenRequest(t, s, cfg, codeParams(code, verifier))
	if _, ok := first.Body["expires_in"]; ok || first.Status != 200 {
		t.Fatalf("with AccessTokenTTL 0: %s", first)
	}
	rt1 := first.Str("refresh_token")
	second := tokenRequest(t, s, cfg, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
	rt2 := second.Str("refresh_token")
	if second.Status != 200 || rt2 == "" || rt2 == rt1 || s.ValidRefresh(rt1) || !s.ValidRefresh(rt2) {
		t.Fatalf("rotation: %s", second)
	}
	// Replaying the old token revokes the grant (RFC 9700 §4.14.2).
	wantError(t, tokenRequest(t, s, cfg, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}}), 400, "invalid_grant")
	if s.ValidRefresh(rt2) || s.Valid(second.Str("access_token")) {
		t.Fatal("grant not revoked after a refresh token replay")
	}
}

func TestScopeParamSeparatorAndNarrowing(t *testing.T) {
	cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
	cfg.ScopeParam, cfg.ScopeSeparator = "scopes", ","
	cfg.GrantOnly = []string{"read"}
	s := providertest.New(t, cfg)
	v, c := newPKCE(t)
	loc := s.Authorize(t, authURL(s, cfg, c, map[string]string{"scope": "", "scopes": "read,write"}))
	r := tokenRequest(t, s, cfg, codeParams(loc.Query().Get("code"), v))
	if r.Status != 200 || r.Str("scope") != "read" {
		t.Fatalf("narrowed grant: %s", r)
	}
	loc = s.Authorize(t, authURL(s, cfg, c, map[string]string{"scope": "", "scopes": "read write"}))
	if loc.Query().Get("error") != "invalid_scope" {
		t.Fatalf("space-separated scopes with a comma separator: %s", loc)
	}
}

func TestFailNextAndDelay(t *testing.T) {
	cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
	s := providertest.New(t, cfg)
	cc := url.Values{"grant_type": {"client_credentials"}}

	s.FailNext(2, 429, "text/html", "<html>slow down</html>", http.Header{"Retry-After": {"7"}})
	for range 2 {
		r := tokenRequest(t, s, cfg, cc)
		if r.Status != 429 || r.Header.Get("Retry-After") != "7" || r.Header.Get("Content-Type") != "text/html" || string(r.Raw) != "<html>slow down</html>" {
			t.Fatalf("injected failure: %s %v", r, r.Header)
		}
	}
	if r := tokenRequest(t, s, cfg, cc); r.Status != 200 {
		t.Fatalf("after injected failures: %s", r)
	}
	if n := s.TokenRequests(); n != 3 {
		t.Fatalf("TokenRequests = %d", n)
	}

	// A delayed request ends as soon as the client gives up.
	s.Delay(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.TokenURL(), strings.NewReader(cc.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("client-1", url.QueryEscape(clientSecret))
	start := time.Now()
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delayed request: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("delayed request took %v", d)
	}
	s.Delay(0)

	// A request still delayed when its test ends does not hold the test up.
	var sub *providertest.Server
	errc := make(chan error, 1)
	start = time.Now()
	t.Run("server closed under a delayed request", func(t *testing.T) {
		sub = providertest.New(t, cfg)
		sub.Delay(time.Minute)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, sub.TokenURL(), strings.NewReader(cc.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			_, err := http.DefaultClient.Do(req)
			errc <- err
		}()
		for sub.TokenRequests() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	})
	if err := <-errc; err == nil {
		t.Fatal("delayed request answered after the server closed")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closing took %v", d)
	}
}

func TestConcurrentRedemptionsOfOneCode(t *testing.T) {
	cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
	s := providertest.New(t, cfg)
	code, verifier := obtainCode(t, s, cfg)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var statuses []int
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := tokenRequest(t, s, cfg, codeParams(code, verifier))
			mu.Lock()
			statuses = append(statuses, r.Status)
			mu.Unlock()
			_ = s.Requests()
		}()
	}
	wg.Wait()
	ok := 0
	for _, st := range statuses {
		if st == 200 {
			ok++
		}
	}
	if ok != 1 || s.TokenRequests() != 8 {
		t.Fatalf("statuses %v, token requests %d", statuses, s.TokenRequests())
	}
}

func TestRevokeAndResource(t *testing.T) {
	cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
	s := providertest.New(t, cfg)
	code, verifier := obtainCode(t, s, cfg)
	first := tokenRequest(t, s, cfg, codeParams(code, verifier))
	at, rt := first.Str("access_token"), first.Str("refresh_token")

	resource := func(h string) providertest.Reply {
		req, _ := http.NewRequest(http.MethodGet, s.ResourceURL(), nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		return providertest.Do(t, req)
	}
	if r := resource("bearer " + at); r.Status != 200 { // the scheme is case-insensitive
		t.Fatalf("resource: %s", r)
	}
	if r := resource(""); r.Status != 401 || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: %s %v", r, r.Header)
	}
	s.RevokeAccess(at)
	if r := resource("Bearer " + at); r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("revoked token: %s %v", r, r.Header)
	}

	revoke := func(token string, withAuth bool) int {
		req, _ := http.NewRequest(http.MethodPost, s.RevokeURL(), strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if withAuth {
			req.SetBasicAuth("client-1", url.QueryEscape(clientSecret))
		}
		return providertest.Do(t, req).Status
	}
	if st := revoke(rt, false); st != 401 {
		t.Fatalf("unauthenticated revoke: %d", st)
	}
	if !s.ValidRefresh(rt) {
		t.Fatal("refresh token revoked by an unauthenticated request")
	}
	if st := revoke(rt, true); st != 200 || s.ValidRefresh(rt) {
		t.Fatalf("revoke: %d, still valid %v", st, s.ValidRefresh(rt))
	}
	if st := revoke("unknown", true); st != 200 { // RFC 7009 §2.2
		t.Fatalf("revoking an unknown token: %d", st)
	}
}

// ---------------------------------------------------------------------------
// Config fields beyond RFC 6749 defaults

// newFails reports New's Fatalf message for cfg, "" if it accepted it.
func newFails(t *testing.T, cfg providertest.Config) string {
	t.Helper()
	return strings.Join(failures.Of(t, func(tb testing.TB) { providertest.New(tb, cfg) }), "\n")
}

func TestConfigValidation(t *testing.T) {
	ok := baseConfig(providertest.AuthBasic, providertest.RequestForm)
	for _, tc := range []struct {
		name   string
		mutate func(*providertest.Config)
		want   string // substring of the Fatalf message; "" if accepted
	}{
		{"base", func(*providertest.Config) {}, ""},
		{"no redirect_uri with code grant", func(c *providertest.Config) { c.RedirectURI = "" }, "RedirectURI"},
		{"relative redirect_uri", func(c *providertest.Config) { c.RedirectURI = "/callback/acme" }, "absolute"},
		{"consent page without code grant", func(c *providertest.Config) {
			c.ConsentPage = true
			c.GrantTypes = []string{"client_credentials"}
		}, "ConsentPage"},
		{"unreadable state file", func(c *providertest.Config) { c.StateFile = t.TempDir() }, "providertest"}, // a directory
		{"state file of something else", func(c *providertest.Config) {
			c.StateFile = filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(c.StateFile, []byte("not json"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "start afresh"},
		{"no redirect_uri, client credentials only", func(c *providertest.Config) {
			c.RedirectURI = ""
			c.GrantTypes = []string{"client_credentials"}
		}, ""},
		{"unknown grant type", func(c *providertest.Config) { c.GrantTypes = []string{"password"} }, "not implemented"},
		{"default grant not accepted", func(c *providertest.Config) {
			c.GrantTypes = []string{"client_credentials"}
			c.DefaultGrantType = "authorization_code"
		}, "DefaultGrantType"},
		{"AlsoAccept same as TokenRequest", func(c *providertest.Config) { c.AlsoAccept = providertest.RequestForm }, "AlsoAccept"},
		{"AlsoAccept unknown", func(c *providertest.Config) { c.AlsoAccept = "xml" }, "AlsoAccept"},
		{"echo with rotation", func(c *providertest.Config) {
			c.EchoRefreshToken = true
			c.RotateRefreshTokens = true
		}, "exclude"},
		{"rate limit without window", func(c *providertest.Config) { c.RateLimit = 5 }, "RateWindow"},
		{"rate window without limit", func(c *providertest.Config) { c.RateWindow = time.Second }, "RateWindow"},
		{"duplicate paths", func(c *providertest.Config) { c.TokenPath = "/authorize" }, "twice"},
		{"path without slash", func(c *providertest.Config) { c.TokenPath = "token" }, "endpoint path"},
		{"path with wildcard", func(c *providertest.Config) { c.TokenPath = "/{host}/token" }, "endpoint path"},
		{"path with trailing slash", func(c *providertest.Config) { c.TokenPath = "/token/" }, "endpoint path"},
		{"path not clean", func(c *providertest.Config) { c.TokenPath = "/a/../token" }, "endpoint path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mutate(&cfg)
			got := newFails(t, cfg)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("New: Fatalf %q, want one containing %q", got, tc.want)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		name                               string
		authorize, token, revoke, resource string
	}{
		{"defaults", "", "", "", ""},
		{"provider paths", "/app.example.com/oauth2/authorize", "/api.example.com/v3/token", "/api.example.com/v3/revoke", "/api.example.com/v3/token/info"},
		{"resource under token", "/a", "/oauth/token", "/r", "/oauth/token/info"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
			cfg.AuthorizePath, cfg.TokenPath, cfg.RevokePath, cfg.ResourcePath = tc.authorize, tc.token, tc.revoke, tc.resource
			s := providertest.New(t, cfg)
			or := func(p, def string) string {
				if p == "" {
					return def
				}
				return p
			}
			for got, want := range map[string]string{
				s.AuthorizeURL(): s.URL + or(tc.authorize, "/authorize"),
				s.TokenURL():     s.URL + or(tc.token, "/token"),
				s.RevokeURL():    s.URL + or(tc.revoke, "/revoke"),
				s.ResourceURL():  s.URL + or(tc.resource, "/resource"),
			} {
				if got != want {
					t.Errorf("URL %q, want %q", got, want)
				}
			}
			code, verifier := obtainCode(t, s, cfg)
			r := tokenRequest(t, s, cfg, codeParams(code, verifier))
			if r.Status != 200 {
				t.Fatalf("token at %s: %s", s.TokenURL(), r)
			}
			req, _ := http.NewRequest(http.MethodGet, s.ResourceURL(), nil)
			req.Header.Set("Authorization", "Bearer "+r.Str("access_token"))
			if res := providertest.Do(t, req); res.Status != 200 {
				t.Fatalf("resource at %s: %s", s.ResourceURL(), res)
			}
			if rec := s.Requests(); rec[len(rec)-1].Path != or(tc.resource, "/resource") {
				t.Fatalf("recorded path %q", rec[len(rec)-1].Path)
			}
			if tc.token != "" {
				// Nothing is served at the default paths any more.
				req, _ := http.NewRequest(http.MethodPost, s.URL+"/token", strings.NewReader("grant_type=client_credentials"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("client-1", url.QueryEscape(clientSecret))
				if res := providertest.Do(t, req); res.Status != 404 {
					t.Fatalf("default /token still served: %s", res)
				}
			}
		})
	}
}

func TestRedirectURIOptional(t *testing.T) {
	const other = "https://broker.example/callback/other"
	for _, tc := range []struct {
		name      string
		optional  bool
		authorize string // redirect_uri in the authorization request; "" omits it
		token     string // redirect_uri in the token request; "" omits it
		status    int    // authorization answer
		want      string // token error code; "" for success
	}{
		{"required, sent, same", false, redirectURI, redirectURI, 302, ""},
		{"required, omitted", false, "", "", 400, ""},
		{"optional, sent, same", true, redirectURI, redirectURI, 302, ""},
		{"optional, sent, omitted at token", true, redirectURI, "", 302, "invalid_grant"},
		{"optional, sent, other at token", true, redirectURI, other, 302, "invalid_grant"},
		{"optional, sent unregistered", true, other, "", 400, ""},
		{"optional, omitted, omitted at token", true, "", "", 302, ""},
		{"optional, omitted, registered at token", true, "", redirectURI, 302, ""},
		{"optional, omitted, other at token", true, "", other, 302, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
			cfg.RequirePKCE = false
			cfg.RedirectURIOptional = tc.optional
			s := providertest.New(t, cfg)
			u := authURL(s, cfg, "", map[string]string{"redirect_uri": tc.authorize})
			noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noRedirect.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("authorize: %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 302 {
				return
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != "https://broker.example/callback/acme" || loc.Query().Get("tenant") != "t1" {
				t.Fatalf("redirected to %s", loc)
			}
			p := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}}
			if tc.token != "" {
				p.Set("redirect_uri", tc.token)
			}
			r := tokenRequest(t, s, cfg, p)
			if tc.want == "" {
				if r.Status != 200 {
					t.Fatalf("token: %s", r)
				}
				return
			}
			wantError(t, r, 400, tc.want)
		})
	}
}

// rawToken sends a token request with the given method, content type and
// body, authenticated with HTTP Basic (which replaces any Authorization in
// header).
func rawToken(t *testing.T, s *providertest.Server, method, contentType, query, body string, header http.Header) providertest.Reply {
	t.Helper()
	u := s.TokenURL()
	if query != "" {
		u += "?" + query
	}
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("client-1:"+url.QueryEscape(clientSecret))))
	return providertest.Send(t, method, u, contentType, body, h)
}

func TestAlsoAccept(t *testing.T) {
	const form = "grant_type=client_credentials"
	const jsonBody = `{"grant_type":"client_credentials"}`
	for _, tc := range []struct {
		name          string
		primary, also string
		method, ct    string
		query, body   string
		status        int
		want          string
	}{
		{"json+form: json", "json", "form", "POST", "application/json", "", jsonBody, 200, ""},
		{"json+form: form", "json", "form", "POST", "application/x-www-form-urlencoded", "", form, 200, ""},
		{"json+form: form with charset", "json", "form", "POST", "application/x-www-form-urlencoded; charset=utf-8", "", form, 200, ""},
		{"json+form: text", "json", "form", "POST", "text/plain", "", form, 400, "invalid_request"},
		{"json+form: GET", "json", "form", "GET", "", form, "", 405, "invalid_request"},
		{"json+form: form body labelled JSON", "json", "form", "POST", "application/json", "", form, 400, "invalid_request"},
		{"json only: form", "json", "", "POST", "application/x-www-form-urlencoded", "", form, 400, "invalid_request"},
		{"form+query: GET", "form", "query", "GET", "", form, "", 200, ""},
		{"form+query: POST", "form", "query", "POST", "application/x-www-form-urlencoded", "", form, 200, ""},
		{"form+query: POST JSON", "form", "query", "POST", "application/json", "", jsonBody, 400, "invalid_request"},
		{"query+json: POST JSON", "query", "json", "POST", "application/json", "", jsonBody, 200, ""},
		{"query+json: POST form", "query", "json", "POST", "application/x-www-form-urlencoded", "", form, 400, "invalid_request"},
		{"query only: POST", "query", "", "POST", "application/x-www-form-urlencoded", "", form, 405, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(providertest.AuthBasic, tc.primary)
			cfg.AlsoAccept = tc.also
			s := providertest.New(t, cfg)
			r := rawToken(t, s, tc.method, tc.ct, tc.query, tc.body, nil)
			if tc.want == "" {
				if r.Status != tc.status || r.Str("access_token") == "" {
					t.Fatalf("got %s, want %d with a token", r, tc.status)
				}
				return
			}
			wantError(t, r, tc.status, tc.want)
		})
	}
}

func TestCreatedAt(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			cfg := baseConfig(providertest.AuthBody, providertest.RequestJSON)
			cfg.CreatedAt = on
			cfg.RotateRefreshTokens = true
			s := providertest.New(t, cfg)
			before := time.Now().Unix()
			code, verifier := obtainCode(t, s, cfg)
			first := tokenRequest(t, s, cfg, codeParams(code, verifier))
			second := tokenRequest(t, s, cfg, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.Str("refresh_token")}})
			third := tokenRequest(t, s, cfg, url.Values{"grant_type": {"client_credentials"}})
			after := time.Now().Unix()
			for _, r := range []providertest.Reply{first, second, third} {
				if r.Status != 200 {
					t.Fatalf("token: %s", r)
				}
				v, has := r.Body["created_at"]
				if has != on {
					t.Fatalf("created_at present %v, want %v: %s", has, on, r)
				}
				if !on {
					continue
				}
				// A JSON integer of Unix seconds, not a string or a float.
				n, ok := v.(float64)
				if !ok || n != float64(int64(n)) || int64(n) < before || int64(n) > after {
					t.Fatalf("created_at %v not in [%d, %d]: %s", v, before, after, r)
				}
			}
		})
	}
}

func TestEchoRefreshToken(t *testing.T) {
	for _, tc := range []struct {
		name         string
		echo, rotate bool
	}{
		{"neither", false, false},
		{"echo", true, false},
		{"rotate", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
			cfg.EchoRefreshToken, cfg.RotateRefreshTokens = tc.echo, tc.rotate
			s := providertest.New(t, cfg)
			code, verifier := obtainCode(t, s, cfg)
			rt := tokenRequest(t, s, cfg, codeParams(code, verifier)).Str("refresh_token")
			for i := range 2 { // the echoed token keeps working
				r := tokenRequest(t, s, cfg, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
				if r.Status != 200 {
					t.Fatalf("refresh %d: %s", i, r)
				}
				got, has := r.Body["refresh_token"]
				switch {
				case tc.echo && got != rt:
					t.Fatalf("refresh %d: refresh_token %v, want the presented %q", i, got, rt)
				case tc.rotate && (r.Str("refresh_token") == "" || got == rt):
					t.Fatalf("refresh %d: refresh_token %v, want a new one", i, got)
				case !tc.echo && !tc.rotate && has:
					t.Fatalf("refresh %d: refresh_token %v without rotation or echo", i, got)
				}
				if tc.rotate {
					rt = r.Str("refresh_token")
				}
			}
			if !s.ValidRefresh(rt) {
				t.Fatal("last refresh token not valid")
			}
		})
	}
}

func TestRequireHeaders(t *testing.T) {
	cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
	cfg.RequireHeaders = map[string]string{"x-domain": "mail.example.com"}
	s := providertest.New(t, cfg)
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
		want   string
	}{
		{"present", http.Header{"X-Domain": {"mail.example.com"}}, 200, ""},
		{"missing", nil, 400, "invalid_request"},
		{"empty", http.Header{"X-Domain": {""}}, 400, "invalid_request"},
		{"other value", http.Header{"X-Domain": {"other.example.com"}}, 400, "invalid_request"},
		{"case differs", http.Header{"X-Domain": {"MAIL.example.com"}}, 400, "invalid_request"},
		{"repeated", http.Header{"X-Domain": {"mail.example.com", "mail.example.com"}}, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawToken(t, s, "POST", "application/x-www-form-urlencoded", "", "grant_type=client_credentials", tc.header)
			if tc.want == "" {
				if r.Status != tc.status || r.Str("access_token") == "" {
					t.Fatalf("got %s", r)
				}
				return
			}
			wantError(t, r, tc.status, tc.want)
		})
	}
}

func TestRateLimit(t *testing.T) {
	for _, tc := range []struct {
		name           string
		limit          int
		window         time.Duration
		minRA, maxRA   int // Retry-After bounds
		waitForNewWind bool
	}{
		{"five minutes", 3, 5 * time.Minute, 299, 300, false},
		{"sub-second window still says 1", 2, 400 * time.Millisecond, 1, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
			cfg.RateLimit, cfg.RateWindow = tc.limit, tc.window
			s := providertest.New(t, cfg)
			code, verifier := obtainCode(t, s, cfg)
			for i := range tc.limit {
				if r := tokenRequest(t, s, cfg, url.Values{"grant_type": {"client_credentials"}}); r.Status != 200 {
					t.Fatalf("request %d within the limit: %s", i, r)
				}
			}
			// Over the limit: 429, and the code it carried is not used up.
			s.FailNext(1, 500, "", "", nil)
			r := tokenRequest(t, s, cfg, codeParams(code, verifier))
			if r.Status != 429 || r.Str("error") == "" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("over the limit: %s %v", r, r.Header)
			}
			ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || ra < tc.minRA || ra > tc.maxRA {
				t.Fatalf("Retry-After %q, want %d..%d", r.Header.Get("Retry-After"), tc.minRA, tc.maxRA)
			}
			if n := s.TokenRequests(); n != tc.limit+1 {
				t.Fatalf("TokenRequests = %d, want %d", n, tc.limit+1)
			}
			if rec := s.Requests(); rec[len(rec)-1].Status != 429 {
				t.Fatalf("recorded %v", rec[len(rec)-1])
			}
			if !tc.waitForNewWind {
				return
			}
			time.Sleep(tc.window + 50*time.Millisecond)
			// A new window: the FailNext armed while limited still applies once,
			// then the code the limited request carried redeems.
			if r := tokenRequest(t, s, cfg, codeParams(code, verifier)); r.Status != 500 {
				t.Fatalf("FailNext after the window: %s", r)
			}
			if r := tokenRequest(t, s, cfg, codeParams(code, verifier)); r.Status != 200 {
				t.Fatalf("code after the window: %s", r)
			}
		})
	}
}

func TestGrantTypes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		grants []string
		def    string
		send   string // grant_type sent; "" omits it
		want   string // error code; "" for success
	}{
		{"nil allows code", nil, "", "authorization_code", ""},
		{"nil allows client_credentials", nil, "", "client_credentials", ""},
		{"nil still needs grant_type", nil, "", "", "invalid_request"},
		{"code only refuses refresh", []string{"authorization_code"}, "", "refresh_token", "unsupported_grant_type"},
		{"code only refuses client_credentials", []string{"authorization_code"}, "", "client_credentials", "unsupported_grant_type"},
		{"code only allows code", []string{"authorization_code"}, "", "authorization_code", ""},
		{"client_credentials only refuses code", []string{"client_credentials"}, "", "authorization_code", "unsupported_grant_type"},
		{"client_credentials only allows it", []string{"client_credentials"}, "", "client_credentials", ""},
		{"unknown grant", []string{"authorization_code"}, "", "password", "unsupported_grant_type"},
		{"default used when absent", []string{"authorization_code"}, "authorization_code", "", ""},
		{"default does not replace a sent one", []string{"authorization_code"}, "authorization_code", "client_credentials", "unsupported_grant_type"},
		{"empty list refuses all", []string{}, "", "client_credentials", "unsupported_grant_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(providertest.AuthBody, providertest.RequestForm)
			cfg.GrantTypes, cfg.DefaultGrantType = tc.grants, tc.def
			s := providertest.New(t, cfg)
			p := url.Values{}
			if tc.send != "" {
				p.Set("grant_type", tc.send)
			}
			switch tc.send {
			case "authorization_code", "":
				if cfg.GrantTypes == nil || slices.Contains(cfg.GrantTypes, "authorization_code") {
					code, verifier := obtainCode(t, s, cfg)
					p.Set("code", code)
					p.Set("redirect_uri", redirectURI)
					p.Set("code_verifier", verifier)
				}
			case "refresh_token":
				p.Set("refresh_token", "ptr_unknown")
			}
			r := tokenRequest(t, s, cfg, p)
			if tc.want == "" {
				if r.Status != 200 || r.Str("access_token") == "" {
					t.Fatalf("got %s", r)
				}
				return
			}
			wantError(t, r, 400, tc.want)
		})
	}

	// Without the code grant there is no authorization endpoint.
	cfg := baseConfig(providertest.AuthBody, providertest.RequestForm)
	cfg.GrantTypes, cfg.RedirectURI = []string{"client_credentials"}, ""
	s := providertest.New(t, cfg)
	resp, err := http.Get(authURL(s, cfg, "", nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("authorization endpoint without the code grant: %d", resp.StatusCode)
	}
}

func TestExtraResponseNullAndOverride(t *testing.T) {
	cfg := baseConfig(providertest.AuthBasic, providertest.RequestForm)
	cfg.AccessTokenTTL = 0 // never expires...
	cfg.ExtraResponse = map[string]any{"scope": nil, "expires_in": int64(9223372036), "token_type": "bearer"}
	s := providertest.New(t, cfg)
	code, verifier := obtainCode(t, s, cfg)
	r := tokenRequest(t, s, cfg, codeParams(code, verifier))
	if r.Status != 200 {
		t.Fatalf("token: %s", r)
	}
	// ...yet says 9223372036 seconds, and scope is JSON null, not absent.
	if !strings.Contains(string(r.Raw), `"scope":null`) || !strings.Contains(string(r.Raw), `"expires_in":9223372036`) || r.Str("token_type") != "bearer" {
		t.Fatalf("token response %s", r.Raw)
	}
	if v, has := r.Body["scope"]; !has || v != nil {
		t.Fatalf("scope %v present %v", v, has)
	}
	if !s.Valid(r.Str("access_token")) {
		t.Fatal("token not valid")
	}
}
