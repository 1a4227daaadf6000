package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

const (
	testClientID = "sandbox-client"
	// The secret has characters that RFC 6749 §2.3.1 form-encodes before
	// HTTP Basic, so the test proves the server decodes them.
	testSecret   = "s3cr:t+/=&é"
	testRedirect = "http://app.localhost:9999/callback/sandbox"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t       *testing.T
	cfg     Config
	handler atomic.Pointer[http.Handler] // the running sandbox; restart replaces it
	srv     *httptest.Server
	clock   *clock
	hc      *http.Client // does not follow redirects
	conf    *oauth2.Config
}

func newFixture(t *testing.T) *fixture { return newFixtureWithFile(t, "") }

// newFixtureWithFile runs a sandbox that keeps its state in stateFile
// ("" for memory only).
func newFixtureWithFile(t *testing.T, stateFile string) *fixture {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	logcheck.Register(testSecret)
	f := &fixture{
		t:     t,
		cfg:   Config{ClientID: testClientID, ClientSecret: testSecret, RedirectURI: testRedirect, StateFile: stateFile, Now: clk.Now},
		clock: clk,
		hc: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
	f.restart()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*f.handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	f.conf = &oauth2.Config{
		ClientID:     testClientID,
		ClientSecret: testSecret,
		RedirectURL:  testRedirect,
		Scopes:       []string{"profile", "email"},
		Endpoint: oauth2.Endpoint{
			AuthURL:   f.srv.URL + "/sandbox/authorize",
			TokenURL:  f.srv.URL + "/sandbox/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}
	return f
}

// restart replaces the running sandbox with a new one of the same
// configuration, as a restart of its process would.
func (f *fixture) restart() {
	f.t.Helper()
	sb, err := New(f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	h := sb.Handler()
	f.handler.Store(&h)
}

func (f *fixture) get(u string, header ...string) (*http.Response, string) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return f.do(req)
}

func (f *fixture) do(req *http.Request) (*http.Response, string) {
	f.t.Helper()
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	registerIssued(resp, b)
	return resp, string(b)
}

// registerIssued registers the codes and tokens in a sandbox answer with
// logcheck (S22).
func registerIssued(resp *http.Response, body []byte) {
	if loc, err := resp.Location(); err == nil {
		logcheck.Register(loc.Query().Get("code"))
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if json.Unmarshal(body, &tok) == nil {
		logcheck.Register(tok.AccessToken, tok.RefreshToken)
	}
}

var requestIDRE = regexp.MustCompile(`name="request" value="([^"]+)"`)

// consent opens the authorization URL and returns the consent page's
// request id.
func (f *fixture) consent(authURL string) string {
	f.t.Helper()
	resp, body := f.get(authURL)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("authorize: %d %s", resp.StatusCode, body)
	}
	m := requestIDRE.FindStringSubmatch(body)
	if m == nil {
		f.t.Fatalf("no request id in consent page:\n%s", body)
	}
	return html.UnescapeString(m[1])
}

// decide posts the consent form and returns the redirect's query.
func (f *fixture) decide(id, decision string) url.Values {
	f.t.Helper()
	resp, body := f.post("/sandbox/decide", url.Values{"request": {id}, "decision": {decision}})
	if resp.StatusCode != http.StatusFound {
		f.t.Fatalf("decide: %d %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), testRedirect+"?") {
		f.t.Fatalf("decide redirected to %q", resp.Header.Get("Location"))
	}
	return loc.Query()
}

func (f *fixture) post(path string, form url.Values) (*http.Response, string) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return f.do(req)
}

// tokenRaw posts to the token endpoint with §2.3.1 Basic authentication.
func (f *fixture) tokenRaw(form url.Values) (int, map[string]any, http.Header) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/sandbox/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(testClientID), url.QueryEscape(testSecret))
	resp, body := f.do(req)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		f.t.Fatalf("token response is not JSON: %q", body)
	}
	return resp.StatusCode, m, resp.Header
}

// exchange redeems code with verifier for the registered redirect URI.
func (f *fixture) exchange(code, verifier string) (int, map[string]any, http.Header) {
	f.t.Helper()
	return f.tokenRaw(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {verifier}})
}

// approvedCode runs authorize + approve and returns a code for verifier.
func (f *fixture) approvedCode(verifier string) string {
	f.t.Helper()
	q := f.decide(f.consent(f.conf.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier))), "approve")
	if q.Get("state") != "st-1" || q.Get("code") == "" {
		f.t.Fatalf("approve query %v", q)
	}
	return q.Get("code")
}

