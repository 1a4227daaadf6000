package httpapi

// Rows of the security checklist (docs/security.md) that the connect and
// callback handlers decide alone: signature, state and query checks that
// need neither DynamoDB's conditions, KMS nor a built function, run in
// process on a fixtureWorld: S3–S6, S8–S11 and S14–S16, and the connect
// and callback refusals. The rows that do need them (S1, S2, S7, S12, S13,
// S17–S19, S21) stay in e2e, under the Lambda emulator.

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/flowtest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

const appOrigin = "https://app.example.com"

// TestConnectRejects: only links the app signed start a flow: each bad
// link gets a plain page with no cookie and no redirect, and the provider
// hears nothing.
func TestConnectRejects(t *testing.T) {
	s := newBrowser(t)
	future := fixtureNow.Add(30 * time.Minute)
	good := s.Link("cust-1", fixtureReturnTo, nil, future)
	tests := []struct {
		name, provider, query string
		status                int
	}{
		{"unsigned", "acme", "connection_id=cust-1&return_to=" + url.QueryEscape(fixtureReturnTo), 403},
		{"bad signature", "acme", strings.Replace(good, "sig=", "sig=AA", 1), 403},
		{"expired", "acme", s.Link("cust-1", fixtureReturnTo, nil, fixtureNow.Add(-time.Second)), 403},
		{"return_to outside RETURN_ORIGINS (S15)", "acme", s.Link("cust-1", "https://evil.example/", nil, future), 403},
		{"return_to look-alike (S15)", "acme", s.Link("cust-1", "https://app.example.com.evil.example/", nil, future), 403},
		{"link for another provider", "other", good, 403},
		{"unknown provider", "nope", good, 404},
		{"duplicated parameter", "acme", good + "&connection_id=cust-2", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			before := len(s.acme.Requests())
			resp := s.Connect(tt.provider, tt.query)
			if resp.StatusCode != tt.status || len(resp.Cookies) != 0 || resp.Headers["Location"] != "" {
				t.Fatalf("got %d %v %v, want %d page", resp.StatusCode, resp.Headers, resp.Cookies, tt.status)
			}
			flowtest.AssertSecurityHeaders(t, resp)
			if len(s.acme.Requests()) != before {
				t.Fatal("provider contacted")
			}
		})
	}
}

