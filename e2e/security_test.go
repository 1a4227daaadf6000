package e2e

// The security checklist (docs/security.md, rows S1–S24; S24 in confirm_test.go), row by row:
// one TestS<n>_… per row whose proof needs the built functions under the
// Lambda Runtime Interface Emulator — DynamoDB's conditional writes, the
// state and tokens sealed under KMS, a function's deadline, a catalog
// refused at start, BASE_URL from the environment, the shipped catalog.
// Each asserts the row's "test (input → expected)" column and the row's
// other properties where they can be observed from outside. The rows the
// connect and callback handlers decide alone (S3–S6, S8–S11, S14–S16)
// are tested in process, in shared/httpapi; S20 (encryption at rest) is in
// the stores' tests; S22 (logs) is the stack's log check, which runs at
// the end of every test below too.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/flowtest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/seedproviders"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testcatalog"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// ---------------------------------------------------------------------------
// S1–S21, one test per row that needs the built functions

// TestS1_StateSingleUseAndExpiring — S1 (RFC 6749 §10.12; RFC 9700 §2.1,
// §4.7): the state carries ≥ 128 random bits and lives ≤ 15 minutes; its
// record is consumed by the first callback (a conditional delete, so two
// identical callbacks at once redeem the code once) and a replayed
// callback URL gets a 4xx; an expired state is refused even while its
// record is still in the table (DynamoDB TTL deletes late).
func TestS1_StateSingleUseAndExpiring(t *testing.T) {
	s := newStack(t)

	// ≥ 128 bits, ≤ 15 minutes, a fresh nonce per flow.
	start := time.Now()
	st := s.Start(signing.Link{Provider: "acme", ConnectionID: "s1-a", ReturnTo: returnTo})
	other := s.Start(signing.Link{Provider: "acme", ConnectionID: "s1-b", ReturnTo: returnTo})
	parts := strings.Split(st.State, ".")
	if len(parts) != 4 {
		t.Fatalf("state has %d parts, want kid.nonce.exp.sig", len(parts))
	}
	nonce, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || len(nonce)*8 < 128 {
		t.Fatalf("state nonce has %d bits (%v), want ≥ 128", len(nonce)*8, err)
	}
	if strings.Split(other.State, ".")[1] == parts[1] {
		t.Fatal("two flows share a state nonce")
	}
	exp, _ := strconv.ParseInt(parts[2], 10, 64)
	if life := time.Unix(exp, 0).Sub(start); life <= 0 || life > 15*time.Minute+time.Second {
		t.Fatalf("state lives %v, want ≤ 15 min", life)
	}
	if ma := cookieAttr(st.Resp.Cookies[0], "Max-Age"); ma == "" || atoi(ma) <= 0 || atoi(ma) > 900 {
		t.Fatalf("binding cookie Max-Age %q, want 1..900", ma)
	}
	rec := s.stateItem(signing.Hash(string(parts[1])))
	if rec == nil {
		t.Fatal("no state record")
	}
	if e := atoi(rec["expires_at"]); time.Unix(int64(e), 0).After(start.Add(15*time.Minute + time.Second)) {
		t.Fatalf("state record expires %v after the flow started", time.Unix(int64(e), 0).Sub(start))
	}

	t.Run("expired", func(t *testing.T) {
		s.Within(t)
		f := s.Begin("s1-exp")
		tests := []struct {
			name             string
			signed, recorded time.Time // the state's signed expiry and its record's expiry
		}{
			{"signature and record expired, record still in the table", time.Now().Add(-time.Minute), time.Now().Add(-time.Minute)},
			{"record expired, signature still valid", time.Now().Add(5 * time.Minute), time.Now().Add(-time.Second)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s.Within(t)
				value, cookie := s.PlantState(tt.signed, tt.recorded, returnTo, "s1-exp")
				before := s.prov.TokenRequests()
				resp := s.Deliver("acme", "code="+f.Code+"&state="+url.QueryEscape(value), cookie)
				if resp.StatusCode != http.StatusForbidden || resp.Headers["Location"] != "" {
					t.Fatalf("expired state: %d %v, want a 403 page", resp.StatusCode, resp.Headers)
				}
				if n := s.prov.TokenRequests() - before; n != 0 {
					t.Fatalf("%d token requests for an expired state", n)
				}
			})
		}
	})

	t.Run("replay", func(t *testing.T) {
		s.Within(t)
		f := s.Begin("s1-replay")
		before := s.prov.TokenRequests()
		if resp := s.Deliver("acme", f.CallbackQuery, f.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
			t.Fatalf("first callback: %d %v", resp.StatusCode, resp.Headers)
		}
		if s.stateItem(f.StateID()) != nil {
			t.Fatal("state record still in the table after a successful callback")
		}
		c, _ := s.Conn("s1-replay")
		for _, fn := range []*lambdarie.Function{s.callback, s.callback2} { // a warm and a fresh instance
			resp := s.DeliverTo(via(fn), "acme", f.CallbackQuery, f.Cookie)
			if resp.StatusCode < 400 || resp.StatusCode > 499 || resp.Headers["Location"] != "" {
				t.Fatalf("replayed callback URL: %d %v, want a 4xx page", resp.StatusCode, resp.Headers)
			}
		}
		if n := s.prov.TokenRequests() - before; n != 1 {
			t.Fatalf("%d token requests, want 1", n)
		}
		if c2, _ := s.Conn("s1-replay"); c2.Version != c.Version {
			t.Fatal("a replay changed the connection")
		}
	})

	t.Run("two identical callbacks at once", func(t *testing.T) {
		s.Within(t)
		f := s.Begin("s1-race")
		before := s.prov.TokenRequests()
		s.prov.Delay(300 * time.Millisecond) // the loser must not wait for the winner
		defer s.prov.Delay(0)
		resps := s.deliverAtOnce("acme", f.CallbackQuery, f.Cookie)
		ok := 0
		for _, r := range resps {
			switch {
			case r.StatusCode == http.StatusFound && strings.Contains(r.Headers["Location"], "status=connected"):
				ok++
			case r.StatusCode != http.StatusForbidden:
				t.Errorf("concurrent callback: %d %v", r.StatusCode, r.Headers)
			}
		}
		if n := s.prov.TokenRequests() - before; ok != 1 || n != 1 {
			t.Fatalf("%d successes and %d token requests, want exactly 1 and 1", ok, n)
		}
	})
}

