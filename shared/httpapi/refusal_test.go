package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

const (
	refusalReturnTo = brokertest.ReturnTo
	acmeIssuer      = "https://acme.example"
)

// refusals is a broker on the embedded store with four providers: acme (a
// code flow whose callback must carry iss), tenant (a code flow with a
// connection parameter), svc (client_credentials) and nocreds (a code
// flow whose client credentials are missing). Everything the refusal
// tests have the broker log goes to logs as JSON lines.
type refusals struct {
	*brokertest.World
	acme *providertest.Server
	now  time.Time
	logs *syncbuf.Buffer
	// secrets are the link signatures, states, cookies and codes handed
	// out: none may appear in a log line.
	secrets []string
}

func newRefusals(t *testing.T) *refusals {
	t.Helper()
	now := time.Now()
	w := brokertest.New(t, brokertest.Options{
		Providers: []brokertest.Provider{
			{Name: "acme", Config: providertest.Config{RequirePKCE: true, Issuer: acmeIssuer, AccessTokenTTL: time.Hour},
				Entry: brokertest.CodeEntry + "    issuer: " + acmeIssuer + "\n    require_issuer: true\n"},
			{Name: "svc", Config: providertest.Config{ClientAuth: "body", AccessTokenTTL: time.Hour},
				Entry: "    token_url: TOKEN_URL\n    grant_types: [client_credentials]\n    client_auth: body\n"},
		},
		Catalog: "  tenant:\n    authorization_url: https://tenant.example/authorize?tenant={tenant}\n    token_url: https://tenant.example/token\n" +
			"    grant_types: [authorization_code]\n    connection_params: {tenant: {pattern: '[a-z]{2,10}'}}\n" +
			"  nocreds:\n    authorization_url: https://nocreds.example/authorize\n    token_url: https://nocreds.example/token\n    grant_types: [authorization_code]\n",
		Clients: map[string]testsecrets.Client{"tenant": {ID: "cid", Secret: "csecret-tenant-0123"}},
		Now:     func() time.Time { return now },
	})
	return &refusals{World: w, acme: w.Servers["acme"], now: now, logs: &syncbuf.Buffer{}}
}

// secret records values that must never be logged.
func (f *refusals) secret(vs ...string) {
	logcheck.Register(vs...)
	f.secrets = append(f.secrets, vs...)
}

// link signs a connect link for acme (edited by edit) and returns its
// query, edited by q.
func (f *refusals) link(t *testing.T, edit func(*signing.Link), qedit func(url.Values)) string {
	t.Helper()
	q := f.Link(t, "acme", "c1", func(l *signing.Link) {
		l.Expires = f.now.Add(30 * time.Minute)
		if edit != nil {
			edit(l)
		}
	})
	f.secret(q.Get("sig"))
	if qedit != nil {
		qedit(q)
	}
	return q.Encode()
}

