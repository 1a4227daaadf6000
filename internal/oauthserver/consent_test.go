package oauthserver_test

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
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oauthbroker/oauthbroker/internal/oauthserver"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/fakeclock"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// The consent page, the state file and the clock: the server as make dev
// runs it (Open, mounted on another server, under a path prefix).

const (
	consentClient = "sandbox-client"
	// The secret has characters that RFC 6749 §2.3.1 form-encodes before
	// HTTP Basic, so the test proves the server decodes them.
	consentSecret   = "s3cr:t+/=&é"
	consentRedirect = "http://app.localhost:9999/callback/sandbox"
	tokenTTL        = 2 * time.Minute
	codeTTL         = 5 * time.Minute
)

// styleRE finds the page's one style element.
var styleRE = regexp.MustCompile(`(?s)<style>(.*?)</style>`)

func newClock() *fakeclock.Clock { return fakeclock.At(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

type fixture struct {
	t       *testing.T
	cfg     oauthserver.Config
	handler atomic.Pointer[http.Handler] // the running server; restart replaces it
	srv     *httptest.Server
	clock   *fakeclock.Clock
	hc      *http.Client // does not follow redirects
	conf    *oauth2.Config
}

// newFixture runs a server from Open with its consent page under
// /sandbox/, as make dev does, keeping its state in stateFile ("" for
// memory only).
func newFixture(t *testing.T, stateFile string) *fixture {
	t.Helper()
	clk := newClock()
	logcheck.Register(consentSecret)
	f := &fixture{
		t: t,
		cfg: oauthserver.Config{
			Title:    "Sandbox provider — dev only",
			ClientID: consentClient, ClientSecret: consentSecret, RedirectURI: consentRedirect,
			ConsentPage:   true,
			AuthorizePath: "/sandbox/authorize", DecidePath: "/sandbox/decide", TokenPath: "/sandbox/token",
			RevokePath: "/sandbox/revoke", ResourcePath: "/sandbox/userinfo",
			RequirePKCE: true, Scopes: []string{"profile", "email"}, RotateRefreshTokens: true,
			AccessTokenTTL: tokenTTL, CodeTTL: codeTTL, StateFile: stateFile, Now: clk.Now,
		},
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
		ClientID:     consentClient,
		ClientSecret: consentSecret,
		RedirectURL:  consentRedirect,
		Scopes:       []string{"profile", "email"},
		Endpoint: oauth2.Endpoint{
			AuthURL:   f.srv.URL + "/sandbox/authorize",
			TokenURL:  f.srv.URL + "/sandbox/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
	}
	return f
}

// restart replaces the running server with a new one of the same
// configuration, as a restart of its process would.
func (f *fixture) restart() {
	f.t.Helper()
	s, err := oauthserver.Open(f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	h := s.Handler()
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

// registerIssued registers the codes and tokens in an answer with logcheck
// (S22): a server from Open does not.
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
	if err != nil || !strings.HasPrefix(loc.String(), consentRedirect+"?") {
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

// token posts to the token endpoint with §2.3.1 Basic authentication.
func (f *fixture) token(form url.Values) (int, map[string]any) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/sandbox/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(consentClient), url.QueryEscape(consentSecret))
	resp, body := f.do(req)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		f.t.Fatalf("token response is not JSON: %q", body)
	}
	return resp.StatusCode, m
}

// exchange redeems code with verifier for the registered redirect URI.
func (f *fixture) exchange(code, verifier string) (int, map[string]any) {
	f.t.Helper()
	return f.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {consentRedirect}, "code_verifier": {verifier}})
}

func (f *fixture) refresh(rt string) (int, map[string]any) {
	f.t.Helper()
	return f.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
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

func TestConsentFlowWithOAuth2Client(t *testing.T) {
	f := newFixture(t, "")
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
	// The CSP allows the page's own style, by hash, and nothing else.
	csp := resp.Header.Get("Content-Security-Policy")
	styles := styleRE.FindAllStringSubmatch(body, -1)
	if len(styles) != 1 {
		t.Fatalf("%d style elements, want 1", len(styles))
	}
	sum := sha256.Sum256([]byte(styles[0][1]))
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"';") ||
		!strings.Contains(csp, "form-action 'self' http://app.localhost:9999") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
		if resp.Header.Get(k) != want {
			t.Errorf("%s = %q", k, resp.Header.Get(k))
		}
	}

	q := f.decide(requestIDRE.FindStringSubmatch(body)[1], "approve")
	if q.Get("state") != "state-123" || q.Get("code") == "" {
		t.Fatalf("callback query: state %q, code present %v", q.Get("state"), q.Has("code"))
	}

	tok, err := f.conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	logcheck.Register(tok.AccessToken, tok.RefreshToken)
	if tok.TokenType != "Bearer" || tok.RefreshToken == "" || tok.AccessToken == "" {
		t.Fatalf("token type %q, refresh token %d bytes, access token %d bytes", tok.TokenType, len(tok.RefreshToken), len(tok.AccessToken))
	}
	if got := time.Until(tok.Expiry); got < tokenTTL-10*time.Second || got > tokenTTL {
		t.Errorf("expiry in %v, want about %v", got, tokenTTL)
	}
	if s, _ := tok.Extra("scope").(string); s != "profile email" {
		t.Errorf("scope %q", s)
	}
	if f.userinfo(tok.AccessToken) != http.StatusOK {
		t.Error("the access token is not accepted at userinfo")
	}
	if f.userinfo("pta_forged") != http.StatusUnauthorized {
		t.Error("a forged access token is accepted")
	}

	// The access token expires with the server's clock, and so does a code.
	f.clock.Add(tokenTTL)
	if f.userinfo(tok.AccessToken) != http.StatusUnauthorized {
		t.Error("an expired access token is accepted")
	}
	code := f.approvedCode(verifier)
	f.clock.Add(codeTTL)
	status, m := f.exchange(code, verifier)
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
}