func wantOAuthError(t *testing.T, status int, m map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || m["error"] != wantCode {
		t.Fatalf("got %d %v, want %d error=%s", status, m, wantStatus, wantCode)
	}
}

func (f *fixture) userinfo(accessToken string) int {
	f.t.Helper()
	resp, _ := f.get(f.srv.URL+"/sandbox/userinfo", "Authorization", "Bearer "+accessToken)
	return resp.StatusCode
}

func TestFullFlowWithOAuth2Client(t *testing.T) {
	f := newFixture(t)
	verifier := oauth2.GenerateVerifier()
	authURL := f.conf.AuthCodeURL("state-123", oauth2.S256ChallengeOption(verifier))

	resp, body := f.get(authURL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"Sandbox provider — dev only", "DEV ONLY", "app.localhost:9999", "<code>profile</code>", "<code>email</code>", ">Approve</button>", ">Deny</button>", `action="/sandbox/decide"`} {
		if !strings.Contains(body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(body, "state-123") || strings.Contains(body, "code_challenge") {
		t.Error("consent page carries request parameters; it must carry only the request id")
	}
	csp := resp.Header.Get("Content-Security-Policy")
	sum := sha256.Sum256([]byte(pageStyle))
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") ||
		!strings.Contains(csp, "form-action 'self' http://app.localhost:9999") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
	if !strings.Contains(body, "<style>"+pageStyle+"</style>") {
		t.Error("the page style differs from the hashed one")
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
		if resp.Header.Get(k) != want {
			t.Errorf("%s = %q", k, resp.Header.Get(k))
		}
	}

	q := f.decide(requestIDRE.FindStringSubmatch(body)[1], "approve")
	if q.Get("state") != "state-123" || !strings.HasPrefix(q.Get("code"), "sandbox_code_") {
		t.Fatalf("callback query: state %q, code with prefix sandbox_code_ %v", q.Get("state"), strings.HasPrefix(q.Get("code"), "sandbox_code_"))
	}

	tok, err := f.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	logcheck.Register(tok.AccessToken, tok.RefreshToken)
	if tok.TokenType != "Bearer" || tok.RefreshToken == "" || tok.AccessToken == "" {
		t.Fatalf("token type %q, refresh token %d bytes, access token %d bytes", tok.TokenType, len(tok.RefreshToken), len(tok.AccessToken))
	}
	if got := tok.Expiry.Sub(time.Now()); got < DefaultAccessTokenTTL-10*time.Second || got > DefaultAccessTokenTTL {
		t.Errorf("expiry in %v, want about %v", got, DefaultAccessTokenTTL)
	}
	if s, _ := tok.Extra("scope").(string); s != "profile email" {
		t.Errorf("scope %q", s)
	}
	if f.userinfo(tok.AccessToken) != http.StatusOK {
		t.Error("the access token is not accepted at userinfo")
	}
	if f.userinfo("sandbox_at_forged") != http.StatusUnauthorized {
		t.Error("a forged access token is accepted")
	}

	// The access token expires with the sandbox clock.
	f.clock.Add(DefaultAccessTokenTTL)
	if f.userinfo(tok.AccessToken) != http.StatusUnauthorized {
		t.Error("an expired access token is accepted")
	}
}

func TestTokenResponseHeaders(t *testing.T) {
	f := newFixture(t)
	verifier := oauth2.GenerateVerifier()
	status, m, h := f.exchange(f.approvedCode(verifier), verifier)
	if status != http.StatusOK || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" ||
		!strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d headers %v", status, h)
	}
	if m["token_type"] != "Bearer" || m["expires_in"] != float64(120) || m["scope"] != "profile email" {
		t.Fatalf("response %v", m)
	}
	status, m, h = f.tokenRaw(url.Values{"grant_type": {"password"}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "unsupported_grant_type")
	if h.Get("Cache-Control") != "no-store" {
		t.Error("error response is cacheable")
	}
}

func TestPKCEMismatch(t *testing.T) {
	f := newFixture(t)
	verifier := oauth2.GenerateVerifier()
	code := f.approvedCode(verifier)
	status, m, _ := f.exchange(code, oauth2.GenerateVerifier())
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	// A failed attempt uses the code up: the right verifier is too late.
	status, m, _ = f.exchange(code, verifier)
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")

	// No verifier at all.
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"authorization_code"}, "code": {f.approvedCode(verifier)},
		"redirect_uri": {testRedirect}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
}

func TestCodeReuseRevokesTokens(t *testing.T) {
	f := newFixture(t)
	verifier := oauth2.GenerateVerifier()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {f.approvedCode(verifier)},
		"redirect_uri": {testRedirect}, "code_verifier": {verifier}}
	status, first, _ := f.tokenRaw(form)
	if status != http.StatusOK {
		t.Fatalf("first exchange: %d %v", status, first)
	}
	status, m, _ := f.tokenRaw(form)
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	if f.userinfo(first["access_token"].(string)) != http.StatusUnauthorized {
		t.Error("the access token issued for a reused code still works")
	}
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first["refresh_token"].(string)}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
}

