package httpapi

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// The browser's side of a connect, in process: the helpers the security
// tests of the connect and callback handlers (moved here from e2e, where
// they needed nothing the built functions alone have) drive a fixtureWorld
// with, each request an events/ sample with its query and cookies set.

const fixtureReturnTo = "https://app.example.com/connected?tab=integrations"

// browser is one test's use of a fixtureWorld.
type browser struct {
	*fixtureWorld
	t *testing.T
}

func newBrowser(t *testing.T) *browser { return &browser{fixtureWorld: newFixtureWorld(t), t: t} }

// within makes t (a subtest) the browser's test until t ends.
func (s *browser) within(t *testing.T) {
	prev := s.t
	s.t = t
	t.Cleanup(func() { s.t = prev })
}

// signed signs l (expiring in half an hour unless set) as the app does.
func (s *browser) signed(l signing.Link) string {
	s.t.Helper()
	if l.Expires.IsZero() {
		l.Expires = fixtureNow.Add(30 * time.Minute)
	}
	raw, err := signing.SignLink(s.keys, l)
	if err != nil {
		s.t.Fatal(err)
	}
	v, _ := url.ParseQuery(raw)
	logcheck.Register(v.Get("sig"))
	return raw
}

// link signs an acme link for connectionID.
func (s *browser) link(connectionID, ret string, scopes []string, exp time.Time) string {
	return s.signed(signing.Link{Provider: "acme", ConnectionID: connectionID, ReturnTo: ret, Scopes: scopes, Expires: exp})
}

// rawLink signs l as README's "Starting a connection" describes —
// HMAC-SHA256 under the keys secret's current key over Link.Canonical —
// without the signing library's own checks, so that values it refuses
// reach authorize in a correctly signed link.
func (s *browser) rawLink(l signing.Link) string {
	mac := hmac.New(sha256.New, []byte(fixtureKey))
	mac.Write([]byte(l.Canonical("k1")))
	sig := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	logcheck.Register(sig)
	q := url.Values{"connection_id": {l.ConnectionID}, "exp": {strconv.FormatInt(l.Expires.Unix(), 10)}, "kid": {"k1"}, "sig": {sig}}
	if l.ReturnTo != "" {
		q.Set("return_to", l.ReturnTo)
	}
	return q.Encode()
}

// event is the sample events/<name> pointed at /<path>/<provider> with
// the raw query string rawQuery.
func (s *browser) event(name, provider, path, rawQuery string) events.APIGatewayV2HTTPRequest {
	s.t.Helper()
	ev := fixture(s.t, "events/"+name)
	sampleevent.SetQuery(&ev, provider, path, rawQuery)
	return ev
}

// connect runs Authorize with a connect query.
func (s *browser) connect(provider, rawQuery string) events.APIGatewayV2HTTPResponse {
	s.t.Helper()
	resp, err := Authorize(s.b)(context.Background(), s.event("connect.json", provider, "connect", rawQuery))
	if err != nil {
		s.t.Fatalf("authorize: %v", err)
	}
	return resp
}

// deliver runs Callback with the browser's query and cookies.
func (s *browser) deliver(provider, rawQuery string, cookies ...string) events.APIGatewayV2HTTPResponse {
	s.t.Helper()
	ev := s.event("callback.json", provider, "callback", rawQuery)
	ev.Cookies = cookies
	resp, err := Callback(s.b)(context.Background(), ev)
	if err != nil {
		s.t.Fatalf("callback: %v", err)
	}
	return resp
}

// started is an authorize answer as the browser holds it.
type started struct {
	resp    events.APIGatewayV2HTTPResponse
	authURL *url.URL
	state   string
	cookie  string // name=value of the binding cookie
}

// secConnect runs authorize for a browser link and checks it answered a
// redirect to the provider with a binding cookie.
func (s *browser) secConnect(l signing.Link) started {
	s.t.Helper()
	resp := s.connect(l.Provider, s.signed(l))
	if resp.StatusCode != http.StatusFound || len(resp.Cookies) != 1 {
		s.t.Fatalf("authorize %s: %d %v %s", l.Provider, resp.StatusCode, resp.Cookies, resp.Body)
	}
	authURL, err := url.Parse(resp.Headers["Location"])
	if err != nil {
		s.t.Fatal(err)
	}
	cookie := strings.SplitN(resp.Cookies[0], ";", 2)[0]
	st := started{resp: resp, authURL: authURL, state: authURL.Query().Get("state"), cookie: cookie}
	logcheck.Register(st.state, strings.SplitN(cookie, "=", 2)[1])
	return st
}