// TestS2_StateBoundToBrowser — S2 (RFC 6749 §10.12; RFC 6819 §4.4.1.8;
// RFC 9700 §2.1): the state is bound to the browser that started the flow
// by a __Host- cookie (Secure, HttpOnly, SameSite=Lax, Path=/, no Domain)
// whose hash is in the state record. An attacker's valid code+state opened
// in a victim's browser — no cookie, the victim's own cookie, a forged or a
// doubled cookie — gets 403, writes nothing to the table, reaches no token
// endpoint, and leaves the state usable by the browser it belongs to.
func TestS2_StateBoundToBrowser(t *testing.T) {
	s := newStack(t)
	st := s.Start(signing.Link{Provider: "acme", ConnectionID: "s2-attacker", ReturnTo: returnTo})
	raw := st.Resp.Cookies[0]
	name, value, _ := strings.Cut(st.Cookie, "=")
	if !strings.HasPrefix(name, "__Host-") {
		t.Errorf("binding cookie %q lacks the __Host- prefix", name)
	}
	for _, attr := range []string{"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !hasCookieAttr(raw, attr) {
			t.Errorf("binding cookie %q lacks %s", raw, attr)
		}
	}
	if cookieAttr(raw, "Domain") != "" {
		t.Errorf("binding cookie %q has a Domain", raw)
	}
	rec := s.stateItem(st.StateID())
	if rec == nil || rec["binding_hash"] != signing.Hash(value) {
		t.Fatalf("state record's binding_hash is not the hash of the cookie: %v", rec["binding_hash"])
	}
	if strings.Contains(st.State, value) || strings.Contains(st.Resp.Headers["Location"], value) {
		t.Fatal("the binding value travels in the URL")
	}

	// The attacker consents with their own account and stops before the
	// callback: their code and state are what they lure the victim into.
	attack := s.Consent(st.AuthURL)
	victim := s.Begin("s2-victim")
	tests := []struct {
		name    string
		cookies []string
	}{
		{"no cookie", nil},
		{"the victim's own binding cookie", []string{victim.Cookie}},
		{"the right cookie name with another value", []string{name + "=" + strings.Repeat("A", len(value))}},
		{"the right cookie name, empty", []string{name + "="}},
		{"the right cookie twice", []string{st.Cookie, name + "=victims-value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			s.AssertCallbackRefused(http.StatusForbidden, "acme", attack.RawQuery, tt.cookies...)
		})
	}
	// The state was left for its own browser; the victim's flow is intact.
	if resp := s.Deliver("acme", attack.RawQuery, st.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("the state's own browser: %d %v", resp.StatusCode, resp.Headers)
	}
	if resp := s.Deliver("acme", victim.CallbackQuery, victim.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("the victim's own flow: %d %v", resp.StatusCode, resp.Headers)
	}
}

