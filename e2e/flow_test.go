package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/flowtest"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/setup"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// TestConnectCallbackRefresh walks the whole product: a signed connect
// link → authorize → the provider's consent → callback → the stored
// connection → scheduled refreshes, including rotation, a provider
// outage and a revoked grant. "acme" is a user-defined provider: it
// exists only in the stack's PROVIDERS_FILE, with no Go code of its own.
func TestConnectCallbackRefresh(t *testing.T) {
	s := newStack(t)

	// Authorize: S17, S18 (a spoofed X-Forwarded-Host changes nothing), S6.
	resp := s.Connect("acme", s.Link("cust-42", returnTo, []string{"read", "write"}, time.Now().Add(time.Hour)), func(ev *events.APIGatewayV2HTTPRequest) {
		maps.Copy(ev.Headers, map[string]string{"x-forwarded-host": "evil.example", "host": "evil.example"})
	})
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d %s", resp.StatusCode, resp.Body)
	}
	authURL, _ := url.Parse(resp.Headers["Location"])
	q := authURL.Query()
	if got := authURL.Scheme + "://" + authURL.Host + authURL.Path; got != s.prov.AuthorizeURL() {
		t.Errorf("authorization endpoint %s", got)
	}
	for k, want := range map[string]string{"response_type": "code", "client_id": clientID, "redirect_uri": baseURL + "/callback/acme",
		"scope": "read write", "code_challenge_method": "S256"} {
		if q.Get(k) != want {
			t.Errorf("authorization URL %s = %q, want %q", k, q.Get(k), want)
		}
	}
	if len(q.Get("code_challenge")) != 43 || q.Get("state") == "" {
		t.Errorf("challenge %q state %q", q.Get("code_challenge"), q.Get("state"))
	}
	flowtest.AssertSecurityHeaders(t, resp)
	cookie := resp.Cookies[0]
	for _, attr := range []string{"__Host-oauthbroker-", "Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age=600"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("binding cookie %q lacks %q", cookie, attr)
		}
	}
	if strings.Contains(cookie, "Domain=") {
		t.Errorf("binding cookie has a Domain: %q", cookie)
	}

	// The provider redirects back; the callback redeems and stores.
	back := s.Consent(authURL)
	before := s.prov.TokenRequests()
	resp = s.Deliver("acme", back.RawQuery, strings.SplitN(cookie, ";", 2)[0])
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d %s", resp.StatusCode, resp.Body)
	}
	flowtest.AssertSecurityHeaders(t, resp)
	loc, _ := url.Parse(resp.Headers["Location"])
	if loc.Host != "app.example.com" || loc.Path != "/connected" || loc.Query().Get("tab") != "integrations" ||
		loc.Query().Get("connection_id") != "cust-42" || loc.Query().Get("status") != "connected" {
		t.Fatalf("final redirect %s", loc)
	}
	flowtest.AssertNoSecretsIn(t, resp.Headers["Location"]+resp.Body+strings.Join(resp.Cookies, ";"), back.Query().Get("code"), back.Query().Get("state"), clientSecret)
	if !strings.Contains(strings.Join(resp.Cookies, ";"), "Max-Age=0") {
		t.Errorf("binding cookie not cleared: %v", resp.Cookies)
	}
	if got := s.prov.TokenRequests() - before; got != 1 {
		t.Fatalf("%d token requests, want 1", got)
	}
	c, err := s.Conn("cust-42")
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != store.StatusConnected || !s.prov.Valid(c.AccessToken) || c.RefreshToken == "" || c.Scope != "read write" ||
		c.TokenType != "Bearer" || c.Version != 1 || c.ExpiresAt.IsZero() {
		t.Fatalf("stored connection %+v", redact(c))
	}
	if !dueWithinMargin(c, provider.DefaultRefreshMargin) {
		t.Errorf("refresh due %v for expiry %v: not %v (less up to a fifth of jitter) before it", c.NextRefresh, c.ExpiresAt, provider.DefaultRefreshMargin)
	}

	// Nothing is due yet: the sweep does nothing.
	if sum := s.runRefresh(); sum["due"] != 0 {
		t.Fatalf("sweep before due: %v", sum)
	}

	// Due: the refresh rotates both tokens.
	s.makeDue("cust-42")
	sum := s.runRefresh()
	if sum["due"] != 1 || sum["refreshed"] != 1 {
		t.Fatalf("sweep: %v", sum)
	}
	c2, _ := s.Conn("cust-42")
	if c2.AccessToken == c.AccessToken || c2.RefreshToken == c.RefreshToken || !s.prov.Valid(c2.AccessToken) || c2.NextRefresh.Before(time.Now()) {
		t.Fatalf("after refresh %+v", redact(c2))
	}
	// One structured line for the outcome, and an Embedded Metric Format
	// record CloudWatch turns into the Refreshes metric.
	var outcomeLine, emf bool
	for _, line := range strings.Split(s.refresh.Logs(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec["msg"] == "refresh" && rec["provider"] == "acme" && rec["connection_id"] == "cust-42" && rec["outcome"] == "refreshed" && rec["latency_ms"] != nil {
			outcomeLine = true
		}
		if aws, ok := rec["_aws"].(map[string]any); ok && rec["provider"] == "acme" && rec["outcome"] == "refreshed" && rec["Refreshes"] == 1.0 && aws["CloudWatchMetrics"] != nil {
			emf = true
		}
	}
	if !outcomeLine || !emf {
		t.Errorf("refresh logs: outcome line %v, EMF record %v:\n%s", outcomeLine, emf, s.refresh.Logs())
	}

	// The provider is down: the connection keeps its tokens, counts the
	// failure and is retried later.
	s.makeDue("cust-42")
	c3, _ := s.Conn("cust-42")
	s.prov.FailNext(1, http.StatusServiceUnavailable, "text/html", "<html>down</html>", http.Header{"Retry-After": {"600"}})
	if sum := s.runRefresh(); sum["failed"] != 1 {
		t.Fatalf("sweep during outage: %v", sum)
	}
	c4, _ := s.Conn("cust-42")
	if c4.AccessToken != c3.AccessToken || c4.RefreshToken != c3.RefreshToken || c4.Status != store.StatusConnected ||
		c4.FailureCount != 1 || c4.LastError == "" || time.Until(c4.NextRefresh) < 9*time.Minute {
		t.Fatalf("after outage %+v", redact(c4))
	}

	// The customer revoked access: invalid_grant → needs_reauth, tokens
	// kept, no longer scheduled.
	s.prov.RevokeRefresh(c4.RefreshToken)
	s.makeDue("cust-42")
	if sum := s.runRefresh(); sum["needs_reauth"] != 1 {
		t.Fatalf("sweep after revocation: %v", sum)
	}
	c5, _ := s.Conn("cust-42")
	if c5.Status != store.StatusNeedsReauth || !c5.NextRefresh.IsZero() || c5.RefreshToken != c4.RefreshToken {
		t.Fatalf("after revocation %+v", redact(c5))
	}
	if sum := s.runRefresh(); sum["due"] != 0 {
		t.Fatalf("needs_reauth connection still due: %v", sum)
	}

	// Reconnecting repairs it.
	f := s.Begin("cust-42")
	if resp := s.Deliver("acme", f.CallbackQuery, f.Cookie); resp.StatusCode != http.StatusFound ||
		!strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("reconnect: %d %v", resp.StatusCode, resp.Headers)
	}
	if c6, _ := s.Conn("cust-42"); c6.Status != store.StatusConnected || c6.Version <= c5.Version {
		t.Fatalf("after reconnect %+v", redact(c6))
	}
}

