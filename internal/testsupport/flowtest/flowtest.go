// Package flowtest is a browser walking the connect flow — a signed link to
// authorize, the provider's consent, the callback with the binding cookie —
// against any handler set: the handlers called in process (shared/httpapi's
// tests) or the built functions under the Lambda emulator (e2e). The
// security rows are proved on both, so the browser they use, and the
// tricks it plays (a planted state, a flipped signature, a link signed past
// the signing library's checks), have one definition.
//
// Every code, state, binding cookie and link signature the browser sees is
// registered with logcheck, and handed to Remember for the logs logcheck
// does not read (a function's, under the emulator).
package flowtest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Handler answers one API Gateway request, failing t if it cannot (a
// handler's error, a function that did not answer).
type Handler func(t testing.TB, ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse

// InProcess is h, a handler of shared/httpapi, as a Handler.
func InProcess(name string, h func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)) Handler {
	return func(t testing.TB, ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
		t.Helper()
		resp, err := h(t.Context(), ev)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return resp
	}
}

// Browser is one test's browser. T is the test its helpers fail; Within
// lends it to a subtest.
type Browser struct {
	T *testing.T
	// Authorize and Callback answer /connect/{provider} and
	// /callback/{provider}.
	Authorize, Callback Handler
	// Keys and SigningKey are the app's signing keyset and the material of
	// its key testsecrets.KeyID, for links the signing library refuses.
	Keys       *signing.Keyset
	SigningKey string
	// Provider is acme's test server; Consent approves through it at
	// any providertest server.
	Provider *providertest.Server
	// Store is the broker's store, for planting states and reading
	// connections.
	Store store.Store
	// BindingCookieName is httpapi.BindingCookieName (a field, as
	// httpapi's own tests use the browser).
	BindingCookieName func(stateID string) string
	// Items returns the whole store, each item (or file) by its key: what
	// Snapshot takes.
	Items func(t testing.TB) map[string]string
	// ReturnTo is where Begin's links send the browser back.
	ReturnTo string
	// Now is the broker's clock; nil means time.Now.
	Now func() time.Time
	// Remember, unless nil, is given every value the browser registers
	// with logcheck.
	Remember func(values ...string)
}

// Within makes t (a subtest) the browser's test until t ends, so that the
// browser's helpers fail the subtest that called them.
func (b *Browser) Within(t *testing.T) {
	prev := b.T
	b.T = t
	t.Cleanup(func() { b.T = prev })
}

func (b *Browser) now() time.Time {
	if b.Now == nil {
		return time.Now()
	}
	return b.Now()
}

// secret registers values that no log may hold.
func (b *Browser) secret(values ...string) {
	logcheck.Register(values...)
	if b.Remember != nil {
		b.Remember(values...)
	}
}

// Sign signs l (expiring in half an hour unless set) as the app does.
func (b *Browser) Sign(l signing.Link) string {
	b.T.Helper()
	if l.Expires.IsZero() {
		l.Expires = b.now().Add(30 * time.Minute)
	}
	raw, err := signing.SignLink(b.Keys, l)
	if err != nil {
		b.T.Fatal(err)
	}
	v, _ := url.ParseQuery(raw)
	b.secret(v.Get("sig"))
	return raw
}

// Link signs an acme link for connectionID.
func (b *Browser) Link(connectionID, ret string, scopes []string, exp time.Time) string {
	return b.Sign(signing.Link{Provider: "acme", ConnectionID: connectionID, ReturnTo: ret, Scopes: scopes, Expires: exp})
}

// RawLink signs l as README's "Starting a connection" describes —
// HMAC-SHA256 under the keys secret's current key over Link.Canonical —
// without the signing library's own checks, so that values it refuses
// reach authorize in a correctly signed link.
func (b *Browser) RawLink(l signing.Link) string {
	if l.Nonce == "" {
		l.Nonce, _ = signing.RandomString(signing.NonceBytes)
	}
	mac := hmac.New(sha256.New, []byte(b.SigningKey))
	mac.Write([]byte(l.Canonical(testsecrets.KeyID)))
	sig := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	b.secret(sig)
	q := url.Values{"connection_id": {l.ConnectionID}, "exp": {strconv.FormatInt(l.Expires.Unix(), 10)}, "kid": {testsecrets.KeyID}, "sig": {sig}, "nonce": {l.Nonce}}
	if l.ReturnTo != "" {
		q.Set("return_to", l.ReturnTo)
	}
	if len(l.Scopes) > 0 {
		q.Set("scope", strings.Join(l.Scopes, " "))
	}
	if l.Grant != "" {
		q.Set("grant", l.Grant)
	}
	for k, v := range l.Params {
		q.Set(signing.ParamPrefix+k, v)
	}
	return q.Encode()
}

// Connect sends authorize the sample connect request with this query,
// edited by edits.
func (b *Browser) Connect(provider, rawQuery string, edits ...func(*events.APIGatewayV2HTTPRequest)) events.APIGatewayV2HTTPResponse {
	b.T.Helper()
	return b.Authorize(b.T, b.request("connect.json", provider, "connect", rawQuery, edits))
}

// Deliver sends the callback the browser's query and cookies.
func (b *Browser) Deliver(provider, rawQuery string, cookies ...string) events.APIGatewayV2HTTPResponse {
	b.T.Helper()
	return b.DeliverTo(b.Callback, provider, rawQuery, cookies...)
}

// DeliverTo is Deliver to another callback (another instance of it).
func (b *Browser) DeliverTo(h Handler, provider, rawQuery string, cookies ...string) events.APIGatewayV2HTTPResponse {
	b.T.Helper()
	return h(b.T, b.CallbackRequest(provider, rawQuery, cookies...))
}

// CallbackRequest is the sample callback request with the browser's query
// and cookies.
func (b *Browser) CallbackRequest(provider, rawQuery string, cookies ...string) events.APIGatewayV2HTTPRequest {
	b.T.Helper()
	return b.request("callback.json", provider, "callback", rawQuery, []func(*events.APIGatewayV2HTTPRequest){
		func(ev *events.APIGatewayV2HTTPRequest) { ev.Cookies = cookies },
	})
}

// request is the sample events/<name> pointed at /<path>/<provider> with
// the raw query string rawQuery, then edited.
func (b *Browser) request(name, provider, path, rawQuery string, edits []func(*events.APIGatewayV2HTTPRequest)) events.APIGatewayV2HTTPRequest {
	b.T.Helper()
	return sampleevent.Request(b.T, name, func(ev *events.APIGatewayV2HTTPRequest) {
		sampleevent.SetQuery(ev, provider, path, rawQuery)
		for _, edit := range edits {
			edit(ev)
		}
	})
}

// Started is an authorize answer as the browser holds it.
type Started struct {
	Resp    events.APIGatewayV2HTTPResponse
	AuthURL *url.URL
	State   string
	Cookie  string // name=value of the binding cookie
	// LinkCookie is name=value of the cookie by which this browser may
	// use the link again.
	LinkCookie string
}

// StateID is the id of the state's record.
func (st Started) StateID() string { return stateID(st.State) }

// Start runs authorize for a browser link (the request edited by edits)
// and checks it answered a redirect to the provider with a binding cookie
// and a link cookie.
func (b *Browser) Start(l signing.Link, edits ...func(*events.APIGatewayV2HTTPRequest)) Started {
	b.T.Helper()
	return b.StartQuery(l.Provider, b.Sign(l), edits...)
}

// StartQuery is Start for a link already signed (rawQuery).
func (b *Browser) StartQuery(provider, rawQuery string, edits ...func(*events.APIGatewayV2HTTPRequest)) Started {
	b.T.Helper()
	resp := b.Connect(provider, rawQuery, edits...)
	if resp.StatusCode != http.StatusFound || len(resp.Cookies) != 2 {
		b.T.Fatalf("authorize %s: %d %v %s", provider, resp.StatusCode, resp.Cookies, resp.Body)
	}
	authURL, err := url.Parse(resp.Headers["Location"])
	if err != nil {
		b.T.Fatal(err)
	}
	cookie := strings.SplitN(resp.Cookies[0], ";", 2)[0]
	linkCookie := strings.SplitN(resp.Cookies[1], ";", 2)[0]
	st := Started{Resp: resp, AuthURL: authURL, State: authURL.Query().Get("state"), Cookie: cookie, LinkCookie: linkCookie}
	b.secret(st.State, strings.SplitN(cookie, "=", 2)[1], strings.SplitN(linkCookie, "=", 2)[1])
	return st
}

// Flow is a started authorization: what the browser holds when it comes
// back from the provider.
type Flow struct {
	CallbackQuery string // code=…&state=… as the provider sent it
	State, Code   string
	Cookie        string // name=value of the binding cookie
	AuthURL       *url.URL
}

// StateID is the id of the state's record.
func (f Flow) StateID() string { return stateID(f.State) }

func stateID(state string) string { return signing.Hash(strings.Split(state, ".")[1]) }

// Begin runs authorize and the provider's consent for an acme
// connectionID.
func (b *Browser) Begin(connectionID string) Flow {
	b.T.Helper()
	st := b.Start(signing.Link{Provider: "acme", ConnectionID: connectionID, ReturnTo: b.ReturnTo})
	back := b.Consent(st.AuthURL)
	return Flow{CallbackQuery: back.RawQuery, State: back.Query().Get("state"), Code: back.Query().Get("code"), Cookie: st.Cookie, AuthURL: st.AuthURL}
}

// Consent is the user approving at the provider: it returns where the
// provider redirects the browser.
func (b *Browser) Consent(authURL *url.URL) *url.URL {
	b.T.Helper()
	back := b.Provider.Authorize(b.T, authURL.String())
	b.secret(back.Query().Get("code"))
	return back
}

// PlantState records an acme state for connectionID as authorize would,
// with the given signed and recorded expiries, and returns the state value
// and the browser's cookie.
func (b *Browser) PlantState(signedExp, recordedExp time.Time, ret, connectionID string) (value, cookie string) {
	b.T.Helper()
	ttl := 10 * time.Minute
	st, err := signing.NewState(b.Keys, "acme", signedExp.Add(-ttl), ttl)
	if err != nil {
		b.T.Fatal(err)
	}
	binding, _ := signing.RandomString(32)
	if err := b.Store.PutState(context.Background(), store.StateRecord{ID: st.ID, Provider: "acme", ConnectionID: connectionID,
		ReturnTo: ret, Grant: "authorization_code", BindingHash: signing.Hash(binding), ExpiresAt: recordedExp}); err != nil {
		b.T.Fatal(err)
	}
	b.secret(st.Value, binding)
	return st.Value, b.BindingCookieName(st.ID) + "=" + binding
}

// Conn returns the acme connection id.
func (b *Browser) Conn(id string) (store.Connection, error) {
	return b.Store.GetConnection(context.Background(), "acme", id)
}

// Snapshot is the whole store now, for AssertUnchanged.
func (b *Browser) Snapshot() map[string]string {
	b.T.Helper()
	return b.Items(b.T)
}

// AssertUnchanged fails unless the store holds exactly what it held at
// the snapshot before.
func (b *Browser) AssertUnchanged(before map[string]string) {
	b.T.Helper()
	after := b.Snapshot()
	var diff []string
	for k, v := range after {
		if before[k] != v {
			diff = append(diff, "written: "+k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			diff = append(diff, "deleted: "+k)
		}
	}
	if len(diff) > 0 {
		slices.Sort(diff)
		b.T.Fatalf("the store changed: %v", diff)
	}
}

// AssertCallbackRefused delivers the callback and fails unless it answered
// a page of status (no redirect), left the store as it was and sent the
// provider no token request.
func (b *Browser) AssertCallbackRefused(status int, provider, rawQuery string, cookies ...string) {
	b.T.Helper()
	snap, before := b.Snapshot(), b.Provider.TokenRequests()
	resp := b.Deliver(provider, rawQuery, cookies...)
	if resp.StatusCode != status || resp.Headers["Location"] != "" {
		b.T.Fatalf("got %d %v, want a %d page", resp.StatusCode, resp.Headers, status)
	}
	b.AssertUnchanged(snap)
	if n := b.Provider.TokenRequests() - before; n != 0 {
		b.T.Fatalf("%d token requests", n)
	}
}

// ConnOf returns a stored connection, which must exist; its tokens are
// registered as values no log may hold.
func (b *Browser) ConnOf(provider, id string) store.Connection {
	b.T.Helper()
	c, err := b.Store.GetConnection(context.Background(), provider, id)
	if err != nil {
		b.T.Fatalf("connection %s/%s: %v", provider, id, err)
	}
	b.secret(c.AccessToken, c.RefreshToken)
	return c
}

// AssertConnected fails unless headers send the browser back to the app
// (ReturnTo's host) with connection id connected.
func (b *Browser) AssertConnected(headers map[string]string, id string) {
	b.T.Helper()
	app, _ := url.Parse(b.ReturnTo)
	loc, err := url.Parse(headers["Location"])
	if err != nil || app == nil || loc.Host != app.Host || loc.Query().Get("connection_id") != id || loc.Query().Get("status") != "connected" {
		b.T.Fatalf("final redirect %q", headers["Location"])
	}
}
