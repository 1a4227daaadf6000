package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/embedded"
)

// The fixtures are API Gateway HTTP API payload 2.0 events as API Gateway
// sends them: the ones a user gives `sam local invoke` (events/, at the
// module root) and, for the kinds those do not show, testdata/events/. A
// query value or a cookie spelled REPLACE_ME stands for what only a running
// flow knows (a link signature, a state, a code, a binding cookie); the
// test puts it in, and nothing else of the event changes.
const placeholder = "REPLACE_ME"

const (
	// fixtureBase is the execute-api URL the fixtures' requestContext names.
	fixtureBase = "https://abcdef1234.execute-api.us-east-1.amazonaws.com"
	fixtureKey  = "fixture-signing-key-0123456789abcdef012345"
	// fixtureClientSecret is acme's (and other's) client secret.
	fixtureClientSecret = "csecret-fixture-0123"
	// fixtureExp is the exp of events/connect.json's link.
	fixtureExp = 1893456000
)

// fixtureNow is the broker's clock: half an hour before the sample connect
// link expires, so events/connect.json's query verifies as it is once
// signed.
var fixtureNow = time.Unix(fixtureExp, 0).Add(-30 * time.Minute)

// fixtureWorld is a broker as a Lambda function builds one, in process: the
// catalog's acme is the strict OAuth server providertest (PKCE required,
// scopes read and write, one-hour tokens, rotating refresh tokens, a
// revocation endpoint) and so is other's (a second provider on the same
// server), plus any extra providers; the store is an embedded file sealed
// under a local key, the secrets a file.
type fixtureWorld struct {
	b         *broker.Broker
	st        *embedded.Store
	storeFile string
	acme      *providertest.Server
	keys      *signing.Keyset
	extra     []extraProvider
}

// extraProvider is one more provider in a fixtureWorld's catalog and
// secrets, served by its own test server.
type extraProvider struct {
	name  string
	entry string // the catalog entry's YAML, indented under "providers:"
	cfg   providertest.Config
	srv   *providertest.Server
}

func newFixtureWorld(t *testing.T, extra ...extraProvider) *fixtureWorld {
	t.Helper()
	var catalog string
	clients := map[string]testsecrets.Client{}
	for _, e := range extra {
		catalog += e.entry
		clients[e.name] = testsecrets.Client{ID: e.cfg.ClientID, Secret: e.cfg.ClientSecret}
	}
	storeFile := filepath.Join(t.TempDir(), "store.json")
	st, err := embedded.Open(storeFile, testkeys.Sealer())
	if err != nil {
		t.Fatal(err)
	}
	w := brokertest.New(t, brokertest.Options{
		BaseURL: fixtureBase,
		Providers: []brokertest.Provider{
			{Name: "acme", Config: providertest.Config{ClientSecret: fixtureClientSecret, RequirePKCE: true, Scopes: []string{"read", "write"},
				AccessTokenTTL: time.Hour, RotateRefreshTokens: true}, Entry: brokertest.CodeEntry + "    revocation_url: REVOKE_URL\n"},
			{Name: "other", SharedWith: "acme", Entry: "    authorization_url: AUTH_URL\n    token_url: TOKEN_URL\n    grant_types: [authorization_code]\n"},
		},
		Catalog:    catalog,
		Clients:    clients,
		SigningKey: fixtureKey,
		Store:      st,
		Now:        func() time.Time { return fixtureNow },
	})
	return &fixtureWorld{b: w.Broker, st: st, storeFile: storeFile, acme: w.Servers["acme"], keys: w.Keys, extra: extra}
}

// server is the test server behind provider name.
func (w *fixtureWorld) server(name string) *providertest.Server {
	for _, e := range w.extra {
		if e.name == name {
			return e.srv
		}
	}
	return w.acme
}