// state mints a state for providerName under ks, expiring at expires.
func (f *refusals) state(t *testing.T, ks *signing.Keyset, providerName string, expires time.Time) signing.State {
	t.Helper()
	st, err := signing.NewState(ks, providerName, expires.Add(-10*time.Minute), 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.secret(st.Value)
	return st
}

// plant records a flow's state as Connect would, edited by edit, and
// returns the state value and the binding cookie ("" for an unbound one).
func (f *refusals) plant(t *testing.T, providerName string, edit func(*store.StateRecord)) (state, cookie string) {
	t.Helper()
	st := f.state(t, f.Keys, providerName, f.now.Add(10*time.Minute))
	cookie, _ = signing.RandomString(32)
	f.secret(cookie)
	rec := store.StateRecord{ID: st.ID, Provider: providerName, ConnectionID: "c1", ReturnTo: refusalReturnTo,
		Grant: provider.GrantAuthorizationCode, BindingHash: signing.Hash(cookie), ExpiresAt: st.Expires}
	if edit != nil {
		edit(&rec)
	}
	if rec.BindingHash == store.Unbound {
		cookie = ""
	}
	if err := f.Store.PutState(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return st.Value, cookie
}

// browser runs a real connect for acme through Authorize and the
// provider's consent, and returns the query the provider sends back (code,
// state, iss) and the binding cookie.
func (f *refusals) browser(t *testing.T) (url.Values, string) {
	t.Helper()
	resp, _ := Authorize(f.Broker)(context.Background(), events.APIGatewayV2HTTPRequest{
		PathParameters: map[string]string{"provider": "acme"}, RawQueryString: f.link(t, nil, nil)})
	if resp.StatusCode != http.StatusFound || len(resp.Cookies) != 2 {
		t.Fatalf("connect answered %d", resp.StatusCode)
	}
	c, err := http.ParseSetCookie(resp.Cookies[0])
	if err != nil {
		t.Fatal(err)
	}
	back := f.acme.Authorize(t, resp.Headers["Location"]).Query()
	f.secret(c.Value, back.Get("state"), back.Get("code"))
	return back, c.Name + "=" + c.Value
}

func cookieFor(state, value string) []string {
	if value == "" {
		return nil
	}
	nonce := strings.Split(state, ".")[1]
	return []string{BindingCookieName(signing.Hash(nonce)) + "=" + value}
}

// TestRefusalCauses: every refusal of authorize and callback — each 400
// and 403, and the failures after the state is consumed — logs exactly one
// "<flow> rejected" line whose cause is the fixed code for that refusal,
// and no line holds a state, code, cookie or link signature.
func TestRefusalCauses(t *testing.T) {
	type request struct {
		provider, query string
		cookies         []string
	}
	tests := []struct {
		name   string
		flow   string // "connect" or "callback"
		req    func(*testing.T, *refusals) request
		status int
		cause  string
	}{
		// Authorize.
		{"repeated parameter", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, nil, nil) + "&connection_id=c2", nil}
		}, 400, "query_malformed"},
		{"unknown provider", "connect", func(t *testing.T, f *refusals) request { return request{"nope", f.link(t, nil, nil), nil} }, 404, "unknown_provider"},
		{"unsigned link", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, nil, func(q url.Values) { q.Del("sig") }), nil}
		}, 403, "link_malformed"},
		{"non-canonical exp", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, nil, func(q url.Values) { q.Set("exp", "+"+q.Get("exp")) }), nil}
		}, 403, "link_malformed"},
		{"unknown key id", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, nil, func(q url.Values) { q.Set("kid", "k9") }), nil}
		}, 403, "unknown_key"},
		{"tampered link", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, nil, func(q url.Values) { q.Set("connection_id", "c2") }), nil}
		}, 403, "bad_signature"},
		{"expired link", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, func(l *signing.Link) { l.Expires = f.now.Add(-time.Second) }, nil), nil}
		}, 403, "link_expired"},
		{"link used from another browser", "connect", func(t *testing.T, f *refusals) request {
			raw := f.link(t, nil, nil)
			resp, _ := Authorize(f.Broker)(context.Background(), events.APIGatewayV2HTTPRequest{PathParameters: map[string]string{"provider": "acme"}, RawQueryString: raw})
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("first use answered %d", resp.StatusCode)
			}
			for _, c := range resp.Cookies {
				if set, err := http.ParseSetCookie(c); err == nil {
					f.secret(set.Value)
				}
			}
			return request{"acme", raw, nil}
		}, 403, "link_used"},
		{"exp too far ahead", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, func(l *signing.Link) { l.Expires = f.now.Add(signing.MaxLinkLifetime + time.Minute) }, nil), nil}
		}, 403, "exp_too_far"},
		{"grant not offered", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, func(l *signing.Link) { l.Grant = provider.GrantClientCredentials }, nil), nil}
		}, 403, "grant_not_offered"},
		{"code flow without return_to", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, func(l *signing.Link) { l.ReturnTo = "" }, nil), nil}
		}, 403, "return_to_missing"},
		{"return_to not allowed", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, func(l *signing.Link) { l.ReturnTo = "https://evil.example/" }, nil), nil}
		}, 403, "return_to_not_allowed"},
		{"connection parameter off pattern", "connect", func(t *testing.T, f *refusals) request {
			return request{"tenant", f.link(t, func(l *signing.Link) { l.Provider, l.Params = "tenant", map[string]string{"tenant": "X1"} }, nil), nil}
		}, 403, "params_invalid"},
		{"invalid scope", "connect", func(t *testing.T, f *refusals) request {
			return request{"acme", f.link(t, func(l *signing.Link) { l.Scopes = []string{`read"`} }, nil), nil}
		}, 403, "scope_invalid"},
		{"client credentials missing", "connect", func(t *testing.T, f *refusals) request {
			return request{"nocreds", f.link(t, func(l *signing.Link) { l.Provider = "nocreds" }, nil), nil}
		}, 503, "internal"},

		// Callback, before the state is consumed.
		{"repeated state", "callback", func(t *testing.T, f *refusals) request {
			return request{"acme", "state=a&state=b", nil}
		}, 400, "query_malformed"},
		{"callback of an unknown provider", "callback", func(t *testing.T, f *refusals) request {
			return request{"nope", "state=a", nil}
		}, 404, "unknown_provider"},
		{"no state", "callback", func(t *testing.T, f *refusals) request { return request{"acme", "code=x", nil} }, 400, "state_missing"},
		{"garbage state", "callback", func(t *testing.T, f *refusals) request { return request{"acme", "state=garbage", nil} }, 403, "state_malformed"},
		{"state under an unknown key", "callback", func(t *testing.T, f *refusals) request {
			k9, _ := testkeys.Keyset("k9", map[string][]byte{"k9": []byte(brokertest.SigningKey)})
			return request{"acme", url.Values{"state": {f.state(t, k9, "acme", f.now.Add(time.Minute)).Value}}.Encode(), nil}
		}, 403, "unknown_key"},
		{"state for another provider", "callback", func(t *testing.T, f *refusals) request {
			return request{"acme", url.Values{"state": {f.state(t, f.Keys, "svc", f.now.Add(time.Minute)).Value}}.Encode(), nil}
		}, 403, "bad_signature"},
		{"expired state", "callback", func(t *testing.T, f *refusals) request {
			return request{"acme", url.Values{"state": {f.state(t, f.Keys, "acme", f.now).Value}}.Encode(), nil}
		}, 403, "state_expired"},
		{"no cookie", "callback", func(t *testing.T, f *refusals) request {
			q, _ := f.browser(t)
			return request{"acme", q.Encode(), nil}
		}, 403, "cookie_missing"},
		{"another browser's cookie", "callback", func(t *testing.T, f *refusals) request {
			q, _ := f.browser(t)
			other, _ := signing.RandomString(32)
			f.secret(other)
			return request{"acme", q.Encode(), cookieFor(q.Get("state"), other)}
		}, 403, "state_replayed"},
		{"replayed state", "callback", func(t *testing.T, f *refusals) request {
			state, cookie := f.plant(t, "acme", nil)
			q := url.Values{"state": {state}, "error": {"access_denied"}, "iss": {acmeIssuer}}.Encode()
			if resp, _ := Callback(f.Broker)(context.Background(), events.APIGatewayV2HTTPRequest{PathParameters: map[string]string{"provider": "acme"},
				RawQueryString: q, Cookies: cookieFor(state, cookie)}); resp.StatusCode != http.StatusFound {
				t.Fatalf("first use answered %d", resp.StatusCode)
			}
			return request{"acme", q, cookieFor(state, cookie)}
		}, 403, "state_replayed"},

		// Callback, the state consumed: refused.
		{"unbound code-flow state", "callback", func(t *testing.T, f *refusals) request {
			state, _ := f.plant(t, "acme", func(r *store.StateRecord) { r.BindingHash = store.Unbound })
			return request{"acme", url.Values{"state": {state}}.Encode(), nil}
		}, 403, "state_unbound"},
		{"record of another provider", "callback", func(t *testing.T, f *refusals) request {
			state, cookie := f.plant(t, "acme", func(r *store.StateRecord) { r.Provider = "tenant" })
			return request{"acme", url.Values{"state": {state}, "code": {"x"}}.Encode(), cookieFor(state, cookie)}
		}, 403, "provider_mismatch"},
		{"record expired", "callback", func(t *testing.T, f *refusals) request {
			state, cookie := f.plant(t, "acme", func(r *store.StateRecord) { r.ExpiresAt = f.now.Add(-time.Second) })
			return request{"acme", url.Values{"state": {state}, "code": {"x"}}.Encode(), cookieFor(state, cookie)}
		}, 403, "state_expired"},
		{"return_to no longer allowed", "callback", func(t *testing.T, f *refusals) request {
			state, cookie := f.plant(t, "acme", func(r *store.StateRecord) { r.ReturnTo = "https://old.example.com/" })
			return request{"acme", url.Values{"state": {state}, "code": {"x"}}.Encode(), cookieFor(state, cookie)}
		}, 403, "return_to_not_allowed"},
		{"iss of another issuer", "callback", func(t *testing.T, f *refusals) request {
			q, cookie := f.browser(t)
			q.Set("iss", "https://evil.example")
			return request{"acme", q.Encode(), []string{cookie}}
		}, 403, "iss_mismatch"},
		{"empty iss", "callback", func(t *testing.T, f *refusals) request {
			q, cookie := f.browser(t)
			q.Set("iss", "")
			return request{"acme", q.Encode(), []string{cookie}}
		}, 403, "iss_mismatch"},
		{"no iss", "callback", func(t *testing.T, f *refusals) request {
			q, cookie := f.browser(t)
			q.Del("iss")
			return request{"acme", q.Encode(), []string{cookie}}
		}, 403, "iss_missing"},

		// Callback, the state consumed: the app is told (302) or, for a
		// program, answered JSON.
		{"provider error response", "callback", func(t *testing.T, f *refusals) request {
			state, cookie := f.plant(t, "acme", nil)
			return request{"acme", url.Values{"state": {state}, "error": {"access_denied"}, "error_description": {"no"}, "iss": {acmeIssuer}}.Encode(), cookieFor(state, cookie)}
		}, 302, "authorization_error"},
		{"code refused by the provider", "callback", func(t *testing.T, f *refusals) request {
			state, cookie := f.plant(t, "acme", nil)
			f.secret("not-a-real-code-0123")
			return request{"acme", url.Values{"state": {state}, "code": {"not-a-real-code-0123"}, "iss": {acmeIssuer}}.Encode(), cookieFor(state, cookie)}
		}, 302, "token_request_failed"},
		{"connection parameters no longer match", "callback", func(t *testing.T, f *refusals) request {
			state, cookie := f.plant(t, "tenant", func(r *store.StateRecord) { r.Params = map[string]string{"tenant": "X"} })
			return request{"tenant", url.Values{"state": {state}, "code": {"x"}}.Encode(), cookieFor(state, cookie)}
		}, 302, "params_invalid"},
		{"client credentials missing at callback", "callback", func(t *testing.T, f *refusals) request {
			state, cookie := f.plant(t, "nocreds", nil)
			return request{"nocreds", url.Values{"state": {state}, "code": {"x"}}.Encode(), cookieFor(state, cookie)}
		}, 302, "internal"},
		{"client_credentials callback with a code", "callback", func(t *testing.T, f *refusals) request {
			state, _ := f.plant(t, "svc", func(r *store.StateRecord) {
				r.Grant, r.BindingHash, r.ReturnTo = provider.GrantClientCredentials, store.Unbound, ""
			})
			return request{"svc", url.Values{"state": {state}, "code": {"x"}}.Encode(), nil}
		}, 400, "grant_mismatch"},
		{"client_credentials callback with an error", "callback", func(t *testing.T, f *refusals) request {
			state, _ := f.plant(t, "svc", func(r *store.StateRecord) {
				r.Grant, r.BindingHash, r.ReturnTo = provider.GrantClientCredentials, store.Unbound, ""
			})
			return request{"svc", url.Values{"state": {state}, "error": {"access_denied"}}.Encode(), nil}
		}, 400, "authorization_error"},
		{"connection held by another grant", "callback", func(t *testing.T, f *refusals) request {
			if _, err := f.Store.SaveConnection(context.Background(), store.Connection{Provider: "svc", ConnectionID: "c1",
				Grant: provider.GrantAuthorizationCode, Status: store.StatusConnected, AccessToken: "at-held-0123456789"}); err != nil {
				t.Fatal(err)
			}
			f.secret("at-held-0123456789")
			state, _ := f.plant(t, "svc", func(r *store.StateRecord) {
				r.Grant, r.BindingHash, r.ReturnTo = provider.GrantClientCredentials, store.Unbound, ""
			})
			return request{"svc", url.Values{"state": {state}}.Encode(), nil}
		}, 409, "connection_conflict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newRefusals(t)
			req := tt.req(t, f)
			f.Broker.Log = slog.New(slog.NewJSONHandler(f.logs, nil)) // only the refusal itself is logged here
			h := Authorize(f.Broker)
			if tt.flow == "callback" {
				h = Callback(f.Broker)
			}
			resp, err := h(context.Background(), events.APIGatewayV2HTTPRequest{PathParameters: map[string]string{"provider": req.provider},
				RawQueryString: req.query, Cookies: req.cookies})
			if err != nil || resp.StatusCode != tt.status {
				t.Fatalf("answered %d, %v; want %d", resp.StatusCode, err, tt.status)
			}
			var rejected []map[string]any
			lines := bufio.NewScanner(strings.NewReader(f.logs.String()))
			for lines.Scan() {
				var rec map[string]any
				if err := json.Unmarshal(lines.Bytes(), &rec); err != nil {
					t.Fatalf("log line %q: %v", lines.Text(), err)
				}
				if rec["msg"] == tt.flow+" rejected" {
					rejected = append(rejected, rec)
				}
				// The broker's own line for a failure after the state is
				// consumed names the same cause.
				if rec["msg"] == "callback failed" && rec["cause"] != tt.cause {
					t.Errorf("callback failed: cause %v, want %q", rec["cause"], tt.cause)
				}
			}
			if len(rejected) != 1 {
				t.Fatalf("%d %q lines, want 1; log:\n%s", len(rejected), tt.flow+" rejected", f.logs.String())
			}
			if got := rejected[0]["cause"]; got != tt.cause {
				t.Errorf("cause %v, want %q; log:\n%s", got, tt.cause, f.logs.String())
			}
			if got := rejected[0]["status"]; got != float64(tt.status) {
				t.Errorf("status %v, want %d", got, tt.status)
			}
			for i, s := range f.secrets {
				if s != "" && (strings.Contains(f.logs.String(), s) || strings.Contains(f.logs.String(), url.QueryEscape(s))) {
					t.Errorf("secret #%d (%d bytes) is in the log", i, len(s))
				}
			}
		})
	}
}