// TestCallbackRejects: every bad callback ends in an error page or an
// error redirect, never a 500, never a stored token, and — when the state
// is at fault — without any request reaching the token endpoint (S4).
// (A token endpoint that does not answer before the function's deadline is
// e2e's TestS13_NoRedirectFollowedAndBoundedBody.)
func TestCallbackRejects(t *testing.T) {
	s := newBrowser(t)
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
		run  func(t *testing.T, f flowtest.Flow, id string) events.APIGatewayV2HTTPResponse // id: the connection
		want result
	}{
		{"forged signature (S5)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.Deliver("acme", "code="+f.Code+"&state="+flip(f.State), f.Cookie)
		}, result{status: 403}},
		{"expired state", func(t *testing.T, f flowtest.Flow, id string) events.APIGatewayV2HTTPResponse {
			// A state signed and recorded eleven minutes ago, with its
			// browser's cookie: only the expiry stands in the way.
			old, _ := signing.NewState(s.keys, "acme", fixtureNow.Add(-11*time.Minute), 10*time.Minute)
			logcheck.Register(old.Value)
			if err := s.st.PutState(t.Context(), store.StateRecord{ID: old.ID, Provider: "acme", ConnectionID: id,
				ReturnTo: fixtureReturnTo, BindingHash: signing.Hash("old-browser"), ExpiresAt: old.Expires}); err != nil {
				t.Fatal(err)
			}
			return s.Deliver("acme", "code="+f.Code+"&state="+url.QueryEscape(old.Value), BindingCookieName(old.ID)+"=old-browser")
		}, result{status: 403}},
		{"missing state (S3)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.Deliver("acme", "code="+f.Code, f.Cookie)
		}, result{status: 400}},
		{"missing cookie (S2)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.Deliver("acme", f.CallbackQuery)
		}, result{status: 403}},
		{"foreign cookie (S2)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			name := strings.SplitN(f.Cookie, "=", 2)[0]
			return s.Deliver("acme", f.CallbackQuery, name+"=attackers-own-browser-value")
		}, result{status: 403}},
		{"cookie of another flow (S2)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			other := s.Begin("someone-else")
			return s.Deliver("acme", f.CallbackQuery, other.Cookie)
		}, result{status: 403}},
		{"state for acme at /callback/other (S9)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.Deliver("other", f.CallbackQuery, f.Cookie)
		}, result{status: 403}},
		{"duplicated state (S11)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.Deliver("acme", f.CallbackQuery+"&state="+url.QueryEscape(f.State), f.Cookie)
		}, result{status: 400}},
		{"duplicated code (S11)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.Deliver("acme", f.CallbackQuery+"&code=other", f.Cookie)
		}, result{status: 400}},
		{"code alone (S3)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.Deliver("acme", "code="+f.Code)
		}, result{status: 400}},
		{"access_denied, description not echoed (S10)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.Deliver("acme", "error=access_denied&error_description=%3Csvg%2Fonload%3Dalert(1)%3E&state="+url.QueryEscape(f.State), f.Cookie)
		}, result{status: 302, location: "error=access_denied"}},
		{"unknown error mapped (S10)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			return s.Deliver("acme", "error=%3Csvg%2Fonload%3Dalert(1)%3E&state="+url.QueryEscape(f.State), f.Cookie)
		}, result{status: 302, location: "error=provider_error"}},
		{"token endpoint invalid_grant", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			s.acme.FailNext(1, 400, "application/json", `{"error":"invalid_grant"}`, nil)
			return s.Deliver("acme", f.CallbackQuery, f.Cookie)
		}, result{status: 302, location: "error=provider_error", tokenCalled: true}},
		{"token endpoint 500", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			s.acme.FailNext(1, 500, "application/json", `{"error":"server_error"}`, nil)
			return s.Deliver("acme", f.CallbackQuery, f.Cookie)
		}, result{status: 302, location: "error=provider_unavailable", tokenCalled: true}},
		{"token endpoint HTML", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			s.acme.FailNext(1, 200, "text/html", `<html><body>Maintenance</body></html>`, nil)
			return s.Deliver("acme", f.CallbackQuery, f.Cookie)
		}, result{status: 302, location: "error=provider_unavailable", tokenCalled: true}},
		{"token endpoint redirects (S13)", func(t *testing.T, f flowtest.Flow, _ string) events.APIGatewayV2HTTPResponse {
			s.acme.FailNext(1, 307, "text/plain", "", http.Header{"Location": {s.acme.TokenURL()}})
			return s.Deliver("acme", f.CallbackQuery, f.Cookie)
		}, result{status: 302, location: "error=provider_unavailable", tokenCalled: true}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			id := "neg-" + string(rune('a'+i))
			f := s.Begin(id)
			before := s.acme.TokenRequests()
			resp := tt.run(t, f, id)
			if resp.StatusCode != tt.want.status {
				t.Fatalf("status %d, want %d; body %s; headers %v", resp.StatusCode, tt.want.status, resp.Body, resp.Headers)
			}
			flowtest.AssertSecurityHeaders(t, resp)
			if tt.want.location != "" {
				loc := resp.Headers["Location"]
				if !strings.HasPrefix(loc, appOrigin+"/connected?") || !strings.Contains(loc, tt.want.location) {
					t.Errorf("Location %q, want the app with %q", loc, tt.want.location)
				}
			} else if !strings.Contains(resp.Headers["Content-Type"], "text/html") || resp.Body == "" {
				t.Errorf("want a plain error page, got %v %q", resp.Headers, resp.Body)
			}
			flowtest.AssertNoSecretsIn(t, resp.Headers["Location"]+resp.Body, f.Code, f.State, fixtureClientSecret)
			if strings.Contains(resp.Body, "<svg") {
				t.Error("provider text echoed into the page")
			}
			if got := s.acme.TokenRequests() - before; tt.want.tokenCalled != (got > 0) || got > 1 {
				t.Errorf("%d token requests (want called=%v)", got, tt.want.tokenCalled)
			}
			if _, err := s.Conn(id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a connection was stored: %v", err)
			}
		})
	}
}

// TestS3_FailClosed — S3 (RFC 9700 §2.1): whatever is missing or unknown
// ends the flow — `?code=x` alone → 400; no state, an empty state, no
// cookie, a key id the keyset does not hold → rejected, with nothing
// written and no request to the token endpoint.
func TestS3_FailClosed(t *testing.T) {
	s := newBrowser(t)
	f := s.Begin("s3")
	// A state signed under key id k9 (not in the keys secret), recorded
	// with its cookie: only the unknown key id is wrong.
	k9, err := testkeys.Keyset("k9", map[string][]byte{"k9": []byte("another-signing-key-0123456789abcdef01")})
	if err != nil {
		t.Fatal(err)
	}
	unknownKid, err := signing.NewState(k9, "acme", fixtureNow, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	logcheck.Register(unknownKid.Value, "k9-browser")
	if err := s.st.PutState(t.Context(), store.StateRecord{ID: unknownKid.ID, Provider: "acme", ConnectionID: "s3",
		ReturnTo: fixtureReturnTo, BindingHash: signing.Hash("k9-browser"), ExpiresAt: unknownKid.Expires}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		query   string
		cookies []string
		status  int
	}{
		{"?code=x alone", "code=x", nil, 400},
		{"?code=x alone, with a live flow's cookie", "code=x", []string{f.Cookie}, 400},
		{"the flow's code without its state", "code=" + url.QueryEscape(f.Code), []string{f.Cookie}, 400},
		{"empty state", "code=" + url.QueryEscape(f.Code) + "&state=", []string{f.Cookie}, 400},
		{"empty query", "", []string{f.Cookie}, 400},
		{"missing cookie", f.CallbackQuery, nil, 403},
		{"unknown key id", "code=" + url.QueryEscape(f.Code) + "&state=" + url.QueryEscape(unknownKid.Value),
			[]string{BindingCookieName(unknownKid.ID) + "=k9-browser"}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			s.AssertCallbackRefused(tt.status, "acme", tt.query, tt.cookies...)
		})
	}
}