// flow is a started authorization: what the browser holds when it comes
// back from the provider.
type flow struct {
	callbackQuery string // code=…&state=… as the provider sent it
	state, code   string
	cookie        string // name=value of the binding cookie
	authURL       *url.URL
}

// begin runs authorize and the provider's consent for connectionID.
func (s *browser) begin(connectionID string) flow {
	s.t.Helper()
	st := s.secConnect(signing.Link{Provider: "acme", ConnectionID: connectionID, ReturnTo: fixtureReturnTo})
	back := s.consent(st.authURL)
	return flow{callbackQuery: back.RawQuery, state: back.Query().Get("state"), code: back.Query().Get("code"), cookie: st.cookie, authURL: st.authURL}
}

// consent is the user approving at the provider: it returns where the
// provider redirects the browser.
func (s *browser) consent(authURL *url.URL) *url.URL {
	s.t.Helper()
	back := s.acme.Authorize(s.t, authURL.String())
	logcheck.Register(back.Query().Get("code"))
	return back
}

// plantState records an acme state for connectionID as authorize would,
// with the given signed and recorded expiries, and returns the state value
// and the browser's cookie.
func (s *browser) plantState(signedExp, recordedExp time.Time, ret, connectionID string) (value, cookie string) {
	s.t.Helper()
	ttl := 10 * time.Minute
	st, err := signing.NewState(s.keys, "acme", signedExp.Add(-ttl), ttl)
	if err != nil {
		s.t.Fatal(err)
	}
	binding, _ := signing.RandomString(32)
	if err := s.st.PutState(context.Background(), store.StateRecord{ID: st.ID, Provider: "acme", ConnectionID: connectionID,
		ReturnTo: ret, Grant: "authorization_code", BindingHash: signing.Hash(binding), ExpiresAt: recordedExp}); err != nil {
		s.t.Fatal(err)
	}
	logcheck.Register(st.Value, binding)
	return st.Value, BindingCookieName(st.ID) + "=" + binding
}

func (s *browser) conn(id string) (store.Connection, error) {
	return s.st.GetConnection(context.Background(), "acme", id)
}

// codeRequests returns the token requests srv received carrying code.
func codeRequests(srv *providertest.Server, code string) []providertest.Recorded {
	var out []providertest.Recorded
	for _, r := range srv.Requests() {
		if r.Params.Get("code") == code && code != "" {
			out = append(out, r)
		}
	}
	return out
}

// snapshot is the whole store: the embedded store's file, which every
// write rewrites.
func (s *browser) snapshot() []byte {
	s.t.Helper()
	b, err := os.ReadFile(s.storeFile)
	if err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	return b
}

// assertUnchanged fails unless the store holds exactly what it held.
func (s *browser) assertUnchanged(before []byte) {
	s.t.Helper()
	if !bytes.Equal(s.snapshot(), before) {
		s.t.Fatal("the store changed")
	}
}

// flipSegment changes one character in the middle of the i-th dot-separated
// part of a state (kid.nonce.exp.sig) to another of the same alphabet, so
// that the state stays well formed and only its integrity is broken.
func flipSegment(state string, i int) string {
	parts := strings.Split(state, ".")
	if i >= len(parts) {
		return state
	}
	b := []byte(parts[i])
	j := len(b) / 2
	switch c := b[j]; {
	case c >= '0' && c <= '9':
		b[j] = '0' + (c-'0'+1)%10
		if j == 0 && b[j] == '0' {
			b[j] = '1'
		}
	case c == 'A':
		b[j] = 'B'
	default:
		b[j] = 'A'
	}
	parts[i] = string(b)
	return strings.Join(parts, ".")
}

func assertSecurityHeaders(t *testing.T, resp events.APIGatewayV2HTTPResponse) {
	t.Helper()
	if resp.Headers["Cache-Control"] != "no-store" || resp.Headers["Referrer-Policy"] != "no-referrer" {
		t.Errorf("security headers missing: %v", resp.Headers)
	}
}

func assertNoSecretsIn(t *testing.T, s string, values ...string) {
	t.Helper()
	for _, v := range append(values, fixtureClientSecret) {
		if v != "" && (strings.Contains(s, v) || strings.Contains(s, url.QueryEscape(v))) {
			t.Errorf("response contains a code, state or secret (%.6s…)", v)
		}
	}
}