func TestCodeExpires(t *testing.T) {
	f := newFixture(t)
	verifier := oauth2.GenerateVerifier()
	code := f.approvedCode(verifier)
	f.clock.Add(CodeTTL)
	status, m, _ := f.exchange(code, verifier)
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
}

func TestTokenWrongRedirectURI(t *testing.T) {
	f := newFixture(t)
	verifier := oauth2.GenerateVerifier()
	for _, redirect := range []string{"", testRedirect + "/", "http://evil.example/callback/sandbox"} {
		status, m, _ := f.tokenRaw(url.Values{"grant_type": {"authorization_code"}, "code": {f.approvedCode(verifier)},
			"redirect_uri": {redirect}, "code_verifier": {verifier}})
		wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	}
}

func TestAuthorizeRejects(t *testing.T) {
	f := newFixture(t)
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	good := url.Values{
		"response_type": {"code"}, "client_id": {testClientID}, "redirect_uri": {testRedirect},
		"state": {"st"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
	with := func(edit func(url.Values)) string {
		v := url.Values{}
		for k, x := range good {
			v[k] = append([]string(nil), x...)
		}
		edit(v)
		return f.srv.URL + "/sandbox/authorize?" + v.Encode()
	}
	// Client or redirect URI wrong: an error page, never a redirect.
	for name, u := range map[string]string{
		"no client_id":       with(func(v url.Values) { v.Del("client_id") }),
		"unknown client_id":  with(func(v url.Values) { v.Set("client_id", "other") }),
		"wrong redirect_uri": with(func(v url.Values) { v.Set("redirect_uri", "http://evil.example/cb") }),
		"redirect_uri prefix": with(func(v url.Values) {
			v.Set("redirect_uri", testRedirect+"/../evil")
		}),
		"no redirect_uri":        with(func(v url.Values) { v.Del("redirect_uri") }),
		"repeated redirect_uri":  with(func(v url.Values) { v.Add("redirect_uri", testRedirect) }),
		"malformed query string": f.srv.URL + "/sandbox/authorize?state=%zz",
	} {
		resp, body := f.get(u)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d, Location %q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
		if strings.Contains(body, "evil") {
			t.Errorf("%s: the page echoes the request", name)
		}
	}
	// Anything else goes back to the client with an error.
	for _, tt := range []struct {
		name, wantErr string
		wantState     bool
		u             string
	}{
		{"response_type token", "unsupported_response_type", true, with(func(v url.Values) { v.Set("response_type", "token") })},
		{"no response_type", "invalid_request", true, with(func(v url.Values) { v.Del("response_type") })},
		{"no state", "invalid_request", false, with(func(v url.Values) { v.Del("state") })},
		{"repeated state", "invalid_request", false, with(func(v url.Values) { v.Add("state", "other") })},
		{"no PKCE", "invalid_request", true, with(func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") })},
		{"PKCE plain", "invalid_request", true, with(func(v url.Values) { v.Set("code_challenge_method", "plain") })},
		{"PKCE method absent (plain)", "invalid_request", true, with(func(v url.Values) { v.Del("code_challenge_method") })},
		{"PKCE challenge not SHA-256", "invalid_request", true, with(func(v url.Values) { v.Set("code_challenge", "short") })},
		{"bad scope", "invalid_scope", true, with(func(v url.Values) { v.Set("scope", `a  "b"`) })},
	} {
		resp, _ := f.get(tt.u)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), testRedirect+"?") {
			t.Errorf("%s: %d → %q", tt.name, resp.StatusCode, resp.Header.Get("Location"))
			continue
		}
		if q := loc.Query(); q.Get("error") != tt.wantErr || q.Has("state") != tt.wantState || q.Has("code") {
			t.Errorf("%s: redirect query %v", tt.name, q)
		}
	}
}

func TestDeny(t *testing.T) {
	f := newFixture(t)
	id := f.consent(f.conf.AuthCodeURL("st-deny", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	q := f.decide(id, "deny")
	if q.Get("error") != "access_denied" || q.Get("state") != "st-deny" || q.Has("code") {
		t.Fatalf("deny query %v", q)
	}
	// One decision per request.
	resp, _ := f.post("/sandbox/decide", url.Values{"request": {id}, "decision": {"approve"}})
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("second decision: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Unknown ids and a consent page left open too long.
	resp, _ = f.post("/sandbox/decide", url.Values{"request": {"made-up"}, "decision": {"approve"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown request: %d", resp.StatusCode)
	}
	id = f.consent(f.conf.AuthCodeURL("st-late", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	f.clock.Add(RequestTTL)
	resp, _ = f.post("/sandbox/decide", url.Values{"request": {id}, "decision": {"approve"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("expired request: %d", resp.StatusCode)
	}
}

func TestDecideRefusesCrossOrigin(t *testing.T) {
	f := newFixture(t)
	id := f.consent(f.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/sandbox/decide",
		strings.NewReader(url.Values{"request": {id}, "decision": {"approve"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, _ := f.do(req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site decide: %d", resp.StatusCode)
	}
	// The request is still pending for the real consent page.
	if q := f.decide(id, "approve"); q.Get("code") == "" {
		t.Fatal("no code")
	}
}

func TestRefreshRotation(t *testing.T) {
	f := newFixture(t)
	verifier := oauth2.GenerateVerifier()
	status, m, _ := f.exchange(f.approvedCode(verifier), verifier)
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %v", status, m)
	}
	rt1, at1 := m["refresh_token"].(string), m["access_token"].(string)

	// x/oauth2 refreshes with the same wire format the broker uses.
	f.clock.Add(time.Minute)
	tok, err := f.conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt1}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	rt2, at2 := tok.RefreshToken, tok.AccessToken
	if rt2 == "" || rt2 == rt1 || at2 == at1 {
		t.Fatal("refresh did not rotate the tokens")
	}
	if s, _ := tok.Extra("scope").(string); s != "profile email" {
		t.Errorf("scope after refresh %q", s)
	}

	// Narrowing the scope is allowed, widening is not.
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "scope": {"profile admin"}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_scope")
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "scope": {"profile"}})
	if status != http.StatusOK || m["scope"] != "profile" {
		t.Fatalf("narrowing refresh: %d %v", status, m)
	}
	rt3, at3 := m["refresh_token"].(string), m["access_token"].(string)

	// The rotated-out token is refused, and its reuse revokes the grant.
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt3}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	if f.userinfo(at3) != http.StatusUnauthorized {
		t.Error("access token of a revoked grant still works")
	}
}

func TestRefreshTokenUnknown(t *testing.T) {
	f := newFixture(t)
	status, m, _ := f.tokenRaw(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"sandbox_rt_made_up"}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"refresh_token"}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_request")
}

func TestTokenClientAuthentication(t *testing.T) {
	f := newFixture(t)
	send := func(edit func(*http.Request), form url.Values) (*http.Response, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/sandbox/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		edit(req)
		resp, body := f.do(req)
		var m map[string]any
		_ = json.Unmarshal([]byte(body), &m)
		return resp, m
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}
	for _, tt := range []struct {
		name       string
		edit       func(*http.Request)
		form       url.Values
		wantStatus int
		wantErr    string
	}{
		{"no authentication", func(*http.Request) {}, form, 401, "invalid_client"},
		{"wrong secret", func(r *http.Request) { r.SetBasicAuth(testClientID, "nope") }, form, 401, "invalid_client"},
		// Sent without §2.3.1 encoding, "+" decodes to a space: no match.
		{"secret not form-encoded", func(r *http.Request) { r.SetBasicAuth(testClientID, testSecret) }, form, 401, "invalid_client"},
		{"body credentials only", func(*http.Request) {},
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {testClientID}, "client_secret": {testSecret}}, 401, "invalid_client"},
		{"two methods", func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(testClientID), url.QueryEscape(testSecret)) },
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_secret": {testSecret}}, 400, "invalid_request"},
		{"JSON body", func(r *http.Request) {
			r.SetBasicAuth(url.QueryEscape(testClientID), url.QueryEscape(testSecret))
			r.Header.Set("Content-Type", "application/json")
		}, form, 400, "invalid_request"},
		{"repeated parameter", func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(testClientID), url.QueryEscape(testSecret)) },
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x", "y"}}, 400, "invalid_request"},
	} {
		resp, m := send(tt.edit, tt.form)
		if resp.StatusCode != tt.wantStatus || m["error"] != tt.wantErr {
			t.Errorf("%s: %d %v", tt.name, resp.StatusCode, m)
		}
		if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: 401 without WWW-Authenticate", tt.name)
		}
		if d, _ := m["error_description"].(string); strings.Contains(d, testSecret) {
			t.Errorf("%s: error echoes the secret", tt.name)
		}
	}
	// GET is not a token request.
	resp, _ := f.get(f.srv.URL + "/sandbox/token")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /sandbox/token: %d", resp.StatusCode)
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	ok := Config{ClientID: testClientID, ClientSecret: testSecret, RedirectURI: testRedirect}
	for name, edit := range map[string]func(*Config){
		"empty":                  func(c *Config) { *c = Config{} },
		"no client id":           func(c *Config) { c.ClientID = "" },
		"no client secret":       func(c *Config) { c.ClientSecret = "" },
		"relative redirect URI":  func(c *Config) { c.RedirectURI = "/callback/sandbox" },
		"unreadable state file":  func(c *Config) { c.StateFile = t.TempDir() }, // a directory
		"state file not sandbox": func(c *Config) { c.StateFile = writeTemp(t, "not json") },
	} {
		cfg := ok
		edit(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
	if _, err := New(ok); err != nil {
		t.Errorf("New: %v", err)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGrantsSurviveRestart: with a state file, what the sandbox issued
// outlives its process — tokens, codes, consent requests and the record
// of rotated refresh tokens — so connections made before a restart of
// make dev still refresh after it. The file holds no usable credential.
func TestGrantsSurviveRestart(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "sandbox.json")
	f := newFixtureWithFile(t, stateFile)
	verifier := oauth2.GenerateVerifier()
	status, m, _ := f.exchange(f.approvedCode(verifier), verifier)
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %v", status, m)
	}
	rt1, at1 := m["refresh_token"].(string), m["access_token"].(string)
	// A second flow is left half done: a code not yet redeemed, and a
	// consent page not yet decided.
	verifier2 := oauth2.GenerateVerifier()
	code2 := f.approvedCode(verifier2)
	pending := f.consent(f.conf.AuthCodeURL("st-2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))

	f.restart()

	if f.userinfo(at1) != http.StatusOK {
		t.Error("the access token issued before the restart is refused")
	}
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
	if status != http.StatusOK {
		t.Fatalf("refresh after the restart: %d %v", status, m)
	}
	rt2, at2 := m["refresh_token"].(string), m["access_token"].(string)
	status, m, _ = f.exchange(code2, verifier2)
	if status != http.StatusOK {
		t.Errorf("redeeming a code issued before the restart: %d %v", status, m)
	}
	if q := f.decide(pending, "approve"); q.Get("state") != "st-2" || q.Get("code") == "" {
		t.Errorf("approving a consent page opened before the restart: %v", q)
	}

	f.restart()

	// The rotation survives too: the rotated-out token is recognised as
	// reused, and its reuse revokes the grant.
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	status, m, _ = f.tokenRaw(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}})
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	if f.userinfo(at2) != http.StatusUnauthorized {
		t.Error("an access token of the revoked grant still works")
	}

	fi, err := os.Stat(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(stateFile)
	for name, v := range map[string]string{"refresh token": rt1, "access token": at1, "code": code2, "request id": pending, "client secret": testSecret} {
		if strings.Contains(string(raw), v) {
			t.Errorf("the state file holds a %s in the clear", name)
		}
	}
}

func TestConcurrentExchangeIssuesOnce(t *testing.T) {
	f := newFixture(t)
	verifier := oauth2.GenerateVerifier()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {f.approvedCode(verifier)},
		"redirect_uri": {testRedirect}, "code_verifier": {verifier}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/sandbox/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(url.QueryEscape(testClientID), url.QueryEscape(testSecret))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode == http.StatusOK {
				ok++
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d exchanges succeeded, want 1", ok)
	}
}