// TestS4_StateCheckedBeforeCodeRedeemed — S4 (RFC 9700 §4.4, §4.5): the
// state is validated before the code is redeemed: with a valid, unused code
// and any bad state, zero requests reach the token endpoint — and the code
// is still unused afterwards, as its rightful callback then succeeds.
func TestS4_StateCheckedBeforeCodeRedeemed(t *testing.T) {
	s := newBrowser(t)
	f := s.Begin("s4")
	used := s.Begin("s4-used")
	if resp := s.Deliver("acme", used.CallbackQuery, used.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("setup: %d %v", resp.StatusCode, resp.Headers)
	}
	otherProv := s.Start(signing.Link{Provider: "other", ConnectionID: "s4", ReturnTo: fixtureReturnTo})
	unrecorded, _ := signing.NewState(s.keys, "acme", fixtureNow, 10*time.Minute) // signed, never recorded
	logcheck.Register(unrecorded.Value)
	expired, expiredCookie := s.PlantState(fixtureNow.Add(-time.Minute), fixtureNow.Add(-time.Minute), fixtureReturnTo, "s4")
	code := "code=" + url.QueryEscape(f.Code) + "&state="
	tests := []struct {
		name   string
		query  string
		cookie string
	}{
		{"forged signature", code + url.QueryEscape(flowtest.FlipSegment(f.State, 3)), f.Cookie},
		{"signed but never recorded", code + url.QueryEscape(unrecorded.Value), BindingCookieName(unrecorded.ID) + "=x"},
		{"expired", code + url.QueryEscape(expired), expiredCookie},
		{"already consumed", code + url.QueryEscape(used.State), used.Cookie},
		{"minted for another provider", code + url.QueryEscape(otherProv.State), otherProv.Cookie},
		{"another browser", f.CallbackQuery, s.Begin("s4-other-browser").Cookie},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			before := s.acme.TokenRequests()
			resp := s.Deliver("acme", tt.query, tt.cookie)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("got %d %v, want 403", resp.StatusCode, resp.Headers)
			}
			if n := s.acme.TokenRequests() - before; n != 0 {
				t.Fatalf("%d requests reached the token endpoint", n)
			}
		})
	}
	// The code was never sent: the provider (which refuses a code's second
	// use) still redeems it for the rightful callback.
	before := s.acme.TokenRequests()
	if resp := s.Deliver("acme", f.CallbackQuery, f.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("rightful callback: %d %v", resp.StatusCode, resp.Headers)
	}
	if n := len(flowtest.CodeRequests(s.acme, f.Code)); n != 1 || s.acme.TokenRequests()-before != 1 {
		t.Fatalf("the code reached the token endpoint %d times, want 1", n)
	}
}

// TestS5_TamperedStateRejected — S5 (RFC 9700 §4.7): one byte flipped in
// any part of the state (key id, nonce, expiry, signature) → 403 with
// nothing written and no token request; the return URL, provider and
// connection come only from the server-side record, so parameters added to
// the callback URL change nothing.
func TestS5_TamperedStateRejected(t *testing.T) {
	s := newBrowser(t)
	f := s.Begin("s5")
	for i, part := range []string{"key id", "nonce", "expiry", "signature"} {
		t.Run("flipped byte in the "+part, func(t *testing.T) {
			s.Within(t)
			tampered := flowtest.FlipSegment(f.State, i)
			if tampered == f.State {
				t.Fatal("flip changed nothing")
			}
			logcheck.Register(tampered)
			s.AssertCallbackRefused(http.StatusForbidden, "acme", "code="+url.QueryEscape(f.Code)+"&state="+url.QueryEscape(tampered), f.Cookie)
		})
	}
	// The untampered state still works; callback input cannot redirect it.
	q := f.CallbackQuery + "&return_to=" + url.QueryEscape("https://evil.example/") + "&connection_id=s5-evil&provider=other&redirect_uri=" + url.QueryEscape("https://evil.example/cb")
	resp := s.Deliver("acme", q, f.Cookie)
	loc, _ := url.Parse(resp.Headers["Location"])
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Scheme+"://"+loc.Host != appOrigin || loc.Path != "/connected" ||
		loc.Query().Get("connection_id") != "s5" || loc.Query().Get("status") != "connected" {
		t.Fatalf("callback with injected parameters: %d %q", resp.StatusCode, resp.Headers["Location"])
	}
	if _, err := s.Conn("s5-evil"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a connection was stored under a connection_id from the callback URL: %v", err)
	}
	if c, err := s.Conn("s5"); err != nil || c.Status != store.StatusConnected {
		t.Fatalf("connection s5: %s, %v", c.Status, err)
	}
}

