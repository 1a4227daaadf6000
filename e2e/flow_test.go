package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"

	"github.com/oauthbroker/oauthbroker/shared/httpapi"
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
	resp := s.connect("acme", s.link("cust-42", returnTo, []string{"read", "write"}, time.Now().Add(time.Hour)),
		map[string]string{"x-forwarded-host": "evil.example", "host": "evil.example"})
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
	assertSecurityHeaders(t, resp)
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
	back := s.consent(authURL)
	before := s.prov.TokenRequests()
	resp = s.deliver(s.callback, "acme", back.RawQuery, strings.SplitN(cookie, ";", 2)[0])
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d %s", resp.StatusCode, resp.Body)
	}
	assertSecurityHeaders(t, resp)
	loc, _ := url.Parse(resp.Headers["Location"])
	if loc.Host != "app.example.com" || loc.Path != "/connected" || loc.Query().Get("tab") != "integrations" ||
		loc.Query().Get("connection_id") != "cust-42" || loc.Query().Get("status") != "connected" {
		t.Fatalf("final redirect %s", loc)
	}
	assertNoSecretsIn(t, resp.Headers["Location"]+resp.Body+strings.Join(resp.Cookies, ";"), back.Query().Get("code"), back.Query().Get("state"))
	if !strings.Contains(strings.Join(resp.Cookies, ";"), "Max-Age=0") {
		t.Errorf("binding cookie not cleared: %v", resp.Cookies)
	}
	if got := s.prov.TokenRequests() - before; got != 1 {
		t.Fatalf("%d token requests, want 1", got)
	}
	c, err := s.conn("cust-42")
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != store.StatusConnected || !s.prov.Valid(c.AccessToken) || c.RefreshToken == "" || c.Scope != "read write" ||
		c.TokenType != "Bearer" || c.Version != 1 || c.ExpiresAt.IsZero() {
		t.Fatalf("stored connection %+v", redact(c))
	}
	if !dueWithinMargin(c, provider.DefaultRefreshMargin) {
		t.Errorf("refresh due %v for expiry %v: not %v (less up to a fifth of jitter) before it", c.RefreshDue, c.ExpiresAt, provider.DefaultRefreshMargin)
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
	c2, _ := s.conn("cust-42")
	if c2.AccessToken == c.AccessToken || c2.RefreshToken == c.RefreshToken || !s.prov.Valid(c2.AccessToken) || c2.RefreshDue.Before(time.Now()) {
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
	c3, _ := s.conn("cust-42")
	s.prov.FailNext(1, http.StatusServiceUnavailable, "text/html", "<html>down</html>", http.Header{"Retry-After": {"600"}})
	if sum := s.runRefresh(); sum["failed"] != 1 {
		t.Fatalf("sweep during outage: %v", sum)
	}
	c4, _ := s.conn("cust-42")
	if c4.AccessToken != c3.AccessToken || c4.RefreshToken != c3.RefreshToken || c4.Status != store.StatusConnected ||
		c4.FailureCount != 1 || c4.LastError == "" || time.Until(c4.RefreshDue) < 9*time.Minute {
		t.Fatalf("after outage %+v", redact(c4))
	}

	// The customer revoked access: invalid_grant → needs_reauth, tokens
	// kept, no longer scheduled.
	s.prov.RevokeRefresh(c4.RefreshToken)
	s.makeDue("cust-42")
	if sum := s.runRefresh(); sum["needs_reauth"] != 1 {
		t.Fatalf("sweep after revocation: %v", sum)
	}
	c5, _ := s.conn("cust-42")
	if c5.Status != store.StatusNeedsReauth || !c5.RefreshDue.IsZero() || c5.RefreshToken != c4.RefreshToken {
		t.Fatalf("after revocation %+v", redact(c5))
	}
	if sum := s.runRefresh(); sum["due"] != 0 {
		t.Fatalf("needs_reauth connection still due: %v", sum)
	}

	// Reconnecting repairs it.
	f := s.begin("cust-42")
	if resp := s.deliver(s.callback, "acme", f.callbackQuery, f.cookie); resp.StatusCode != http.StatusFound ||
		!strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("reconnect: %d %v", resp.StatusCode, resp.Headers)
	}
	if c6, _ := s.conn("cust-42"); c6.Status != store.StatusConnected || c6.Version <= c5.Version {
		t.Fatalf("after reconnect %+v", redact(c6))
	}
}