// TestS7_NoPlainPKCE — S7 (RFC 7636 §7.2): the broker never sends
// code_challenge_method=plain: every challenge it sends is S256 (never the
// verifier itself), and a catalog entry that tries to force the method is
// refused when the function starts.
func TestS7_NoPlainPKCE(t *testing.T) {
	s := newStack(t)
	for i := range 3 {
		f := s.Begin("s7-" + strconv.Itoa(i))
		q := f.AuthURL.Query()
		if len(q["code_challenge_method"]) != 1 || q.Get("code_challenge_method") != "S256" {
			t.Fatalf("code_challenge_method %q, want exactly S256", q["code_challenge_method"])
		}
		if resp := s.Deliver("acme", f.CallbackQuery, f.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
			t.Fatalf("callback: %d %v", resp.StatusCode, resp.Headers)
		}
		if v := flowtest.CodeRequests(s.prov, f.Code)[0].Params.Get("code_verifier"); v == "" || v == q.Get("code_challenge") {
			t.Fatal("the challenge is the verifier (plain)")
		}
	}
	base := "  plainer:\n    authorization_url: https://plain.example/authorize\n    token_url: https://plain.example/token\n    grant_types: [authorization_code]\n"
	for _, tt := range []struct{ name, extra string }{
		{"authorize_params sets the method", "    authorize_params: {code_challenge_method: plain}\n"},
		{"pkce: plain", "    pkce: plain\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			s.assertCatalogRefused(base+tt.extra, "")
		})
	}
}

// TestS12_SameRedirectURIAndCodeRedeemedOnce — S12 (RFC 6749 §4.1.3): the
// token request carries exactly the redirect_uri of the authorization
// request, and a code is sent to the token endpoint once: replaying the
// callback — twice at once, then again — never sends it a second time.
func TestS12_SameRedirectURIAndCodeRedeemedOnce(t *testing.T) {
	s := newStack(t)
	f := s.Begin("s12")
	resps := s.deliverAtOnce("acme", f.CallbackQuery, f.Cookie)
	resps = append(resps, s.Deliver("acme", f.CallbackQuery, f.Cookie), s.DeliverTo(via(s.callback2), "acme", f.CallbackQuery, f.Cookie))
	ok := 0
	for _, r := range resps {
		if strings.Contains(r.Headers["Location"], "status=connected") {
			ok++
		} else if r.StatusCode != http.StatusForbidden {
			t.Errorf("replayed callback: %d %v", r.StatusCode, r.Headers)
		}
	}
	reqs := flowtest.CodeRequests(s.prov, f.Code)
	if ok != 1 || len(reqs) != 1 {
		t.Fatalf("%d successes, code sent %d times; want 1 and 1", ok, len(reqs))
	}
	if got, want := reqs[0].Params.Get("redirect_uri"), f.AuthURL.Query().Get("redirect_uri"); got != want || want != baseURL+"/callback/acme" {
		t.Fatalf("token request redirect_uri %q, authorization request %q", got, want)
	}
	if reqs[0].Status != http.StatusOK {
		t.Fatalf("the provider refused the exchange: %d", reqs[0].Status)
	}
}

// TestS13_NoRedirectFollowedAndBoundedBody — S13 (RFC 6749 §10.9): the
// provider client verifies TLS, follows no redirect (a 307/308 would
// re-send the POST with the client secret), gives up in time and reads a
// bounded response: a token endpoint answering 307/308 gets no second
// request anywhere; a 10 MB token response (a valid one, were it read
// whole) and an endless body end in a prompt error; an untrusted
// certificate stops the request before it is sent; a hanging endpoint is
// abandoned before the function's deadline.
func TestS13_NoRedirectFollowedAndBoundedBody(t *testing.T) {
	s, h := newSecStack(t)
	tests := []struct {
		name     string
		provider string
		mode     string
		fn       func() *lambdarie.Function
		maxTime  time.Duration
		hits     []string // requests the hostile endpoint must have seen
	}{
		{"307 Temporary Redirect", "hostile", "307", nil, 5 * time.Second, []string{"/token"}},
		{"308 Permanent Redirect", "hostile", "308", nil, 5 * time.Second, []string{"/token"}},
		{"10 MB body", "hostile", "big", nil, 5 * time.Second, []string{"/token"}},
		{"endless body", "hostile", "endless", nil, 6 * time.Second, []string{"/token"}},
		{"untrusted TLS certificate", "untrusted", "", nil, 5 * time.Second, nil},
		{"no answer (3 s function)", "hostile", "hang", func() *lambdarie.Function { return s.slowCB }, 5 * time.Second, []string{"/token"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			id := "s13-" + strconv.Itoa(i)
			h.reset(tt.mode)
			st := s.Start(signing.Link{Provider: tt.provider, ConnectionID: id, ReturnTo: returnTo})
			back := s.Consent(st.AuthURL)
			fn := s.callback
			if tt.fn != nil {
				fn = tt.fn()
			}
			start := time.Now()
			resp := s.DeliverTo(via(fn), tt.provider, back.RawQuery, st.Cookie)
			took := time.Since(start)
			loc, _ := url.Parse(resp.Headers["Location"])
			if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("error") != "provider_unavailable" {
				t.Fatalf("got %d %q, want an error redirect with provider_unavailable", resp.StatusCode, resp.Headers["Location"])
			}
			if took > tt.maxTime {
				t.Fatalf("the callback took %v, want ≤ %v", took, tt.maxTime)
			}
			if got := h.requests(); !slices.Equal(got, tt.hits) {
				t.Fatalf("the hostile endpoint saw %v, want %v", got, tt.hits)
			}
			if n := h.tlsHits(); n != 0 {
				t.Fatalf("%d requests sent over an unverified TLS connection", n)
			}
			if _, err := s.store.GetConnection(t.Context(), tt.provider, id); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a connection was stored: %v", err)
			}
		})
	}
}