// fixture reads a fixture ("events/x.json" from the module root, else
// testdata/events/x.json) strictly: a member aws-lambda-go does not know is
// an error, so a misspelt fixture cannot pass for a real event.
func fixture(t *testing.T, name string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	read := func() ([]byte, error) { return os.ReadFile(filepath.Join("testdata", "events", name)) }
	if strings.HasPrefix(name, "events/") {
		read = func() ([]byte, error) { return modroot.ReadFile(name) }
	}
	b, err := read()
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ev events.APIGatewayV2HTTPRequest
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if ev.Version != "2.0" || ev.RouteKey == "" || ev.RouteKey != ev.RequestContext.RouteKey || ev.RawPath != ev.RequestContext.HTTP.Path {
		t.Fatalf("%s is not a payload 2.0 event of one route", name)
	}
	return ev
}

// fill replaces the placeholders of ev: each query value REPLACE_ME by
// values[name] (in rawQueryString and queryStringParameters alike), and
// any cookie holding REPLACE_ME by cookie. A placeholder left over fails
// the test.
func fill(t *testing.T, ev *events.APIGatewayV2HTTPRequest, values map[string]string, cookie string) {
	t.Helper()
	pairs := strings.Split(ev.RawQueryString, "&")
	for i, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		if v != placeholder {
			continue
		}
		val, ok := values[k]
		if !ok {
			t.Fatalf("no value for %s", k)
		}
		pairs[i] = k + "=" + url.QueryEscape(val)
		ev.QueryStringParameters[k] = val
	}
	ev.RawQueryString = strings.Join(pairs, "&")
	for i, c := range ev.Cookies {
		if strings.Contains(c, placeholder) {
			ev.Cookies[i] = cookie
		}
	}
	if strings.Contains(ev.RawQueryString, placeholder) || strings.Contains(strings.Join(ev.Cookies, ";"), placeholder) {
		t.Fatalf("a placeholder is left in %s %v", ev.RawQueryString, ev.Cookies)
	}
}

// consented is a connect in progress, as the browser holds it after the
// provider's consent: the provider's answer and the binding cookie.
type consented struct {
	back   url.Values
	cookie *http.Cookie
}