// TestS9_CallbackPathMatchesProvider — S9 (RFC 9700 §4.4.2): each provider
// has its own callback path (its redirect_uri), and a state minted for one
// provider is refused at another's callback (403, no token request, nothing
// written), while it still works at its own.
func TestS9_CallbackPathMatchesProvider(t *testing.T) {
	s := newBrowser(t)
	a := s.Begin("s9-a")
	b := s.Start(signing.Link{Provider: "other", ConnectionID: "s9-b", ReturnTo: fixtureReturnTo})
	if got := a.AuthURL.Query().Get("redirect_uri"); got != fixtureBase+"/callback/acme" {
		t.Errorf("acme redirect_uri %q", got)
	}
	if got := b.AuthURL.Query().Get("redirect_uri"); got != fixtureBase+"/callback/other" {
		t.Errorf("other redirect_uri %q", got)
	}
	tests := []struct {
		name, path, query, cookie string
	}{
		{"acme's state at /callback/other", "other", a.CallbackQuery, a.Cookie},
		{"other's state at /callback/acme", "acme", "code=" + url.QueryEscape(a.Code) + "&state=" + url.QueryEscape(b.State), b.Cookie},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			s.AssertCallbackRefused(http.StatusForbidden, tt.path, tt.query, tt.cookie)
		})
	}
	if resp := s.Deliver("acme", a.CallbackQuery, a.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("acme's state at its own callback: %d %v", resp.StatusCode, resp.Headers)
	}
}

// TestS10_ErrorResponseMapped — S10 (RFC 6749 §4.1.2.1, §10.14): an
// `?error=` response still needs a valid state and its browser; the
// provider's error is mapped to a fixed set of codes and nothing else of it
// (error_description, error_uri, markup) reaches the page or the redirect.
func TestS10_ErrorResponseMapped(t *testing.T) {
	s := newBrowser(t)
	const xss = "<svg/onload=alert(1)>"
	fixed := []string{"access_denied", "invalid_scope", "provider_error", "provider_unavailable", "server_error", "connection_conflict"}
	tests := []struct {
		name   string
		query  func(f flowtest.Flow) string // the callback query; nil: the provider's own denial
		cookie bool
		status int
		code   string // the mapped code in the redirect
	}{
		{"markup as the error", func(f flowtest.Flow) string {
			return "error=" + url.QueryEscape(xss) + "&state=" + url.QueryEscape(f.State)
		}, true, 302, "provider_error"},
		{"access_denied with markup in description and error_uri", func(f flowtest.Flow) string {
			return "error=access_denied&error_description=" + url.QueryEscape(xss) + "&error_uri=" + url.QueryEscape("https://evil.example/"+xss) + "&state=" + url.QueryEscape(f.State)
		}, true, 302, "access_denied"},
		{"the provider's own denial", nil, true, 302, "access_denied"},
		{"invalid_scope", func(f flowtest.Flow) string { return "error=invalid_scope&state=" + url.QueryEscape(f.State) }, true, 302, "invalid_scope"},
		{"temporarily_unavailable", func(f flowtest.Flow) string { return "error=temporarily_unavailable&state=" + url.QueryEscape(f.State) }, true, 302, "provider_unavailable"},
		{"server_error", func(f flowtest.Flow) string { return "error=server_error&state=" + url.QueryEscape(f.State) }, true, 302, "provider_unavailable"},
		{"tampered state", func(f flowtest.Flow) string {
			return "error=" + url.QueryEscape(xss) + "&state=" + url.QueryEscape(flowtest.FlipSegment(f.State, 3))
		}, true, 403, ""},
		{"no cookie", func(f flowtest.Flow) string {
			return "error=" + url.QueryEscape(xss) + "&state=" + url.QueryEscape(f.State)
		}, false, 403, ""},
		{"no state", func(flowtest.Flow) string { return "error=" + url.QueryEscape(xss) }, true, 400, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			id := "s10-" + strconv.Itoa(i)
			var f flowtest.Flow
			if tt.query == nil {
				s.acme.Deny(true)
				f = s.Begin(id)
				s.acme.Deny(false)
				if !strings.Contains(f.CallbackQuery, "error=access_denied") {
					t.Fatal("the provider did not deny")
				}
			} else {
				f = s.Begin(id)
				f.CallbackQuery = tt.query(f)
			}
			var cookies []string
			if tt.cookie {
				cookies = []string{f.Cookie}
			}
			before := s.acme.TokenRequests()
			resp := s.Deliver("acme", f.CallbackQuery, cookies...)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d %v, want %d", resp.StatusCode, resp.Headers, tt.status)
			}
			everything := resp.Headers["Location"] + resp.Body + strings.Join(resp.Cookies, ";")
			for _, bad := range []string{"svg", "onload", "alert", "evil.example", "error_description", "error_uri", "The user denied"} {
				if strings.Contains(strings.ToLower(everything), strings.ToLower(bad)) {
					t.Errorf("the response carries %q from the provider's error", bad)
				}
			}
			if tt.status == 302 {
				loc, err := url.Parse(resp.Headers["Location"])
				if err != nil || loc.Scheme+"://"+loc.Host != appOrigin {
					t.Fatalf("Location %q", resp.Headers["Location"])
				}
				q := loc.Query()
				if q.Get("error") != tt.code || !slices.Contains(fixed, q.Get("error")) || q.Get("connection_id") != id {
					t.Fatalf("Location %q, want error=%s", loc, tt.code)
				}
				for k := range q {
					if !slices.Contains([]string{"tab", "error", "connection_id"}, k) {
						t.Errorf("Location carries %q", k)
					}
				}
			} else if resp.Headers["Location"] != "" {
				t.Fatalf("a rejected error response redirected: %q", resp.Headers["Location"])
			}
			if n := s.acme.TokenRequests() - before; n != 0 {
				t.Fatalf("%d token requests", n)
			}
			if _, err := s.Conn(id); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a connection was stored: %v", err)
			}
		})
	}
}