// TestPKCEPerFlow: every flow has its own verifier; the challenge is
// BASE64URL(SHA256(verifier)) — the provider test server checks the pair
// at the token endpoint, so a successful callback proves the match (S6).
func TestPKCEPerFlow(t *testing.T) {
	s := newStack(t)
	a, b := s.Begin("pkce-a"), s.Begin("pkce-b")
	if a.AuthURL.Query().Get("code_challenge") == b.AuthURL.Query().Get("code_challenge") {
		t.Fatal("two flows share a PKCE challenge")
	}
	// The verifier is kept server side, sealed in the state record.
	pk := store.StateRecordKey(signing.Hash(strings.Split(a.State, ".")[1]))
	item := s.aws.Item(t, pk, "state")
	if item == nil {
		t.Fatal("no state record")
	}
	sealed, ok := item["sealed"].(*types.AttributeValueMemberB)
	if !ok || item["pkce_verifier"] != nil {
		t.Fatalf("state record holds no sealed value, or a plaintext verifier")
	}
	states, _ := setup.Sealers(s.aws.KMS.Client, setup.Env{TableName: s.aws.Table, TokenKeyID: s.aws.KMS.KeyARN})
	creds, err := store.OpenCredentials(t.Context(), states, pk, sealed.Value)
	if err != nil {
		t.Fatal(err)
	}
	verifier := creds.PKCEVerifier
	sum := sha256.Sum256([]byte(verifier))
	if len(verifier) < 43 || base64.RawURLEncoding.EncodeToString(sum[:]) != a.AuthURL.Query().Get("code_challenge") {
		t.Fatalf("challenge is not BASE64URL(SHA256(verifier)) of a 32-byte verifier")
	}
	if resp := s.Deliver("acme", a.CallbackQuery, a.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("callback: %d %v", resp.StatusCode, resp.Headers)
	}
}

// redact hides tokens when a connection is printed in a failure message.
func redact(c store.Connection) store.Connection {
	if c.AccessToken != "" {
		c.AccessToken = "[set]"
	}
	if c.RefreshToken != "" {
		c.RefreshToken = "[set]"
	}
	return c
}

// dueWithinMargin reports whether c's refresh is due margin before its
// expiry, less at most a fifth of jitter (stored times are whole seconds).
func dueWithinMargin(c store.Connection, margin time.Duration) bool {
	m := c.ExpiresAt.Sub(c.NextRefresh)
	return !c.NextRefresh.IsZero() && m <= margin+time.Second && m >= margin-margin/5-time.Second
}