// consentFor runs events/connect.json for connectionID (its own link when not
// the sample's cust-42) through Authorize, and the provider's consent.
func (w *fixtureWorld) consentFor(t *testing.T, connectionID string) consented {
	t.Helper()
	ev := fixture(t, "events/connect.json")
	if connectionID == "cust-42" {
		fill(t, &ev, map[string]string{"sig": w.sign(t, "acme", ev.QueryStringParameters)}, "")
	} else {
		raw, err := signing.SignLink(w.keys, signing.Link{Provider: "acme", ConnectionID: connectionID,
			ReturnTo: "https://app.example.com/connected", Expires: fixtureNow.Add(30 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		sampleevent.SetQuery(&ev, "acme", "connect", raw)
	}
	resp, err := Authorize(w.b)(context.Background(), ev)
	if err != nil || resp.StatusCode != http.StatusFound || len(resp.Cookies) != 2 {
		t.Fatalf("connect answered %d %v, %v", resp.StatusCode, resp.Cookies, err)
	}
	c, err := http.ParseSetCookie(resp.Cookies[0])
	if err != nil {
		t.Fatal(err)
	}
	back := w.acme.Authorize(t, resp.Headers["Location"]).Query()
	logcheck.Register(c.Value, back.Get("state"), back.Get("code"))
	return consented{back: back, cookie: c}
}

// sign returns the signature of the sample link q for provider.
func (w *fixtureWorld) sign(t *testing.T, provider string, q map[string]string) string {
	t.Helper()
	raw, err := signing.SignLink(w.keys, signing.Link{Provider: provider, ConnectionID: q["connection_id"], ReturnTo: q["return_to"],
		Grant: q["grant"], Expires: time.Unix(fixtureExp, 0), Nonce: q["nonce"]})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := url.ParseQuery(raw)
	if v.Get("exp") != q["exp"] || v.Get("kid") != q["kid"] {
		t.Fatalf("the sample link is not the one signed: %s", raw)
	}
	logcheck.Register(v.Get("sig"))
	return v.Get("sig")
}

// connected stores connectionID through a whole connect and callback.
func (w *fixtureWorld) connected(t *testing.T, connectionID string) store.Connection {
	t.Helper()
	f := w.consentFor(t, connectionID)
	ev := fixture(t, "events/callback.json")
	fill(t, &ev, map[string]string{"code": f.back.Get("code"), "state": f.back.Get("state")}, f.cookie.Name+"="+f.cookie.Value)
	if resp, err := Callback(w.b)(context.Background(), ev); err != nil || resp.StatusCode != http.StatusFound ||
		!strings.Contains(resp.Headers["Location"], "status=connected") {
		t.Fatalf("callback answered %d %v, %v", resp.StatusCode, resp.Headers, err)
	}
	c, err := w.st.GetConnection(context.Background(), "acme", connectionID)
	if err != nil {
		t.Fatal(err)
	}
	logcheck.Register(c.AccessToken, c.RefreshToken)
	return c
}

// securityHeadersJSON are the headers of every answer (S16), as JSON
// members.
const securityHeadersJSON = `"Cache-Control": "no-store", "Pragma": "no-cache", "Referrer-Policy": "no-referrer",
	"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
	"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"`

// refusedAnswer is the answer a program gets for a refusal: status, the
// security headers and {"error": code}.
func refusedAnswer(status int, code string) string {
	return fmt.Sprintf(`{"statusCode": %d, "headers": {`+securityHeadersJSON+`, "Content-Type": "application/json"},
		"multiValueHeaders": null, "cookies": null, "body": "{\"error\":\"%s\"}"}`, status, code)
}

// page is the body of a plain error page, spelt out.
func page(title, message string) string {
	return "<!doctype html><html lang=en><meta charset=utf-8><title>" + title +
		"</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}</style>" +
		"<h1>" + title + "</h1><p>" + message + "</p></html>\n"
}

// TestEvents runs every kind of event the functions take, from its JSON
// fixture, through the real handler over a real broker, and compares the
// whole answer (status, headers, cookies, body) as JSON with the one
// expected, values only a running flow knows written {like_this}; then it
// checks what the request left in the store.
func TestEvents(t *testing.T) {
	// prepared is what a case's setup returns: the fixture's placeholders
	// and the running values to write back as {names} in the answer.
	type prepared struct {
		values map[string]string
		cookie string
		names  map[string]string
	}
	callbackOf := func(t *testing.T, w *fixtureWorld) prepared {
		f := w.consentFor(t, "cust-42")
		return prepared{values: map[string]string{"code": f.back.Get("code"), "state": f.back.Get("state")},
			cookie: f.cookie.Name + "=" + f.cookie.Value, names: map[string]string{f.cookie.Name: "{binding_cookie}"}}
	}
	connectedAs := func(id string) func(*testing.T, *fixtureWorld) prepared {
		return func(t *testing.T, w *fixtureWorld) prepared {
			c := w.connected(t, id)
			return prepared{names: map[string]string{c.AccessToken: "{access_token}"}}
		}
	}
	// stored checks the connection after the request: want nil for none.
	stored := func(id string, check func(*testing.T, *fixtureWorld, *store.Connection)) func(*testing.T, *fixtureWorld, prepared) {
		return func(t *testing.T, w *fixtureWorld, p prepared) {
			c, err := w.st.GetConnection(context.Background(), "acme", id)
			switch {
			case check == nil && err == nil:
				t.Errorf("connection %s stored: %+v", id, c.Status)
			case check == nil && !errors.Is(err, store.ErrNotFound):
				t.Errorf("connection %s: %v", id, err)
			case check != nil && err != nil:
				t.Errorf("connection %s: %v", id, err)
			case check != nil:
				check(t, w, &c)
			}
		}
	}
	unchanged := func(id string) func(*testing.T, *fixtureWorld, prepared) {
		return stored(id, func(t *testing.T, w *fixtureWorld, c *store.Connection) {
			if c.Status != store.StatusConnected || c.Version != 1 || !w.acme.Valid(c.AccessToken) {
				t.Errorf("connection changed: %s version %d", c.Status, c.Version)
			}
		})
	}
	const tokenFixtureExpiry = "2030-01-01T00:30:00Z" // fixtureNow + the provider's hour
	tests := []struct {
		name    string
		fixture string
		handler func(*broker.Broker) Handler
		setup   func(*testing.T, *fixtureWorld) prepared
		want    string // the answer as JSON
		after   func(*testing.T, *fixtureWorld, prepared)
	}{
		{
			name: "connect", fixture: "events/connect.json", handler: Authorize,
			setup: func(t *testing.T, w *fixtureWorld) prepared {
				return prepared{values: map[string]string{"sig": w.sign(t, "acme", fixture(t, "events/connect.json").QueryStringParameters)}}
			},
			want: `{"statusCode": 302, "headers": {` + securityHeadersJSON + `,
				"Location": "{acme}/authorize?client_id=cid&code_challenge={code_challenge}&code_challenge_method=S256&redirect_uri=https%3A%2F%2Fabcdef1234.execute-api.us-east-1.amazonaws.com%2Fcallback%2Facme&response_type=code&state={state}"},
				"multiValueHeaders": null, "body": "",
				"cookies": ["{binding_cookie}={binding}; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax",
					"{link_cookie}={link_secret}; Path=/; Max-Age=1800; HttpOnly; Secure; SameSite=Lax"]}`,
			after: stored("cust-42", nil),
		},
		{
			name: "callback", fixture: "events/callback.json", handler: Callback, setup: callbackOf,
			want: `{"statusCode": 302, "headers": {` + securityHeadersJSON + `,
				"Location": "https://app.example.com/connected?connection_id=cust-42&status=connected"},
				"multiValueHeaders": null, "body": "",
				"cookies": ["{binding_cookie}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"]}`,
			after: stored("cust-42", func(t *testing.T, w *fixtureWorld, c *store.Connection) {
				if c.Status != store.StatusConnected || c.Grant != provider.GrantAuthorizationCode || !w.acme.Valid(c.AccessToken) ||
					!w.acme.ValidRefresh(c.RefreshToken) || !c.ExpiresAt.Equal(fixtureNow.Add(time.Hour)) {
					t.Errorf("stored %s, grant %s, expires %s; valid %v %v", c.Status, c.Grant, c.ExpiresAt,
						w.acme.Valid(c.AccessToken), w.acme.ValidRefresh(c.RefreshToken))
				}
			}),
		},
		{
			name: "callback denied by the user", fixture: "callback-denied.json", handler: Callback, setup: callbackOf,
			want: `{"statusCode": 302, "headers": {` + securityHeadersJSON + `,
				"Location": "https://app.example.com/connected?connection_id=cust-42&error=access_denied"},
				"multiValueHeaders": null, "body": "",
				"cookies": ["{binding_cookie}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"]}`,
			after: stored("cust-42", nil),
		},
		{
			name: "callback with a provider error", fixture: "callback-provider-error.json", handler: Callback, setup: callbackOf,
			want: `{"statusCode": 302, "headers": {` + securityHeadersJSON + `,
				"Location": "https://app.example.com/connected?connection_id=cust-42&error=provider_unavailable"},
				"multiValueHeaders": null, "body": "",
				"cookies": ["{binding_cookie}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"]}`,
			after: stored("cust-42", nil),
		},
		{
			name: "callback with a repeated state (S11)", fixture: "callback-repeated-state.json", handler: Callback,
			want: `{"statusCode": 400, "headers": {` + securityHeadersJSON + `, "Content-Type": "text/html; charset=utf-8"},
				"multiValueHeaders": null, "cookies": null,
				"body": ` + jsonString(page("Bad Request", "This sign-in response is malformed. Please start again from the application.")) + `}`,
			after: stored("cust-42", nil),
		},
		{
			name: "connect to an unknown provider", fixture: "connect-unknown-provider.json", handler: Authorize,
			want: `{"statusCode": 404, "headers": {` + securityHeadersJSON + `, "Content-Type": "text/html; charset=utf-8"},
				"multiValueHeaders": null, "cookies": null,
				"body": ` + jsonString(page("Not Found", "Unknown provider.")) + `}`,
		},
		{
			name: "client_credentials connect", fixture: "connect-client-credentials.json", handler: Authorize,
			setup: func(t *testing.T, w *fixtureWorld) prepared {
				return prepared{values: map[string]string{"sig": w.sign(t, "machine", fixture(t, "connect-client-credentials.json").QueryStringParameters)}}
			},
			want: `{"statusCode": 302, "headers": {` + securityHeadersJSON + `,
				"Location": "https://abcdef1234.execute-api.us-east-1.amazonaws.com/callback/machine?state={state}"},
				"multiValueHeaders": null, "body": "",
				"cookies": ["{link_cookie}={link_secret}; Path=/; Max-Age=1800; HttpOnly; Secure; SameSite=Lax"]}`,
			after: func(t *testing.T, w *fixtureWorld, _ prepared) {
				if _, err := w.st.GetConnection(context.Background(), "machine", "svc-1"); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("connection svc-1 before its callback: %v", err)
				}
			},
		},
		{
			name: "client_credentials callback", fixture: "callback-client-credentials.json", handler: Callback,
			setup: func(t *testing.T, w *fixtureWorld) prepared {
				ev := fixture(t, "connect-client-credentials.json")
				fill(t, &ev, map[string]string{"sig": w.sign(t, "machine", ev.QueryStringParameters)}, "")
				resp, err := Authorize(w.b)(context.Background(), ev)
				loc, _ := url.Parse(resp.Headers["Location"])
				if err != nil || resp.StatusCode != http.StatusFound || loc == nil {
					t.Fatalf("connect answered %d %v, %v", resp.StatusCode, resp.Headers, err)
				}
				logcheck.Register(loc.Query().Get("state"))
				return prepared{values: map[string]string{"state": loc.Query().Get("state")}}
			},
			want: `{"statusCode": 201, "headers": {` + securityHeadersJSON + `, "Content-Type": "application/json"},
				"multiValueHeaders": null, "cookies": null,
				"body": "{\"provider\":\"machine\",\"connection_id\":\"svc-1\",\"status\":\"connected\",\"expires_at\":\"` + tokenFixtureExpiry + `\"}"}`,
			after: func(t *testing.T, w *fixtureWorld, _ prepared) {
				c, err := w.st.GetConnection(context.Background(), "machine", "svc-1")
				if err != nil || c.Status != store.StatusConnected || c.Grant != provider.GrantClientCredentials || !w.server("machine").Valid(c.AccessToken) {
					t.Errorf("connection svc-1: %s %s, %v", c.Status, c.Grant, err)
				}
				logcheck.Register(c.AccessToken)
			},
		},
		{
			name: "token", fixture: "events/token.json", handler: Tokens, setup: connectedAs("customer-42"),
			want: `{"statusCode": 200, "headers": {` + securityHeadersJSON + `, "Content-Type": "application/json"},
				"multiValueHeaders": null, "cookies": null,
				"body": "{\"access_token\":\"{access_token}\",\"token_type\":\"Bearer\",\"expires_at\":\"` + tokenFixtureExpiry + `\"}"}`,
			after: unchanged("customer-42"),
		},
		{
			name: "token of no connection", fixture: "events/token.json", handler: Tokens,
			want: refusedAnswer(404, "not_found"),
		},
		{
			name: "token forced to refresh", fixture: "token-force-refresh.json", handler: Tokens,
			setup: func(t *testing.T, w *fixtureWorld) prepared {
				c := w.connected(t, "customer-42")
				return prepared{names: map[string]string{c.AccessToken: "{old_access_token}"}}
			},
			want: `{"statusCode": 200, "headers": {` + securityHeadersJSON + `, "Content-Type": "application/json"},
				"multiValueHeaders": null, "cookies": null,
				"body": "{\"access_token\":\"{new_access_token}\",\"token_type\":\"Bearer\",\"expires_at\":\"` + tokenFixtureExpiry + `\"}"}`,
			after: stored("customer-42", func(t *testing.T, w *fixtureWorld, c *store.Connection) {
				if c.Status != store.StatusConnected || c.Version < 2 || !w.acme.Valid(c.AccessToken) || !w.acme.ValidRefresh(c.RefreshToken) {
					t.Errorf("after the forced refresh: %s version %d", c.Status, c.Version)
				}
			}),
		},
		{
			name: "delete", fixture: "events/delete.json", handler: Tokens, setup: connectedAs("customer-42"),
			want: `{"statusCode": 204, "headers": {` + securityHeadersJSON + `},
				"multiValueHeaders": null, "cookies": null, "body": ""}`,
			after: stored("customer-42", nil),
		},
		{
			name: "token without an IAM identity", fixture: "token-no-iam.json", handler: Tokens, setup: connectedAs("customer-42"),
			want:  refusedAnswer(403, "forbidden"),
			after: unchanged("customer-42"),
		},
		{
			name: "delete without an IAM identity", fixture: "delete-no-iam.json", handler: Tokens, setup: connectedAs("customer-42"),
			want:  refusedAnswer(403, "forbidden"),
			after: unchanged("customer-42"),
		},
		{
			name: "token under a JWT authorizer", fixture: "token-jwt-authorizer.json", handler: Tokens, setup: connectedAs("customer-42"),
			want:  refusedAnswer(403, "forbidden"),
			after: unchanged("customer-42"),
		},
		{
			name: "token with an IAM identity without its ARN", fixture: "token-iam-incomplete.json", handler: Tokens, setup: connectedAs("customer-42"),
			want:  refusedAnswer(403, "forbidden"),
			after: unchanged("customer-42"),
		},
		{
			name: "connection route with an unknown method", fixture: "connection-put.json", handler: Tokens, setup: connectedAs("customer-42"),
			want:  refusedAnswer(400, "invalid_request"),
			after: unchanged("customer-42"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newFixtureWorld(t, machineProvider(t))
			var p prepared
			if tt.setup != nil {
				p = tt.setup(t, w)
			}
			ev := fixture(t, tt.fixture)
			fill(t, &ev, p.values, p.cookie)
			resp, err := tt.handler(w.b)(context.Background(), ev)
			if err != nil {
				t.Fatalf("handler error %v: API Gateway would answer a bare 500", err)
			}
			got := answer(t, w, resp, p.names)
			var want any
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("want: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				e, _ := json.MarshalIndent(want, "", "  ")
				t.Errorf("answer\n%s\nwant\n%s", g, e)
			}
			if tt.after != nil {
				tt.after(t, w, p)
			}
		})
	}
}

// answer is resp as JSON values, with the values only a running flow knows
// written as {names}: those of names, the provider's URL as {acme}, and
// the state, PKCE challenge and binding cookie a connect answer hands out
// and a fresh access token.
func answer(t *testing.T, w *fixtureWorld, resp events.APIGatewayV2HTTPResponse, names map[string]string) any {
	t.Helper()
	b, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	pairs := []string{w.acme.URL, "{acme}"}
	if loc, err := url.Parse(resp.Headers["Location"]); err == nil {
		for k, name := range map[string]string{"state": "{state}", "code_challenge": "{code_challenge}"} {
			if v := loc.Query().Get(k); v != "" {
				pairs = append(pairs, v, name)
			}
		}
	}
	for _, raw := range resp.Cookies {
		switch c, err := http.ParseSetCookie(raw); {
		case err != nil || c.Value == "":
		case strings.HasPrefix(c.Name, LinkCookiePrefix):
			pairs = append(pairs, c.Name, "{link_cookie}", c.Value, "{link_secret}")
		default:
			pairs = append(pairs, c.Name, "{binding_cookie}", c.Value, "{binding}")
		}
	}
	for v, name := range names {
		pairs = append(pairs, v, name)
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal([]byte(resp.Body), &body) == nil && body.AccessToken != "" && names[body.AccessToken] == "" {
		pairs = append(pairs, body.AccessToken, "{new_access_token}")
	}
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i] == "" {
			t.Fatalf("an empty value for %s", pairs[i+1])
		}
	}
	var v any
	if err := json.Unmarshal([]byte(strings.NewReplacer(pairs...).Replace(string(b))), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// jsonString is s as a JSON string literal.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// machineProvider is a client_credentials provider, machine.
func machineProvider(t *testing.T) extraProvider {
	c := providertest.Config{ClientID: "machine-client-id", ClientSecret: "machine-secret-Wm3ma",
		GrantTypes: []string{providertest.GrantClientCredentials}, AccessTokenTTL: time.Hour}
	srv := providertest.New(t, c)
	return extraProvider{name: "machine", cfg: c, srv: srv,
		entry: "  machine:\n    token_url: " + srv.TokenURL() + "\n    grant_types: [client_credentials]\n"}
}

// TestTokenRouteRefusesBadRequests: the token route takes one parameter,
// force_refresh=true or false, and path parameters a connection key
// allows; anything else is answered from the contract without a request to
// the provider, on events/token.json as API Gateway sends it.
func TestTokenRouteRefusesBadRequests(t *testing.T) {
	w := newFixtureWorld(t)
	w.connected(t, "customer-42")
	tests := []struct {
		name, provider, id, query string
		status                    int
		body                      string
	}{
		{"force_refresh=yes", "acme", "customer-42", "force_refresh=yes", 400, `{"error":"invalid_request"}`},
		{"force_refresh empty", "acme", "customer-42", "force_refresh=", 400, `{"error":"invalid_request"}`},
		{"force_refresh without a value", "acme", "customer-42", "force_refresh", 400, `{"error":"invalid_request"}`},
		{"force_refresh twice", "acme", "customer-42", "force_refresh=true&force_refresh=true", 400, `{"error":"invalid_request"}`},
		{"another parameter", "acme", "customer-42", "x=1", 400, `{"error":"invalid_request"}`},
		{"force_refresh and another parameter", "acme", "customer-42", "force_refresh=true&x=1", 400, `{"error":"invalid_request"}`},
		{"a bad escape", "acme", "customer-42", "%zz", 400, `{"error":"invalid_request"}`},
		{"no such connection", "acme", "nobody", "", 404, `{"error":"not_found"}`},
		{"no such provider", "nosuchprovider", "customer-42", "", 404, `{"error":"not_found"}`},
		{"a provider name no key allows", "a#b", "customer-42", "", 400, `{"error":"invalid_request"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := fixture(t, "events/token.json")
			ev.PathParameters = map[string]string{"provider": tt.provider, "connection_id": tt.id}
			ev.RawPath = "/connections/" + tt.provider + "/" + tt.id + "/token"
			ev.RequestContext.HTTP.Path = ev.RawPath
			ev.RawQueryString = tt.query
			before := w.acme.TokenRequests()
			resp, err := Tokens(w.b)(context.Background(), ev)
			if err != nil || resp.StatusCode != tt.status || resp.Body != tt.body ||
				resp.Headers["Content-Type"] != "application/json" || resp.Headers["Cache-Control"] != "no-store" {
				t.Fatalf("answer %d %s %v, %v; want %d %s", resp.StatusCode, resp.Body, resp.Headers, err, tt.status, tt.body)
			}
			if w.acme.TokenRequests() != before {
				t.Error("a bad request reached the provider")
			}
		})
	}
}