// TestS17_OnlyCodeFlow — S17 (RFC 9700 §2.1.2, §2.4): the authorization
// URL asks for response_type=code and nothing else, with only the scopes
// the link asked for (the catalog's defaults when it asked for none); a
// link asking for the implicit or password grant is refused, and so is a
// catalog that declares them.
func TestS17_OnlyCodeFlow(t *testing.T) {
	s := newStack(t)
	for _, tt := range []struct {
		scopes []string
		want   string
	}{{nil, "read"}, {[]string{"read"}, "read"}, {[]string{"read", "write"}, "read write"}} {
		st := s.Start(signing.Link{Provider: "acme", ConnectionID: "s17", ReturnTo: returnTo, Scopes: tt.scopes})
		q := st.AuthURL.Query()
		if len(q["response_type"]) != 1 || q.Get("response_type") != "code" || q.Has("response_mode") {
			t.Fatalf("authorization URL %s: want exactly response_type=code", st.AuthURL)
		}
		if q.Get("scope") != tt.want {
			t.Errorf("link scopes %v: scope %q, want %q", tt.scopes, q.Get("scope"), tt.want)
		}
	}
	for _, grant := range []string{"implicit", "password", "token"} {
		t.Run("link asks for "+grant, func(t *testing.T) {
			s.Within(t)
			snap := s.Snapshot()
			resp := s.Connect("acme", s.Sign(signing.Link{Provider: "acme", ConnectionID: "s17-" + grant, ReturnTo: returnTo, Grant: grant}))
			if resp.StatusCode != http.StatusForbidden || resp.Headers["Location"] != "" || len(resp.Cookies) != 0 {
				t.Fatalf("got %d %v, want a 403 page", resp.StatusCode, resp.Headers)
			}
			s.AssertUnchanged(snap)
		})
	}
	for _, grants := range []string{"[implicit]", "[password]", "[authorization_code, implicit]"} {
		t.Run("catalog declares "+grants, func(t *testing.T) {
			s.Within(t)
			s.assertCatalogRefused("  flows:\n    authorization_url: https://flows.example/authorize\n    token_url: https://flows.example/token\n    grant_types: "+grants+"\n", "not allowed")
		})
	}
}

// TestS18_RedirectURIFromConfig — S18 (RFC 9700 §4.13): the redirect_uri
// comes from BASE_URL only: spoofed Host, X-Forwarded-*, Forwarded headers
// or API Gateway domain names change neither the authorization request's
// redirect_uri nor the token request's, nor where the browser is sent.
func TestS18_RedirectURIFromConfig(t *testing.T) {
	s := newStack(t)
	want := baseURL + "/callback/acme"
	tests := []struct {
		name    string
		headers map[string]string
		domain  bool // also set requestContext.domainName
	}{
		{"X-Forwarded-Host", map[string]string{"x-forwarded-host": "evil.example"}, false},
		{"Host", map[string]string{"host": "evil.example"}, false},
		{"Forwarded", map[string]string{"forwarded": "host=evil.example;proto=http"}, false},
		{"X-Forwarded-Proto and -Port", map[string]string{"x-forwarded-proto": "http", "x-forwarded-port": "8080"}, false},
		{"X-Original-Host", map[string]string{"x-original-host": "evil.example", "x-forwarded-server": "evil.example"}, false},
		{"requestContext.domainName", nil, true},
		{"all at once", map[string]string{"x-forwarded-host": "evil.example", "host": "evil.example", "forwarded": "host=evil.example", "x-forwarded-proto": "http"}, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			id := "s18-" + strconv.Itoa(i)
			edit := func(ev *events.APIGatewayV2HTTPRequest) {
				maps.Copy(ev.Headers, tt.headers)
				if tt.domain {
					ev.RequestContext.DomainName, ev.RequestContext.DomainPrefix = "evil.example", "evil"
				}
			}
			st := s.Start(signing.Link{Provider: "acme", ConnectionID: id, ReturnTo: returnTo}, edit)
			if got := st.AuthURL.Query().Get("redirect_uri"); got != want {
				t.Fatalf("redirect_uri %q, want %q", got, want)
			}
			back := s.Consent(st.AuthURL)
			ev := s.CallbackRequest("acme", back.RawQuery, st.Cookie)
			edit(&ev)
			cb := s.Callback(t, ev)
			s.AssertConnected(cb.Headers, id)
			if !strings.HasPrefix(cb.Headers["Location"], appOrigin+"/") {
				t.Fatalf("final redirect %q", cb.Headers["Location"])
			}
			reqs := flowtest.CodeRequests(s.prov, back.Query().Get("code"))
			if len(reqs) != 1 || reqs[0].Params.Get("redirect_uri") != want {
				t.Fatalf("token request redirect_uri %v, want %q", reqs, want)
			}
		})
	}
}