// TestS11_DuplicateParamsRejected — S11 (RFC 6749 §3.1): a callback whose
// raw query string repeats any parameter (which API Gateway's
// queryStringParameters would join with a comma) gets 400, with nothing
// written and no token request; the flow's own callback still works.
func TestS11_DuplicateParamsRejected(t *testing.T) {
	s := newBrowser(t)
	f := s.Begin("s11")
	state, code := url.QueryEscape(f.State), url.QueryEscape(f.Code)
	tests := []struct{ name, query string }{
		{"state=a&state=b", "code=" + code + "&state=a&state=b"},
		{"state=<valid>&state=b", f.CallbackQuery + "&state=b"},
		{"state=b&state=<valid>", "code=" + code + "&state=b&state=" + state},
		{"the valid state twice", f.CallbackQuery + "&state=" + state},
		{"code twice", "code=" + code + "&code=other&state=" + state},
		{"iss twice", f.CallbackQuery + "&iss=a&iss=b"},
		{"error twice", "error=access_denied&error=server_error&state=" + state},
		{"separated by a semicolon", "code=" + code + ";state=b&state=" + state},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			s.AssertCallbackRefused(http.StatusBadRequest, "acme", tt.query, f.Cookie)
		})
	}
	if resp := s.Deliver("acme", f.CallbackQuery, f.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("the flow's own callback: %d %v", resp.StatusCode, resp.Headers)
	}
}

// TestS15_ReturnToValidatedTwice — S15 (RFC 9700 §4.11; RFC 6749 §10.15):
// every payload of the public open-redirect corpus
// (shared/returnto/testdata/open-redirect.txt), put into a correctly signed
// connect link, is refused by authorize (403 page, no cookie, no redirect,
// nothing written, no provider contacted), while its same-origin controls
// pass; and the return URL is checked again before the final redirect: a
// flow whose return URL is no longer allowed when it comes back ends on a
// 403 page without a token request.
func TestS15_ReturnToValidatedTwice(t *testing.T) {
	s := newBrowser(t)
	root, err := modroot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "shared", "returnto", "testdata", "open-redirect.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := strings.NewReplacer("{TAB}", "\t", "{CR}", "\r", "{LF}", "\n", "{NUL}", "\x00", "{SP}", " ", "{EMPTY}", "")
	var payloads, controls []string
	for _, line := range strings.Split(string(data), "\n") {
		switch raw, allow := strings.CutPrefix(line, "allow "); {
		case line == "" || strings.HasPrefix(line, "#"):
		case allow && strings.HasPrefix(raw, appOrigin):
			controls = append(controls, tokens.Replace(raw))
		case !allow:
			payloads = append(payloads, tokens.Replace(raw))
		}
	}
	if len(payloads) < 100 || len(controls) == 0 {
		t.Fatalf("corpus: %d payloads, %d controls", len(payloads), len(controls))
	}
	exp := fixtureNow.Add(30 * time.Minute)
	t.Run("corpus at authorize", func(t *testing.T) {
		s.Within(t)
		snap, before := s.Snapshot(), len(s.acme.Requests())
		for _, p := range payloads {
			resp := s.Connect("acme", s.RawLink(signing.Link{Provider: "acme", ConnectionID: "s15", ReturnTo: p, Expires: exp}))
			if resp.StatusCode != http.StatusForbidden || resp.Headers["Location"] != "" || len(resp.Cookies) != 0 {
				t.Errorf("return_to %q: %d %v %v, want a 403 page", p, resp.StatusCode, resp.Headers["Location"], resp.Cookies)
			}
		}
		s.AssertUnchanged(snap)
		if len(s.acme.Requests()) != before {
			t.Fatal("the provider was contacted")
		}
		for _, c := range controls {
			resp := s.Connect("acme", s.RawLink(signing.Link{Provider: "acme", ConnectionID: "s15", ReturnTo: c, Expires: exp}))
			if resp.StatusCode != http.StatusFound || len(resp.Cookies) != 2 {
				t.Errorf("control %q: %d %s", c, resp.StatusCode, resp.Body)
				continue
			}
			au, _ := url.Parse(resp.Headers["Location"])
			logcheck.Register(au.Query().Get("state"), strings.SplitN(strings.SplitN(resp.Cookies[0], ";", 2)[0], "=", 2)[1])
		}
		t.Logf("%d payloads refused, %d controls accepted", len(payloads), len(controls))
	})

	t.Run("again before the final redirect", func(t *testing.T) {
		s.Within(t)
		// RETURN_ORIGINS changed while the flow ran: the broker that sees
		// the browser back no longer allows the recorded return URL.
		f := s.Begin("s15-moved")
		moved, err := returnto.ParseOrigins("https://other-app.example.com")
		if err != nil {
			t.Fatal(err)
		}
		s.b.Config.ReturnTo = moved
		before := s.acme.TokenRequests()
		resp := s.Deliver("acme", f.CallbackQuery, f.Cookie)
		if resp.StatusCode != http.StatusForbidden || resp.Headers["Location"] != "" {
			t.Fatalf("got %d %v, want a 403 page", resp.StatusCode, resp.Headers)
		}
		if n := s.acme.TokenRequests() - before; n != 0 {
			t.Fatalf("%d token requests", n)
		}
		if _, err := s.Conn("s15-moved"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a connection was stored: %v", err)
		}
	})
}