// TestPKCEPerFlow: every flow has its own verifier; the challenge is
// BASE64URL(SHA256(verifier)) — the provider test server checks the pair
// at the token endpoint, so a successful callback proves the match (S6).
func TestPKCEPerFlow(t *testing.T) {
	s := newStack(t)
	a, b := s.begin("pkce-a"), s.begin("pkce-b")
	if a.authURL.Query().Get("code_challenge") == b.authURL.Query().Get("code_challenge") {
		t.Fatal("two flows share a PKCE challenge")
	}
	// The verifier is kept server side, sealed in the state record.
	pk := store.StateRecordKey(signing.Hash(strings.Split(a.state, ".")[1]))
	item, err := s.ddb.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: &s.table,
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: pk},
			"sk": &types.AttributeValueMemberS{Value: "state"},
		},
	})
	if err != nil || item.Item == nil {
		t.Fatalf("state record: %v", err)
	}
	sealed, ok := item.Item["sealed"].(*types.AttributeValueMemberB)
	if !ok || item.Item["pkce_verifier"] != nil {
		t.Fatalf("state record holds no sealed value, or a plaintext verifier")
	}
	states, _ := setup.Sealers(s.kms.Client, setup.Env{TableName: s.table, TokenKeyID: s.kms.KeyARN})
	creds, err := store.OpenCredentials(t.Context(), states, pk, sealed.Value)
	if err != nil {
		t.Fatal(err)
	}
	verifier := creds.PKCEVerifier
	sum := sha256.Sum256([]byte(verifier))
	if len(verifier) < 43 || base64.RawURLEncoding.EncodeToString(sum[:]) != a.authURL.Query().Get("code_challenge") {
		t.Fatalf("challenge is not BASE64URL(SHA256(verifier)) of a 32-byte verifier")
	}
	if resp := s.deliver(s.callback, "acme", a.callbackQuery, a.cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("callback: %d %v", resp.StatusCode, resp.Headers)
	}
}