// TestS19_ProviderURLsAndParams — S19 (RFC 9700 §2.6): per-connection URL
// parameters must match the provider's declared pattern — with the shipped
// GetResponse 360 entry, domain=169.254.169.254 (and other values that
// would move a request elsewhere) is refused at authorize with nothing
// written and no provider contacted, even in a correctly signed link —
// and a catalog whose provider URLs are not https (outside loopback) is
// refused when the function starts.
func TestS19_ProviderURLsAndParams(t *testing.T) {
	s, _ := newSecStack(t)
	srv := s.server("getresponse360")
	link := func(params map[string]string) signing.Link {
		return signing.Link{Provider: "getresponse360", ConnectionID: "s19", ReturnTo: returnTo, Params: params, Expires: time.Now().Add(time.Hour)}
	}
	// The control: a customer domain that fits the pattern.
	if st := s.Start(link(map[string]string{"domain": gr360Domain, "region": "pl"})); !strings.HasPrefix(st.AuthURL.String(), srv.URL+"/"+gr360Domain+"/") {
		t.Fatalf("control: authorization URL %s", st.AuthURL)
	}

	tests := []struct {
		name   string
		params map[string]string
	}{
		{"domain=169.254.169.254", map[string]string{"domain": "169.254.169.254", "region": "pl"}},
		{"domain=127.0.0.1", map[string]string{"domain": "127.0.0.1", "region": "pl"}},
		{"domain=localhost", map[string]string{"domain": "localhost", "region": "pl"}},
		{"domain in capitals", map[string]string{"domain": "MAIL.ACME-SHOP.COM", "region": "pl"}},
		{"domain with a port", map[string]string{"domain": "evil.example:8443", "region": "pl"}},
		{"domain with a path", map[string]string{"domain": "evil.example/x", "region": "pl"}},
		{"domain with userinfo", map[string]string{"domain": "mail.acme-shop.com@evil.example", "region": "pl"}},
		{"domain missing", map[string]string{"region": "pl"}},
		{"region=evil", map[string]string{"domain": gr360Domain, "region": "evil"}},
		{"region=com.evil.example", map[string]string{"domain": gr360Domain, "region": "com.evil.example"}},
		{"an undeclared parameter", map[string]string{"domain": gr360Domain, "region": "pl", "host": "evil.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			snap, before := s.Snapshot(), len(srv.Requests())
			// Signed with the documented algorithm, so that values the
			// signing library itself refuses still reach authorize.
			resp := s.Connect("getresponse360", s.RawLink(link(tt.params)))
			if resp.StatusCode != http.StatusForbidden || resp.Headers["Location"] != "" || len(resp.Cookies) != 0 {
				t.Fatalf("got %d %v, want a 403 page", resp.StatusCode, resp.Headers)
			}
			s.AssertUnchanged(snap)
			if len(srv.Requests()) != before {
				t.Fatal("the provider was contacted")
			}
		})
	}
	for _, tt := range []struct{ name, authURL, tokenURL string }{
		{"http token_url", "https://plainhttp.example/authorize", "http://plainhttp.example/token"},
		{"http authorization_url", "http://plainhttp.example/authorize", "https://plainhttp.example/token"},
		{"http on a link-local address", "https://plainhttp.example/authorize", "http://169.254.169.254/token"},
	} {
		t.Run("catalog with "+tt.name, func(t *testing.T) {
			s.Within(t)
			s.assertCatalogRefused("  plainhttp:\n    authorization_url: "+tt.authURL+"\n    token_url: "+tt.tokenURL+"\n    grant_types: [authorization_code]\n", "must be https")
		})
	}
}