const (
	mixupIssuer  = "https://mixup.example.test"
	mixlaxIssuer = "https://mixlax.example.test"
)

// newSecBrowser is newBrowser with the providers S8, S14 and S16 need:
//
//   - mixup:   an RFC 9207 provider that always sends iss (require_issuer)
//   - mixlax:  a configured issuer the provider does not send
//   - narrow:  a provider whose user grants only "read"
//   - machine: a client_credentials provider
func newSecBrowser(t *testing.T) *browser {
	t.Helper()
	cfg := func(name string) providertest.Config {
		return providertest.Config{ClientID: name + "-client-id", ClientSecret: name + "-secret-Wm3" + name[:2], RedirectURI: fixtureBase + "/callback/" + name}
	}
	entry := func(name, authURL, tokenURL, more string) string {
		return "  " + name + ":\n    authorization_url: " + authURL + "\n    token_url: " + tokenURL +
			"\n    grant_types: [authorization_code]\n" + more
	}
	var extra []extraProvider
	add := func(name string, c providertest.Config, yaml func(*providertest.Server) string) {
		srv := providertest.New(t, c)
		extra = append(extra, extraProvider{name: name, entry: yaml(srv), cfg: c, srv: srv})
	}
	c := cfg("mixup")
	c.Issuer = mixupIssuer
	add("mixup", c, func(pt *providertest.Server) string {
		return entry("mixup", pt.AuthorizeURL(), pt.TokenURL(), "    issuer: "+mixupIssuer+"\n    require_issuer: true\n")
	})
	add("mixlax", cfg("mixlax"), func(pt *providertest.Server) string {
		return entry("mixlax", pt.AuthorizeURL(), pt.TokenURL(), "    issuer: "+mixlaxIssuer+"\n")
	})
	c = cfg("narrow")
	c.Scopes, c.GrantOnly, c.AccessTokenTTL = []string{"read", "write"}, []string{"read"}, time.Hour
	add("narrow", c, func(pt *providertest.Server) string { return entry("narrow", pt.AuthorizeURL(), pt.TokenURL(), "") })
	return newBrowser(t, append(extra, machineProvider(t))...)
}

func ptr[T any](v T) *T { return &v }

// TestS8_IssuerMixUp — S8 (RFC 9207 §2.4; RFC 9700 §4.4.2): where the
// callback carries `iss`, it must equal the configured issuer exactly
// (simple string comparison); where the catalog says the provider always
// sends it, it is required. A mismatch → 403 before any token request.
func TestS8_IssuerMixUp(t *testing.T) {
	s := newSecBrowser(t)
	tests := []struct {
		provider string
		iss      *string // nil: as the provider sent it
		status   int
	}{
		{"mixup", nil, 302}, // the control: the provider's own iss
		{"mixup", ptr("https://evil.example"), 403},
		{"mixup", ptr(""), 403},
		{"mixup", ptr(mixupIssuer + "/"), 403},
		{"mixup", ptr(strings.ToUpper(mixupIssuer)), 403},
		{"mixup", ptr("-"), 403}, // "-" stands for: iss removed (the catalog requires it)
		{"mixlax", nil, 302},     // iss not sent and not required
		{"mixlax", ptr(mixlaxIssuer), 302},
		{"mixlax", ptr("https://evil.example"), 403},
		{"mixlax", ptr(""), 403},
	}
	for i, tt := range tests {
		name := tt.provider + " iss=as sent"
		if tt.iss != nil {
			name = tt.provider + " iss=" + strconv.Quote(*tt.iss)
		}
		t.Run(name, func(t *testing.T) {
			s.Within(t)
			id := "s8-" + strconv.Itoa(i)
			st := s.Start(signing.Link{Provider: tt.provider, ConnectionID: id, ReturnTo: fixtureReturnTo})
			srv := s.server(tt.provider)
			back := s.Consent(st.AuthURL)
			q := back.Query()
			if tt.provider == "mixup" && q.Get("iss") != mixupIssuer {
				t.Fatalf("the test provider did not send iss (got %q)", q.Get("iss"))
			}
			switch {
			case tt.iss == nil:
			case *tt.iss == "-":
				q.Del("iss")
			default:
				q.Set("iss", *tt.iss)
			}
			before := srv.TokenRequests()
			resp := s.Deliver(tt.provider, q.Encode(), st.Cookie)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d %v, want %d", resp.StatusCode, resp.Headers, tt.status)
			}
			if tt.status == 302 {
				s.AssertConnected(resp.Headers, id)
				return
			}
			if resp.Headers["Location"] != "" {
				t.Fatalf("a mix-up answered with a redirect: %q", resp.Headers["Location"])
			}
			if n := srv.TokenRequests() - before; n != 0 {
				t.Fatalf("%d token requests", n)
			}
			if _, err := s.st.GetConnection(t.Context(), tt.provider, id); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a connection was stored: %v", err)
			}
		})
	}
}

