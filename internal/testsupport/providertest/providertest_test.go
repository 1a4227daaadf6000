package providertest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
)

// What the wrapper adds to oauthserver: its own test server and URLs, the
// recording of requests, the credentials it saw, Authorize. The protocol
// itself is tested in package oauthserver.

const (
	redirectURI  = "https://broker.example/callback/acme"
	clientSecret = "wrapper-secret"
	verifier     = "verifier-0123456789-0123456789-0123456789-0123456789"
)

func config() providertest.Config {
	return providertest.Config{ClientID: "client-1", ClientSecret: clientSecret, RedirectURI: redirectURI, RequirePKCE: true}
}

func challenge() string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func authorizeURL(s *providertest.Server) string {
	return s.AuthorizeURL() + "?" + url.Values{
		"response_type": {"code"}, "client_id": {"client-1"}, "redirect_uri": {redirectURI}, "state": {"state-123"},
		"code_challenge": {challenge()}, "code_challenge_method": {"S256"},
	}.Encode()
}

// redeem posts the code exchange with HTTP Basic and returns the status
// and body.
func redeem(t *testing.T, s *providertest.Server, code string) (int, string) {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {verifier}}
	req, err := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("client-1", clientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRecordedRequests(t *testing.T) {
	s := providertest.New(t, config())
	code := s.Authorize(t, authorizeURL(s)).Query().Get("code")
	if status, body := redeem(t, s, code); status != 200 {
		t.Fatalf("token: %d %s", status, body)
	}
	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("recorded %v", reqs)
	}
	a, tok := reqs[0], reqs[1]
	if a.Method != "GET" || a.Path != "/authorize" || a.Status != 302 || a.Query.Get("state") != "state-123" || a.Params.Get("code_challenge_method") != "S256" {
		t.Errorf("authorize recorded as %v %v", a, a.Query)
	}
	if tok.Method != "POST" || tok.Path != "/token" || tok.Status != 200 || len(tok.Query) != 0 ||
		tok.Params.Get("code_verifier") != verifier || !strings.Contains(string(tok.Body), "grant_type=authorization_code") ||
		tok.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("token recorded as %v %v %s", tok, tok.Params, tok.Body)
	}
	// Callers get copies.
	reqs[1].Params.Set("code_verifier", "x")
	if s.Requests()[1].Params.Get("code_verifier") != verifier {
		t.Error("Requests shares its maps")
	}
}

func TestRecordsOversizedBody(t *testing.T) {
	s := providertest.New(t, config())
	resp, err := http.Post(s.TokenURL(), "application/x-www-form-urlencoded", strings.NewReader(strings.Repeat("a", 1<<20+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if rec := s.Requests(); resp.StatusCode != http.StatusRequestEntityTooLarge || len(rec) != 1 || rec[0].Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("answered %d, recorded %v", resp.StatusCode, rec)
	}
	if s.TokenRequests() != 0 {
		t.Fatalf("an oversized body reached the token endpoint")
	}
}

func TestCredentialsAndURLs(t *testing.T) {
	cfg := config()
	cfg.TokenPath, cfg.AuthorizePath = "/oauth/token", "/oauth/authorize"
	s := providertest.New(t, cfg)
	for _, tc := range []struct{ got, want string }{
		{s.AuthorizeURL(), s.URL + "/oauth/authorize"},
		{s.TokenURL(), s.URL + "/oauth/token"},
		{s.RevokeURL(), s.URL + "/revoke"},
		{s.ResourceURL(), s.URL + "/resource"},
	} {
		if tc.got != tc.want || !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
			t.Errorf("URL %q, want %q", tc.got, tc.want)
		}
	}
	if creds := s.Credentials(); !slices.Equal(creds, []string{clientSecret}) {
		t.Errorf("before any grant: %d credentials, want the client secret only", len(creds))
	}
	code := s.Authorize(t, authorizeURL(s)).Query().Get("code")
	if status, body := redeem(t, s, code); status != 200 {
		t.Fatalf("token: %d %s", status, body)
	}
	access, refresh := s.IssueGrant()
	creds := s.Credentials()
	for i, c := range []string{clientSecret, code, access, refresh} {
		if !slices.Contains(creds, c) {
			t.Errorf("Credentials lacks the secret, the code, the access or the refresh token: #%d", i)
		}
	}
}

func TestAuthorizeFailsUnlessRedirected(t *testing.T) {
	s := providertest.New(t, config())
	msgs := failures.Of(t, func(tb testing.TB) { s.Authorize(tb, s.AuthorizeURL()+"?client_id=unknown") })
	if len(msgs) != 1 || !strings.Contains(msgs[0], "providertest: authorize answered 400") {
		t.Fatalf("failures %q", msgs)
	}
}