// TestS21_OneWriterPerConnection — S21 (RFC 6749 §6; RFC 9700 §4.14): two
// refresh functions sweeping one due connection at once send one token
// request; the rotated refresh token replaces the old one (which the
// provider no longer accepts); invalid_grant → needs_reauth after exactly
// one request, and the next sweeps send none.
func TestS21_OneWriterPerConnection(t *testing.T) {
	s := newStack(t)
	f := s.Begin("s21")
	if resp := s.Deliver("acme", f.CallbackQuery, f.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("callback: %d %v", resp.StatusCode, resp.Headers)
	}
	second := s.extraFunction("./functions/refresh", map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "60"})
	if sum, err := sweep(t.Context(), second); err != nil || sum["due"] != 0 { // warm: both start their sweeps at once
		t.Fatalf("warm-up sweep: %v %v", sum, err)
	}

	s.makeDue("s21")
	c0 := s.ConnOf("acme", "s21")
	before := s.prov.TokenRequests()
	s.prov.Delay(time.Second) // the first refresher holds its lease while the second looks
	sums := make([]map[string]int, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, fn := range []*lambdarie.Function{s.refresh, second} {
		wg.Go(func() { sums[i], errs[i] = sweep(t.Context(), fn) })
	}
	wg.Wait()
	s.prov.Delay(0)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.prov.TokenRequests() - before; n != 1 || sums[0]["refreshed"]+sums[1]["refreshed"] != 1 {
		t.Fatalf("two concurrent sweeps: %d token requests, summaries %v %v; want 1 request, 1 refresh", n, sums[0], sums[1])
	}
	c1 := s.ConnOf("acme", "s21")
	if c1.RefreshToken == c0.RefreshToken || !s.prov.ValidRefresh(c1.RefreshToken) || s.prov.ValidRefresh(c0.RefreshToken) ||
		!s.prov.Valid(c1.AccessToken) || c1.Version <= c0.Version {
		t.Fatalf("after the refresh: rotated %v, new valid %v, old valid %v, version %d→%d",
			c1.RefreshToken != c0.RefreshToken, s.prov.ValidRefresh(c1.RefreshToken), s.prov.ValidRefresh(c0.RefreshToken), c0.Version, c1.Version)
	}
	if tr := last(tokenRequests(s.prov, "/token")); tr.Params.Get("grant_type") != "refresh_token" || tr.Params.Get("refresh_token") != c0.RefreshToken {
		t.Fatal("the refresh did not present the stored refresh token")
	}

	// The grant is revoked: one request, needs_reauth, then silence.
	s.prov.RevokeRefresh(c1.RefreshToken)
	s.makeDue("s21")
	before = s.prov.TokenRequests()
	if sum := s.runRefresh(); sum["needs_reauth"] != 1 {
		t.Fatalf("sweep after revocation: %v", sum)
	}
	if n := s.prov.TokenRequests() - before; n != 1 {
		t.Fatalf("%d token requests for invalid_grant, want 1 (no retries)", n)
	}
	c2 := s.ConnOf("acme", "s21")
	if c2.Status != store.StatusNeedsReauth || !c2.NextRefresh.IsZero() || c2.RefreshToken != c1.RefreshToken {
		t.Fatalf("after invalid_grant %+v", redact(c2))
	}
	for _, fn := range []*lambdarie.Function{s.refresh, second} {
		sum, err := sweep(t.Context(), fn)
		if err != nil || sum["due"] != 0 {
			t.Fatalf("next sweep: %v %v", sum, err)
		}
	}
	if n := s.prov.TokenRequests() - before; n != 1 {
		t.Fatalf("%d token requests after needs_reauth, want none", n-1)
	}
}

// ---------------------------------------------------------------------------
// The extra providers some rows need

// newSecStack is newStack with the providers S13 and S19 need:
//
//   - hostile:   consent at a strict test provider; the token endpoint is
//     a hostileEndpoint (redirects, huge or endless bodies, no answer)
//   - untrusted: its token endpoint is https with a certificate nobody
//     trusts
//   - getresponse360: the shipped entry, hosts moved onto its test server
func newSecStack(t *testing.T) (*stack, *hostileEndpoint) {
	h := newHostileEndpoint(t)
	s := newStackWith(t, func(redirect func(string) string) []extraProvider {
		cfg := func(name string) providertest.Config {
			return providertest.Config{ClientID: name + "-client-id", ClientSecret: name + "-secret-Wm3" + name[:2], RedirectURI: redirect(name)}
		}
		entry := func(name, authURL, tokenURL, more string) string {
			return "  " + name + ":\n    authorization_url: " + authURL + "\n    token_url: " + tokenURL +
				"\n    grant_types: [authorization_code]\n" + more
		}
		extra := func(name, yaml string, c providertest.Config, srv *providertest.Server) extraProvider {
			return extraProvider{name: name, entry: yaml, id: c.ClientID, secret: c.ClientSecret, srv: srv}
		}
		var out []extraProvider

		c := cfg("hostile")
		pt := providertest.New(t, c)
		out = append(out, extra("hostile", entry("hostile", pt.AuthorizeURL(), h.URL+"/token", ""), c, pt))

		c = cfg("untrusted")
		pt = providertest.New(t, c)
		out = append(out, extra("untrusted", entry("untrusted", pt.AuthorizeURL(), h.TLSURL+"/token", ""), c, pt))

		gr := seedproviders.Client{ID: "getresponse360-client-id", Secret: "gr360-secret-Hn07", RedirectURI: redirect("getresponse360")}
		pt = seedproviders.GetResponse360(t, gr, gr360Domain, "pl")
		out = append(out, extraProvider{name: "getresponse360", entry: seedEntry(t, "getresponse360", pt.URL), id: gr.ID, secret: gr.Secret, srv: pt})
		return out
	})
	return s, h
}