// TestCallbackRejects: every bad callback ends in an error page or an
// error redirect, never a 500, never a stored token, and — when the state
// is at fault — without any request reaching the token endpoint (S4).
func TestCallbackRejects(t *testing.T) {
	s := newStack(t)
	type result struct {
		status      int
		location    string // substring of Location, for redirects
		tokenCalled bool
	}
	flip := func(v string) string {
		b := []byte(v)
		i := len(b) - 3
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f flow, id string) events.APIGatewayV2HTTPResponse // id: the connection
		want result
	}{
		{"forged signature (S5)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.deliver(s.callback, "acme", "code="+f.code+"&state="+flip(f.state), f.cookie)
		}, result{status: 403}},
		{"expired state", func(t *testing.T, f flow, id string) events.APIGatewayV2HTTPResponse {
			// A state signed and recorded eleven minutes ago, with its
			// browser's cookie: only the expiry stands in the way.
			old, _ := signing.NewState(s.keys, "acme", time.Now().Add(-11*time.Minute), 10*time.Minute)
			if err := s.store.PutState(t.Context(), store.StateRecord{ID: old.ID, Provider: "acme", ConnectionID: id,
				ReturnTo: returnTo, BindingHash: signing.Hash("old-browser"), ExpiresAt: old.Expires}); err != nil {
				t.Fatal(err)
			}
			return s.deliver(s.callback, "acme", "code="+f.code+"&state="+url.QueryEscape(old.Value), httpapi.BindingCookieName(old.ID)+"=old-browser")
		}, result{status: 403}},
		{"missing state (S3)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.deliver(s.callback, "acme", "code="+f.code, f.cookie)
		}, result{status: 400}},
		{"missing cookie (S2)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.deliver(s.callback, "acme", f.callbackQuery)
		}, result{status: 403}},
		{"foreign cookie (S2)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			name := strings.SplitN(f.cookie, "=", 2)[0]
			return s.deliver(s.callback, "acme", f.callbackQuery, name+"=attackers-own-browser-value")
		}, result{status: 403}},
		{"cookie of another flow (S2)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			other := s.begin("someone-else")
			return s.deliver(s.callback, "acme", f.callbackQuery, other.cookie)
		}, result{status: 403}},
		{"state for acme at /callback/other (S9)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.deliver(s.callback, "other", f.callbackQuery, f.cookie)
		}, result{status: 403}},
		{"duplicated state (S11)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.deliver(s.callback, "acme", f.callbackQuery+"&state="+url.QueryEscape(f.state), f.cookie)
		}, result{status: 400}},
		{"duplicated code (S11)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.deliver(s.callback, "acme", f.callbackQuery+"&code=other", f.cookie)
		}, result{status: 400}},
		{"code alone (S3)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.deliver(s.callback, "acme", "code="+f.code)
		}, result{status: 400}},
		{"access_denied, description not echoed (S10)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.deliver(s.callback, "acme", "error=access_denied&error_description=%3Csvg%2Fonload%3Dalert(1)%3E&state="+url.QueryEscape(f.state), f.cookie)
		}, result{status: 302, location: "error=access_denied"}},
		{"unknown error mapped (S10)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.deliver(s.callback, "acme", "error=%3Csvg%2Fonload%3Dalert(1)%3E&state="+url.QueryEscape(f.state), f.cookie)
		}, result{status: 302, location: "error=provider_error"}},
		{"token endpoint invalid_grant", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			s.prov.FailNext(1, 400, "application/json", `{"error":"invalid_grant"}`, nil)
			return s.deliver(s.callback, "acme", f.callbackQuery, f.cookie)
		}, result{status: 302, location: "error=provider_error", tokenCalled: true}},
		{"token endpoint 500", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			s.prov.FailNext(1, 500, "application/json", `{"error":"server_error"}`, nil)
			return s.deliver(s.callback, "acme", f.callbackQuery, f.cookie)
		}, result{status: 302, location: "error=provider_unavailable", tokenCalled: true}},
		{"token endpoint HTML", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			s.prov.FailNext(1, 200, "text/html", `<html><body>Maintenance</body></html>`, nil)
			return s.deliver(s.callback, "acme", f.callbackQuery, f.cookie)
		}, result{status: 302, location: "error=provider_unavailable", tokenCalled: true}},
		{"token endpoint timeout", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			s.prov.Delay(6 * time.Second)
			defer s.prov.Delay(0)
			return s.deliver(s.slowCB, "acme", f.callbackQuery, f.cookie)
		}, result{status: 302, location: "error=provider_unavailable", tokenCalled: true}},
		{"token endpoint redirects (S13)", func(t *testing.T, f flow, _ string) events.APIGatewayV2HTTPResponse {
			s.prov.FailNext(1, 307, "text/plain", "", http.Header{"Location": {s.prov.TokenURL()}})
			return s.deliver(s.callback, "acme", f.callbackQuery, f.cookie)
		}, result{status: 302, location: "error=provider_unavailable", tokenCalled: true}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "neg-" + string(rune('a'+i))
			f := s.begin(id)
			before := s.prov.TokenRequests()
			resp := tt.run(t, f, id)
			if resp.StatusCode != tt.want.status {
				t.Fatalf("status %d, want %d; body %s; headers %v", resp.StatusCode, tt.want.status, resp.Body, resp.Headers)
			}
			assertSecurityHeaders(t, resp)
			if tt.want.location != "" {
				loc := resp.Headers["Location"]
				if !strings.HasPrefix(loc, appOrigin+"/connected?") || !strings.Contains(loc, tt.want.location) {
					t.Errorf("Location %q, want the app with %q", loc, tt.want.location)
				}
			} else if !strings.Contains(resp.Headers["Content-Type"], "text/html") || resp.Body == "" {
				t.Errorf("want a plain error page, got %v %q", resp.Headers, resp.Body)
			}
			assertNoSecretsIn(t, resp.Headers["Location"]+resp.Body, f.code, f.state)
			if strings.Contains(resp.Body, "<svg") {
				t.Error("provider text echoed into the page")
			}
			if got := s.prov.TokenRequests() - before; tt.want.tokenCalled != (got > 0) || got > 1 {
				t.Errorf("%d token requests (want called=%v)", got, tt.want.tokenCalled)
			}
			if _, err := s.conn(id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a connection was stored: %v", err)
			}
		})
	}
}