// TestS14_TokenResponseChecked — S14 (RFC 6749 §5.1, §3.3): a token
// response needs an access token and token_type bearer (any case); a
// token_type of mac, a missing type (where the catalog does not allow it),
// a missing or empty token or an error object → rejected and nothing
// stored; the scope actually granted is what is stored — narrower than
// requested when the user unticked a box, the requested one when the
// response does not say.
func TestS14_TokenResponseChecked(t *testing.T) {
	s := newSecBrowser(t)
	tests := []struct {
		name      string
		body      string // a 200 application/json token response; "" for the provider's own
		provider  string
		stored    bool
		scope     string // stored scope
		tokenType string
	}{
		{"token_type=mac", `{"access_token":"%s","token_type":"mac","expires_in":3600}`, "acme", false, "", ""},
		{"token_type missing", `{"access_token":"%s","expires_in":3600}`, "acme", false, "", ""},
		{"token_type not a string", `{"access_token":"%s","token_type":1}`, "acme", false, "", ""},
		{"access_token missing", `{"token_type":"Bearer","expires_in":3600}`, "acme", false, "", ""},
		{"access_token empty", `{"access_token":"","token_type":"Bearer"}`, "acme", false, "", ""},
		{"access_token not a string", `{"access_token":12345,"token_type":"Bearer"}`, "acme", false, "", ""},
		{"error object with 200", `{"error":"invalid_request","access_token":"%s","token_type":"Bearer"}`, "acme", false, "", ""},
		{"token_type=bearer", `{"access_token":"%s","token_type":"bearer","expires_in":3600,"scope":"read write"}`, "acme", true, "read write", "Bearer"},
		{"token_type=BEARER", `{"access_token":"%s","token_type":"BEARER","expires_in":3600,"scope":"read write"}`, "acme", true, "read write", "Bearer"},
		{"narrower scope in the response", `{"access_token":"%s","token_type":"Bearer","expires_in":3600,"scope":"read"}`, "acme", true, "read", "Bearer"},
		{"no scope in the response", `{"access_token":"%s","token_type":"Bearer","expires_in":3600}`, "acme", true, "read write", "Bearer"},
		{"a user who granted only read", "", "narrow", true, "read", "Bearer"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			id := "s14-" + strconv.Itoa(i)
			st := s.Start(signing.Link{Provider: tt.provider, ConnectionID: id, ReturnTo: fixtureReturnTo, Scopes: []string{"read", "write"}})
			back := s.Consent(st.AuthURL)
			srv := s.server(tt.provider)
			var injected string
			if tt.body != "" {
				injected = "s14-token-" + strconv.Itoa(i) + "-Qv8"
				logcheck.Register(injected)
				body := strings.ReplaceAll(tt.body, "%s", injected)
				srv.FailNext(1, http.StatusOK, "application/json", body, nil)
			}
			before := srv.TokenRequests()
			resp := s.Deliver(tt.provider, back.RawQuery, st.Cookie)
			if n := srv.TokenRequests() - before; n != 1 {
				t.Fatalf("%d token requests", n)
			}
			c, err := s.st.GetConnection(t.Context(), tt.provider, id)
			if !tt.stored {
				loc, _ := url.Parse(resp.Headers["Location"])
				if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("error") == "" {
					t.Fatalf("got %d %q, want an error redirect", resp.StatusCode, resp.Headers["Location"])
				}
				if !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("a connection was stored: %v", err)
				}
				return
			}
			s.AssertConnected(resp.Headers, id)
			if err != nil {
				t.Fatal(err)
			}
			if c.Scope != tt.scope || c.TokenType != tt.tokenType || (injected != "" && c.AccessToken != injected) {
				t.Fatalf("stored scope %q type %q, want %q %q", c.Scope, c.TokenType, tt.scope, tt.tokenType)
			}
		})
	}
}