// hostileEndpoint is a token endpoint that misbehaves as its mode says,
// over plain http (URL) and over https with an untrusted certificate
// (TLSURL, which must never see a request).
type hostileEndpoint struct {
	URL, TLSURL string
	done        chan struct{} // closed when the test ends: ends hanging answers

	mu    sync.Mutex
	mode  string
	paths []string
	tls   int
}

func newHostileEndpoint(t *testing.T) *hostileEndpoint {
	h := &hostileEndpoint{done: make(chan struct{})}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.tls++
		h.mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	ts.StartTLS()
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(h.done) }) // runs before the servers close
	h.URL, h.TLSURL = srv.URL, ts.URL
	return h
}

// reset sets the mode and forgets the requests seen.
func (h *hostileEndpoint) reset(mode string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mode, h.paths, h.tls = mode, nil, 0
}

func (h *hostileEndpoint) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.paths)
}

func (h *hostileEndpoint) tlsHits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tls
}

func (h *hostileEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	mode := h.mode
	h.paths = append(h.paths, r.URL.Path)
	h.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	if r.URL.Path != "/token" { // where a redirect would have sent the secret
		w.WriteHeader(http.StatusOK)
		return
	}
	chunk := []byte(strings.Repeat("a", 64<<10))
	switch mode {
	case "307", "308":
		w.Header().Set("Location", h.URL+"/stolen")
		code, _ := strconv.Atoi(mode)
		w.WriteHeader(code)
	case "big": // 10 MB of a valid token response
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"token_type":"Bearer","expires_in":3600,"access_token":"`)
		for range (10 << 20) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		_, _ = io.WriteString(w, `"}`)
	case "endless":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"token_type":"Bearer","access_token":"`)
		for range 1 << 14 { // 1 GiB at most
			if _, err := w.Write(chunk); err != nil {
				return
			}
			select {
			case <-h.done:
				return
			case <-r.Context().Done():
				return
			default:
			}
		}
	case "hang":
		select {
		case <-r.Context().Done():
		case <-h.done:
		}
	default:
		w.WriteHeader(http.StatusInternalServerError)
	}
}

// ---------------------------------------------------------------------------
// Helpers