// TestReplay (S1, S12): a callback URL works once. Replaying it — also at
// the same moment from two function instances — redeems the code once.
func TestReplay(t *testing.T) {
	s := newStack(t)
	f := s.begin("replay")
	before := s.prov.TokenRequests()
	var wg sync.WaitGroup
	resps := make([]events.APIGatewayV2HTTPResponse, 2)
	for i, fn := range []*lambdarie.Function{s.callback, s.callback2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps[i] = s.deliver(fn, "acme", f.callbackQuery, f.cookie)
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range resps {
		if r.StatusCode == http.StatusFound && strings.Contains(r.Headers["Location"], "status=connected") {
			ok++
		} else if r.StatusCode != http.StatusForbidden {
			t.Errorf("concurrent callback: %d %v", r.StatusCode, r.Headers)
		}
	}
	if ok != 1 || s.prov.TokenRequests()-before != 1 {
		t.Fatalf("%d successes and %d token requests, want 1 and 1", ok, s.prov.TokenRequests()-before)
	}
	c, _ := s.conn("replay")
	resp := s.deliver(s.callback, "acme", f.callbackQuery, f.cookie)
	if resp.StatusCode != http.StatusForbidden || s.prov.TokenRequests()-before != 1 {
		t.Fatalf("replay: %d, %d token requests", resp.StatusCode, s.prov.TokenRequests()-before)
	}
	if c2, _ := s.conn("replay"); c2.Version != c.Version {
		t.Fatal("replay changed the connection")
	}
}

// TestConnectRejects: only links the app signed start a flow.
func TestConnectRejects(t *testing.T) {
	s := newStack(t)
	future := time.Now().Add(time.Hour)
	good := s.link("cust-1", returnTo, nil, future)
	tests := []struct {
		name, provider, query string
		status                int
	}{
		{"unsigned", "acme", "connection_id=cust-1&return_to=" + url.QueryEscape(returnTo), 403},
		{"bad signature", "acme", strings.Replace(good, "sig=", "sig=AA", 1), 403},
		{"expired", "acme", s.link("cust-1", returnTo, nil, time.Now().Add(-time.Second)), 403},
		{"return_to outside RETURN_ORIGINS (S15)", "acme", s.link("cust-1", "https://evil.example/", nil, future), 403},
		{"return_to look-alike (S15)", "acme", s.link("cust-1", "https://app.example.com.evil.example/", nil, future), 403},
		{"link for another provider", "other", good, 403},
		{"unknown provider", "nope", good, 404},
		{"duplicated parameter", "acme", good + "&connection_id=cust-2", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.prov.Requests())
			resp := s.connect(tt.provider, tt.query, nil)
			if resp.StatusCode != tt.status || len(resp.Cookies) != 0 || resp.Headers["Location"] != "" {
				t.Fatalf("got %d %v %v, want %d page", resp.StatusCode, resp.Headers, resp.Cookies, tt.status)
			}
			assertSecurityHeaders(t, resp)
			if len(s.prov.Requests()) != before {
				t.Fatal("provider contacted")
			}
		})
	}
}

func assertSecurityHeaders(t *testing.T, resp events.APIGatewayV2HTTPResponse) {
	t.Helper()
	if resp.Headers["Cache-Control"] != "no-store" || resp.Headers["Referrer-Policy"] != "no-referrer" {
		t.Errorf("security headers missing: %v", resp.Headers)
	}
}

func assertNoSecretsIn(t *testing.T, s string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && (strings.Contains(s, v) || strings.Contains(s, url.QueryEscape(v))) {
			t.Errorf("response contains a code or state (%.6s…)", v)
		}
	}
	if strings.Contains(s, clientSecret) {
		t.Error("response contains the client secret")
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
	m := c.ExpiresAt.Sub(c.RefreshDue)
	return !c.RefreshDue.IsZero() && m <= margin+time.Second && m >= margin-margin/5-time.Second
}