// TestS16_CallbackResponsesLeakNothing — S16 (RFC 6750 §5.3; RFC 9700
// §4.2): every kind of callback answer — the final redirect, error
// redirects, error pages, the 201 of a client_credentials connect — carries
// Referrer-Policy: no-referrer and Cache-Control: no-store, loads no
// third-party content, and no code, state, token or secret is in its
// Location, body or cookies.
func TestS16_CallbackResponsesLeakNothing(t *testing.T) {
	s := newSecBrowser(t)
	tests := []struct {
		name   string
		run    func(t *testing.T) (events.APIGatewayV2HTTPResponse, []string) // the answer and values it must not carry
		status int
	}{
		{"connected", func(t *testing.T) (events.APIGatewayV2HTTPResponse, []string) {
			f := s.Begin("s16-ok")
			resp := s.Deliver("acme", f.CallbackQuery, f.Cookie)
			c := s.ConnOf("acme", "s16-ok")
			return resp, []string{f.Code, f.State, c.AccessToken, c.RefreshToken, strings.SplitN(f.Cookie, "=", 2)[1]}
		}, 302},
		{"provider error", func(t *testing.T) (events.APIGatewayV2HTTPResponse, []string) {
			f := s.Begin("s16-denied")
			return s.Deliver("acme", "error=access_denied&state="+url.QueryEscape(f.State), f.Cookie), []string{f.Code, f.State}
		}, 302},
		{"token endpoint failure", func(t *testing.T) (events.APIGatewayV2HTTPResponse, []string) {
			f := s.Begin("s16-500")
			s.acme.FailNext(1, 500, "application/json", `{"error":"server_error"}`, nil)
			return s.Deliver("acme", f.CallbackQuery, f.Cookie), []string{f.Code, f.State}
		}, 302},
		{"tampered state", func(t *testing.T) (events.APIGatewayV2HTTPResponse, []string) {
			f := s.Begin("s16-403")
			bad := flowtest.FlipSegment(f.State, 3)
			logcheck.Register(bad)
			return s.Deliver("acme", "code="+url.QueryEscape(f.Code)+"&state="+url.QueryEscape(bad), f.Cookie), []string{f.Code, f.State, bad}
		}, 403},
		{"code alone", func(t *testing.T) (events.APIGatewayV2HTTPResponse, []string) {
			f := s.Begin("s16-400")
			return s.Deliver("acme", "code="+url.QueryEscape(f.Code), f.Cookie), []string{f.Code}
		}, 400},
		{"client_credentials connect", func(t *testing.T) (events.APIGatewayV2HTTPResponse, []string) {
			resp := s.Connect("machine", s.Sign(signing.Link{Provider: "machine", ConnectionID: "s16-cc"}))
			next, err := url.Parse(resp.Headers["Location"])
			if resp.StatusCode != http.StatusFound || err != nil || next.Query().Get("state") == "" {
				t.Fatalf("authorize: %d %v", resp.StatusCode, resp.Headers)
			}
			logcheck.Register(next.Query().Get("state"))
			cb := s.Deliver("machine", next.RawQuery)
			c := s.ConnOf("machine", "s16-cc")
			return cb, []string{next.Query().Get("state"), c.AccessToken}
		}, 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			resp, secret := tt.run(t)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d %v %s, want %d", resp.StatusCode, resp.Headers, resp.Body, tt.status)
			}
			if resp.Headers["Referrer-Policy"] != "no-referrer" || resp.Headers["Cache-Control"] != "no-store" {
				t.Errorf("headers %v: want Referrer-Policy no-referrer and Cache-Control no-store", resp.Headers)
			}
			if csp := resp.Headers["Content-Security-Policy"]; !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if loc := resp.Headers["Location"]; loc != "" && !strings.HasPrefix(loc, appOrigin+"/") {
				t.Errorf("Location %q is not the app", loc)
			}
			for _, third := range []string{"http:", "https:", "//", "src=", "href=", "<script", "<img", "<iframe", "@import", "url("} {
				if strings.Contains(strings.ToLower(resp.Body), third) {
					t.Errorf("body loads or links other content (%q): %s", third, resp.Body)
				}
			}
			carried := resp.Headers["Location"] + "\n" + resp.Body + "\n" + strings.Join(resp.Cookies, "\n")
			all := append(secret, fixtureClientSecret)
			for _, e := range s.extra {
				all = append(all, e.cfg.ClientSecret)
			}
			for _, srv := range append([]*providertest.Server{s.acme}, s.server("machine")) {
				all = append(all, srv.Credentials()...) // every code and token issued
			}
			for _, v := range all {
				if v != "" && (strings.Contains(carried, v) || strings.Contains(carried, url.QueryEscape(v))) {
					t.Errorf("the response carries a code, state, token or secret (%.6s…)", v)
				}
			}
		})
	}
}

// TestS6_PKCES256PerFlow — S6 (RFC 7636 §4.1–4.2, §7.1; RFC 9700 §2.1.1):
// every authorization-code flow carries an S256 challenge of its own; the
// verifier sent with the code is ≥ 32 random bytes, differs per flow,
// satisfies challenge = BASE64URL(SHA256(verifier)), and is kept server
// side (never in the browser's URL or cookie).
func TestS6_PKCES256PerFlow(t *testing.T) {
	s := newBrowser(t)
	a, b := s.Begin("s6-a"), s.Begin("s6-b")
	ca, cb := a.AuthURL.Query().Get("code_challenge"), b.AuthURL.Query().Get("code_challenge")
	if ca == "" || ca == cb {
		t.Fatalf("challenges %q and %q: want two different ones", ca, cb)
	}
	verifiers := map[string]bool{}
	for _, f := range []flowtest.Flow{a, b} {
		q := f.AuthURL.Query()
		if q.Get("code_challenge_method") != "S256" {
			t.Errorf("code_challenge_method %q", q.Get("code_challenge_method"))
		}
		if resp := s.Deliver("acme", f.CallbackQuery, f.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
			t.Fatalf("callback: %d %v", resp.StatusCode, resp.Headers)
		}
		reqs := flowtest.CodeRequests(s.acme, f.Code)
		if len(reqs) != 1 {
			t.Fatalf("%d token requests for the code", len(reqs))
		}
		v := reqs[0].Params.Get("code_verifier")
		raw, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(raw) < 32 {
			t.Fatalf("verifier of %d bytes (%v), want ≥ 32 random bytes", len(raw), err)
		}
		sum := sha256.Sum256([]byte(v))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != q.Get("code_challenge") {
			t.Fatal("challenge is not BASE64URL(SHA256(verifier))")
		}
		if strings.Contains(f.AuthURL.String(), v) || strings.Contains(f.Cookie, v) {
			t.Fatal("the verifier reached the browser")
		}
		verifiers[v] = true
	}
	if len(verifiers) != 2 {
		t.Fatal("two flows used one verifier")
	}
}