// deliverAtOnce sends the same callback to both callback instances at the
// same moment.
func (s *stack) deliverAtOnce(provider, query string, cookies ...string) []events.APIGatewayV2HTTPResponse {
	s.T.Helper()
	out := make([]events.APIGatewayV2HTTPResponse, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, fn := range []*lambdarie.Function{s.callback, s.callback2} {
		ev := sampleevent.Load(s.T, "callback.json", func(ev *events.APIGatewayV2HTTPRequest) {
			sampleevent.SetQuery(ev, provider, "callback", query)
			ev.Cookies = cookies
		})
		wg.Go(func() {
			raw, err := fn.Invoke(s.T.Context(), ev)
			if err == nil {
				err = json.Unmarshal(raw, &out[i])
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			s.T.Fatal(err)
		}
	}
	return out
}

// stateItem returns the raw state record with this id (string and number
// attributes only), or nil.
func (s *stack) stateItem(id string) map[string]string {
	s.T.Helper()
	return s.item(store.StateRecordKey(id), "state")
}

// item returns the table's item pk/sk as strings (its S and N attributes),
// nil if there is none.
func (s *stack) item(pk, sk string) map[string]string {
	s.T.Helper()
	item := s.aws.Item(s.T, pk, sk)
	if item == nil {
		return nil
	}
	m := map[string]string{}
	for k, v := range item {
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			m[k] = v.Value
		case *types.AttributeValueMemberN:
			m[k] = v.Value
		}
	}
	return m
}

// extraFunction starts one more instance of pkg with the stack's
// environment and these overrides. It joins the stack's retired functions,
// whose logs the stack's log check (S22) searches when the test ends.
func (s *stack) extraFunction(pkg string, env map[string]string) *lambdarie.Function {
	s.T.Helper()
	e := maps.Clone(s.refreshEnv) // the stack's environment (and a timeout, which env may override)
	maps.Copy(e, env)
	fn := lambdarie.Start(s.root, lambdarie.Build(s.root, pkg), e)
	s.retired = append(s.retired, fn)
	return fn
}

// assertCatalogRefused starts an authorize function whose PROVIDERS_FILE
// holds only entry (YAML under "providers:") and checks that it refuses to
// start: the invoke fails and the log names a configuration error
// containing reason.
func (s *stack) assertCatalogRefused(entry, reason string) {
	s.T.Helper()
	file := testcatalog.File(s.T, []byte("providers:\n"+entry))
	fn := s.extraFunction("./functions/authorize", map[string]string{"PROVIDERS_FILE": file, "AWS_LAMBDA_FUNCTION_TIMEOUT": "10"})
	ev := sampleevent.Load(s.T, "connect.json", func(ev *events.APIGatewayV2HTTPRequest) {
		sampleevent.SetQuery(ev, "acme", "connect", s.Link("refused", returnTo, nil, time.Now().Add(time.Hour)))
	})
	out, err := fn.Invoke(s.T.Context(), ev)
	var fe *lambdarie.FunctionError
	if !errors.As(err, &fe) {
		s.T.Fatalf("a function with this catalog started and answered: %s (%v)", out, err)
	}
	// The emulator may answer before it has passed on the function's last
	// output.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		logs := fn.Logs()
		if strings.Contains(logs, "configuration error") && strings.Contains(logs, reason) {
			return
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("want a configuration error naming %q; logs:\n%s", reason, logs)
		}
	}
}

// provServer is the test server behind provider name ("acme" or an extra).
func (s *stack) provServer(name string) *providertest.Server {
	if name == "acme" {
		return s.prov
	}
	return s.server(name)
}

// cookieAttr returns the value of a Set-Cookie attribute ("" if absent).
func cookieAttr(setCookie, name string) string {
	for _, part := range strings.Split(setCookie, ";")[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// hasCookieAttr reports whether a Set-Cookie carries the attribute (a flag
// such as Secure, or name=value).
func hasCookieAttr(setCookie, attr string) bool {
	for _, part := range strings.Split(setCookie, ";")[1:] {
		if strings.EqualFold(strings.TrimSpace(part), attr) {
			return true
		}
	}
	return false
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestS23_LinkUsedOnce — S23: a connect link works from the first browser
// that opens it, and from no other. Its signed nonce (≥ 128 bits) is
// recorded by the first authorize with a conditional write bound to that
// browser's link cookie and expiring with the link; the same link from a
// second browser (a leaked or forwarded link) gets a plain page and writes
// nothing; the first browser going back and clicking again still connects.
func TestS23_LinkUsedOnce(t *testing.T) {
	s := newStack(t)
	l := signing.Link{Provider: "acme", ConnectionID: "s23", ReturnTo: returnTo, Expires: time.Now().Add(20 * time.Minute)}
	link := s.Sign(l)
	q, _ := url.ParseQuery(link)
	nonce, err := base64.RawURLEncoding.DecodeString(q.Get("nonce"))
	if err != nil || len(nonce)*8 < 128 {
		t.Fatalf("link nonce has %d bits (%v), want ≥ 128", len(nonce)*8, err)
	}

	first := s.StartQuery("acme", link)
	raw := first.Resp.Cookies[1]
	name, value, _ := strings.Cut(first.LinkCookie, "=")
	if !strings.HasPrefix(name, "__Host-") || cookieAttr(raw, "Domain") != "" {
		t.Errorf("link cookie %q: want the __Host- prefix and no Domain", raw)
	}
	for _, attr := range []string{"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !hasCookieAttr(raw, attr) {
			t.Errorf("link cookie %q lacks %s", raw, attr)
		}
	}
	if ma := atoi(cookieAttr(raw, "Max-Age")); ma <= 0 || ma > 20*60 {
		t.Errorf("link cookie Max-Age %d, want 1..1200 (the link's remaining life)", ma)
	}
	rec := s.item(store.LinkRecordKey(signing.Hash(q.Get("nonce"))), "link")
	if rec == nil || rec["binding_hash"] != signing.Hash(value) || rec["ttl"] != q.Get("exp") {
		t.Fatalf("link record %v: want the hash of the link cookie and the link's expiry as ttl", rec)
	}

	refused := func(t *testing.T, cookies ...string) {
		s.Within(t)
		snap := s.Snapshot()
		resp := s.Connect("acme", link, func(ev *events.APIGatewayV2HTTPRequest) { ev.Cookies = cookies })
		if resp.StatusCode != http.StatusForbidden || resp.Headers["Location"] != "" || len(resp.Cookies) != 0 ||
			!strings.Contains(resp.Body, "already used") {
			t.Fatalf("second browser: %d %v %v %q, want a 403 page saying the link was used", resp.StatusCode, resp.Headers, resp.Cookies, resp.Body)
		}
		s.AssertUnchanged(snap)
	}
	t.Run("another browser", func(t *testing.T) { refused(t) })
	t.Run("another browser with its own link cookie", func(t *testing.T) { refused(t, name+"="+strings.Repeat("A", len(value))) })
	t.Run("another browser with the first one's binding cookie", func(t *testing.T) { refused(t, first.Cookie) })

	// The first browser goes back and clicks again: a new flow, which
	// completes; the first flow's state is still its own.
	again := s.StartQuery("acme", link, func(ev *events.APIGatewayV2HTTPRequest) { ev.Cookies = []string{first.LinkCookie} })
	if again.State == first.State {
		t.Fatal("the retry reused the first flow's state")
	}
	back := s.Consent(again.AuthURL)
	if resp := s.Deliver("acme", back.RawQuery, again.Cookie); !strings.Contains(resp.Headers["Location"], "connection_id=s23") {
		t.Fatalf("the retry's callback: %d %v", resp.StatusCode, resp.Headers)
	}
}