func TestConsentDeny(t *testing.T) {
	f := newFixture(t, "")
	id := f.consent(f.conf.AuthCodeURL("st-deny", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	q := f.decide(id, "deny")
	if q.Get("error") != "access_denied" || q.Get("state") != "st-deny" || q.Has("code") {
		t.Fatalf("deny query %v", q)
	}
	for name, form := range map[string]url.Values{
		"second decision": {"request": {id}, "decision": {"approve"}}, // one decision per request
		"unknown request": {"request": {"made-up"}, "decision": {"approve"}},
		"no decision":     {"request": {f.consent(f.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))}},
	} {
		if resp, _ := f.post("/sandbox/decide", form); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d %q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// A consent page may stay open for ConsentTTL, not longer.
	id = f.consent(f.conf.AuthCodeURL("st-slow", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	f.clock.Add(oauthserver.ConsentTTL - time.Second)
	if q := f.decide(id, "approve"); q.Get("code") == "" {
		t.Errorf("approving a page open for almost ConsentTTL: %v", q)
	}
	id = f.consent(f.conf.AuthCodeURL("st-late", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	f.clock.Add(oauthserver.ConsentTTL)
	if resp, _ := f.post("/sandbox/decide", url.Values{"request": {id}, "decision": {"approve"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("expired request: %d", resp.StatusCode)
	}
	// Errors that must not be redirected are pages too, echoing nothing.
	resp, body := f.get(f.srv.URL + "/sandbox/authorize?client_id=evil&state=st")
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || strings.Contains(body, "evil") {
		t.Errorf("unknown client: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

func TestDecideRefusesCrossOrigin(t *testing.T) {
	f := newFixture(t, "")
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

func TestOpenNeedsClientSecret(t *testing.T) {
	for name, secret := range map[string]string{"no secret": "", "secret": consentSecret} {
		_, err := oauthserver.Open(oauthserver.Config{ClientID: consentClient, ClientSecret: secret, RedirectURI: consentRedirect})
		if (err == nil) != (secret != "") {
			t.Errorf("%s: Open: %v", name, err)
		}
	}
}

// TestGrantsSurviveRestart: with a state file, what the server issued
// outlives its process — tokens, codes, consent requests and the record
// of rotated refresh tokens — so connections made before a restart of
// make dev still refresh after it. The file holds no usable credential.
func TestGrantsSurviveRestart(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "sandbox.json")
	f := newFixture(t, stateFile)
	verifier := oauth2.GenerateVerifier()
	status, m := f.exchange(f.approvedCode(verifier), verifier)
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
	status, m = f.refresh(rt1)
	if status != http.StatusOK {
		t.Fatalf("refresh after the restart: %d %v", status, m)
	}
	rt2, at2 := m["refresh_token"].(string), m["access_token"].(string)
	if status, m = f.exchange(code2, verifier2); status != http.StatusOK {
		t.Errorf("redeeming a code issued before the restart: %d %v", status, m)
	}
	if q := f.decide(pending, "approve"); q.Get("state") != "st-2" || q.Get("code") == "" {
		t.Errorf("approving a consent page opened before the restart: %v", q)
	}

	f.restart()

	// The rotation survives too: the rotated-out token is recognised as
	// reused, and its reuse revokes the grant.
	status, m = f.refresh(rt1)
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	status, m = f.refresh(rt2)
	wantOAuthError(t, status, m, http.StatusBadRequest, "invalid_grant")
	if f.userinfo(at2) != http.StatusUnauthorized {
		t.Error("an access token of the revoked grant still works")
	}

	// A day later what ended is forgotten, what lives is kept.
	status, m = f.exchange(f.approvedCode(verifier), verifier)
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %v", status, m)
	}
	live := m["refresh_token"].(string)
	before, _ := os.ReadFile(stateFile)
	f.clock.Add(25 * time.Hour)
	if status, m = f.refresh(live); status != http.StatusOK {
		t.Fatalf("refresh a day later: %d %v", status, m)
	}
	after, _ := os.ReadFile(stateFile)
	if len(after) >= len(before) {
		t.Errorf("the state file did not shrink a day later (%d → %d bytes)", len(before), len(after))
	}

	fi, err := os.Stat(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	for name, v := range map[string]string{"refresh token": rt1, "access token": at1, "code": code2, "request id": pending, "client secret": consentSecret, "live refresh token": live} {
		if strings.Contains(string(before), v) || strings.Contains(string(after), v) {
			t.Errorf("the state file holds a %s in the clear", name)
		}
	}
}
