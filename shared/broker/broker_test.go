package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

const (
	base     = brokertest.BaseURL
	returnTo = brokertest.ReturnTo
)

// fixture is a brokertest World whose one provider, acme, is the strict
// server prov; its methods run the flows for acme.
type fixture struct {
	*brokertest.World
	prov *providertest.Server
}

// newFixture serves acme with cfg, described by the catalog entry entry
// (brokertest's placeholders filled in).
func newFixture(t *testing.T, cfg providertest.Config, entry string) *fixture {
	t.Helper()
	w := brokertest.New(t, brokertest.Options{Providers: []brokertest.Provider{{Name: "acme", Config: cfg, Entry: entry}}})
	return &fixture{World: w, prov: w.Servers["acme"]}
}

// connect runs a whole flow for id and returns the stored connection.
func (f *fixture) connect(t *testing.T, id string) store.Connection {
	t.Helper()
	return f.Connected(t, "acme", id)
}

// start signs a connect link for id with f.Keys and runs Connect.
func (f *fixture) start(id string) (broker.ConnectResult, error) {
	return f.startLink(func(l *signing.Link) { l.ConnectionID = id })
}

// startLink runs Connect for a link of c1, edited by edit.
func (f *fixture) startLink(edit func(*signing.Link)) (broker.ConnectResult, error) {
	l := signing.Link{Provider: "acme", ConnectionID: "c1", ReturnTo: returnTo, Expires: f.Clock.Now().Add(time.Hour)}
	edit(&l)
	q, err := signing.SignLink(f.Keys, l)
	if err != nil {
		return broker.ConnectResult{}, err
	}
	qv, _ := url.ParseQuery(q)
	return f.Connect("acme", qv)
}

// consent starts a flow for c1 and takes it through the provider's
// consent: the connect result and the query the provider sends back.
func (f *fixture) consent(t *testing.T) (broker.ConnectResult, url.Values) {
	t.Helper()
	res, err := f.start("c1")
	if err != nil {
		t.Fatal(err)
	}
	return res, f.prov.Authorize(t, res.Location).Query()
}

// finish delivers the callback query in the browser that holds res's binding.
func (f *fixture) finish(res broker.ConnectResult, q url.Values) (broker.CallbackResult, error) {
	return f.Callback("acme", res, q)
}

func (f *fixture) get(t *testing.T, id string) store.Connection {
	t.Helper()
	return f.Get(t, "acme", id)
}

// sweepAt runs the refresh schedule with the clock at now+d.
func (f *fixture) sweepAt(t *testing.T, d time.Duration) broker.RefreshSummary {
	t.Helper()
	f.Clock.Add(d)
	return f.Sweep(t)
}

const codeEntry = brokertest.CodeEntry

// RFC 6749 §6: a refresh response without refresh_token keeps the old one.
func TestRefreshKeepsRefreshTokenWhenOmitted(t *testing.T) {
	f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, codeEntry)
	c := f.connect(t, "c1")
	if sum := f.sweepAt(t, 56*time.Minute); sum.Refreshed != 1 {
		t.Fatalf("sweep %+v", sum)
	}
	c2 := f.get(t, "c1")
	if c2.RefreshToken != c.RefreshToken || c2.AccessToken == c.AccessToken || !f.prov.Valid(c2.AccessToken) || c2.Version != 3 { // created, claimed, refreshed
		t.Fatalf("after refresh: version %d, same refresh token %v", c2.Version, c2.RefreshToken == c.RefreshToken)
	}
}

// Transient failures back off, keep tokens, honour Retry-After, turn the
// connection "failing" after FailingAfter attempts, and a success clears it.
func TestRefreshFailureClasses(t *testing.T) {
	f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour, RotateRefreshTokens: true}, codeEntry)
	c := f.connect(t, "c1")
	f.prov.FailNext(1, http.StatusTooManyRequests, "application/json", `{}`, http.Header{"Retry-After": {"3600"}})
	if sum := f.sweepAt(t, 56*time.Minute); sum.Failed != 1 {
		t.Fatalf("sweep %+v", sum)
	}
	c2 := f.get(t, "c1")
	if c2.RefreshToken != c.RefreshToken || c2.AccessToken != c.AccessToken || c2.FailureCount != 1 ||
		c2.Status != store.StatusConnected || c2.NextRefresh.Sub(f.Clock.Now()) < 59*time.Minute {
		t.Fatalf("after 429: count %d status %s due in %v", c2.FailureCount, c2.Status, c2.NextRefresh.Sub(f.Clock.Now()))
	}
	for i := 2; i <= broker.DefaultFailingAfter; i++ {
		f.prov.FailNext(1, 502, "text/html", "<html>bad gateway</html>", nil)
		f.sweepAt(t, 2*time.Hour)
	}
	if c3 := f.get(t, "c1"); c3.Status != store.StatusFailing || c3.FailureCount != broker.DefaultFailingAfter || strings.Contains(c3.LastError, "<html>") {
		t.Fatalf("after %d failures: status %s count %d error %q", broker.DefaultFailingAfter, c3.Status, c3.FailureCount, c3.LastError)
	}
	if sum := f.sweepAt(t, 2*time.Hour); sum.Refreshed != 1 {
		t.Fatalf("recovery sweep %+v", sum)
	}
	if c4 := f.get(t, "c1"); c4.Status != store.StatusConnected || c4.FailureCount != 0 || c4.LastError != "" || c4.RefreshToken == c.RefreshToken {
		t.Fatalf("after recovery: status %s count %d", c4.Status, c4.FailureCount)
	}
}

// A provider without consent (client_credentials): the connect link leads
// through the callback, which mints the token; the schedule re-mints it.
func TestClientCredentialsProvider(t *testing.T) {
	f := newFixture(t, providertest.Config{AccessTokenTTL: 300 * time.Second, ClientAuth: "body", TokenRequest: "json"},
		"    token_url: TOKEN_URL\n    grant_types: [client_credentials]\n    client_auth: body\n    token_request: json\n")
	c := f.connect(t, "svc")
	if margin := c.ExpiresAt.Sub(c.NextRefresh); c.RefreshToken != "" || c.ExpiresAt.IsZero() || margin > 150*time.Second || margin < 120*time.Second {
		t.Fatalf("connection: refresh token %v, expires %v, due %v", c.RefreshToken != "", c.ExpiresAt, c.NextRefresh)
	}
	if sum := f.sweepAt(t, 181*time.Second); sum.Refreshed != 1 {
		t.Fatalf("sweep %+v", sum)
	}
	if c2 := f.get(t, "svc"); c2.AccessToken == c.AccessToken || !f.prov.Valid(c2.AccessToken) {
		t.Fatal("token not re-minted")
	}
}

// A provider whose tokens do not expire is never scheduled.
func TestNonExpiringTokenNeverScheduled(t *testing.T) {
	f := newFixture(t, providertest.Config{RequirePKCE: true}, codeEntry)
	c := f.connect(t, "forever")
	if !c.ExpiresAt.IsZero() || !c.NextRefresh.IsZero() {
		t.Fatalf("expires %v due %v", c.ExpiresAt, c.NextRefresh)
	}
	if sum := f.sweepAt(t, 365*24*time.Hour); sum.Due != 0 {
		t.Fatalf("sweep %+v", sum)
	}
}

// S21: refreshers running at once over the same due connections never
// send one refresh token twice, so a rotating provider revokes nothing
// and every connection still refreshes afterwards.
func TestConcurrentSweepsRefreshEachConnectionOnce(t *testing.T) {
	f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour, RotateRefreshTokens: true}, codeEntry)
	const n = 20
	for i := range n {
		f.connect(t, "c"+strconv.Itoa(i))
	}
	before := f.prov.TokenRequests()
	f.Clock.Add(56 * time.Minute)
	var wg sync.WaitGroup
	var refreshed atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sum, err := f.Broker.Sweep(context.Background())
			if err != nil {
				t.Error(err)
			}
			refreshed.Add(int32(sum.Refreshed))
		}()
	}
	wg.Wait()
	if got := f.prov.TokenRequests() - before; got != n || refreshed.Load() != n {
		t.Fatalf("%d token requests and %d refreshes for %d connections", got, refreshed.Load(), n)
	}
	for i := range n {
		c := f.get(t, "c"+strconv.Itoa(i))
		if c.Status != store.StatusConnected || !f.prov.ValidRefresh(c.RefreshToken) {
			t.Fatalf("connection c%d lost: status %s", i, c.Status)
		}
	}
}

// A sweep stuck in a slow provider call holds the connection's lease: a
// second sweep within the lease period leaves it alone.
func TestLeaseHeldBlocksOtherSweeps(t *testing.T) {
	f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour, RotateRefreshTokens: true}, codeEntry)
	f.connect(t, "slow")
	before := f.prov.TokenRequests()
	f.Clock.Add(56 * time.Minute)
	f.prov.Delay(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // the Lambda's deadline
	defer cancel()
	done := make(chan broker.RefreshSummary)
	go func() {
		sum, _ := f.Broker.Sweep(ctx)
		done <- sum
	}()
	time.Sleep(300 * time.Millisecond) // the first sweep is inside its provider call
	f.Clock.Add(broker.DefaultLeasePeriod - time.Second)
	second, err := f.Broker.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first := <-done
	if got := f.prov.TokenRequests() - before; got != 1 || first.Refreshed != 1 || second.Refreshed != 0 {
		t.Fatalf("%d token requests; first sweep %+v, second %+v", got, first, second)
	}
	if c := f.get(t, "slow"); c.Status != store.StatusConnected || !f.prov.ValidRefresh(c.RefreshToken) || c.Lease != (store.Lease{}) {
		t.Fatalf("connection lost or still leased: %s %+v", c.Status, c.Lease)
	}
}

// S8 (RFC 9207): where the catalog names the issuer, a callback carrying
// another iss is refused before any token request; with require_issuer, a
// callback without iss is refused too.
func TestIssuerMixUp(t *testing.T) {
	entry := codeEntry + "    issuer: https://acme.example\n    require_issuer: true\n"
	tests := []struct {
		name, iss string
		ok        bool
	}{
		{"matching issuer", "https://acme.example", true},
		{"other issuer", "https://evil.example", false},
		{"missing issuer", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, providertest.Config{RequirePKCE: true, Issuer: tt.iss}, entry)
			res, back := f.consent(t)
			if tt.iss == "" && back.Has("iss") {
				t.Fatal("provider sent iss")
			}
			before := f.prov.TokenRequests()
			_, err := f.finish(res, back)
			var e *broker.Error
			if tt.ok != (err == nil) || !tt.ok && (!errors.As(err, &e) || e.Kind != broker.KindForbidden) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok && f.prov.TokenRequests() != before {
				t.Fatal("the code was redeemed")
			}
		})
	}
}

// Signing keys rotate without an outage: a link signed with a key id that
// the warm instance's cached keyset does not know yet forces one re-read.
func TestKeyRotationReachesWarmInstances(t *testing.T) {
	f := newFixture(t, providertest.Config{RequirePKCE: true}, codeEntry)
	counting := &countingSource{src: secrets.NewFile(f.SecretsFile)}
	f.Broker.Secrets = secrets.NewCache(counting, 5*time.Minute)
	f.connect(t, "before-rotation")

	k2 := "second-key-0123456789abcdef0123456789abcdef"
	logcheck.Register(k2)
	rotated, _ := json.Marshal(map[string]any{
		"oauthbroker/keys":          map[string]string{"current_kid": "k2", "k1": brokertest.SigningKey, "k2": k2},
		"oauthbroker/provider/acme": f.Secrets.Clients["acme"],
	})
	os.WriteFile(f.SecretsFile, rotated, 0o600)
	f.Keys, _ = testkeys.Keyset("k2", map[string][]byte{"k2": []byte(k2)})
	reads := counting.n.Load()
	f.connect(t, "after-rotation")
	if got := counting.n.Load() - reads; got != 1 {
		t.Fatalf("%d keyset reads after rotation, want 1", got)
	}
	// Unknown key ids do not turn into a flood of Secrets Manager reads.
	f.Keys, _ = testkeys.Keyset("k9", map[string][]byte{"k9": []byte(k2)})
	reads = counting.n.Load()
	for range 5 {
		if _, err := f.start("forged"); err == nil {
			t.Fatal("link under an unknown key accepted")
		}
	}
	if got := counting.n.Load() - reads; got > 1 {
		t.Fatalf("%d forced keyset reads for 5 unknown-key links", got)
	}
}

type countingSource struct {
	src secrets.Source
	n   atomic.Int32
}

func (c *countingSource) Secret(ctx context.Context, name string) ([]byte, error) {
	if strings.HasSuffix(name, "keys") {
		c.n.Add(1)
	}
	return c.src.Secret(ctx, name)
}

// A client_credentials connect without a return address is for a program:
// no cookie, the callback mints and reports the connection (201 upstream),
// and the state is single-use like any other.
func TestClientCredentialsWithoutReturnTo(t *testing.T) {
	f := newFixture(t, providertest.Config{AccessTokenTTL: 300 * time.Second, ClientAuth: "body", TokenRequest: "json"},
		"    token_url: TOKEN_URL\n    grant_types: [client_credentials]\n    client_auth: body\n    token_request: json\n")
	res, err := f.startLink(func(l *signing.Link) { l.ReturnTo = "" })
	if err != nil {
		t.Fatal(err)
	}
	if res.Binding != nil || !strings.HasPrefix(res.Location, base+"/callback/acme?state=") {
		t.Fatalf("connect: %+v", res)
	}
	loc, _ := url.Parse(res.Location)
	cb, err := f.finish(res, loc.Query())
	if err != nil || cb.Location != "" || cb.Connection == nil || cb.ClearBinding != "" {
		t.Fatalf("callback: %+v %v", cb, err)
	}
	if c := f.get(t, "c1"); c.Grant != provider.GrantClientCredentials {
		t.Fatalf("connection made with %q", c.Grant)
	}
	if _, err := f.finish(res, loc.Query()); err == nil {
		t.Fatal("replayed client_credentials state accepted")
	}
	if n := f.prov.TokenRequests(); n != 1 {
		t.Fatalf("%d token requests", n)
	}
}

// A provider offering both grants (GetResponse): the link chooses. The
// client_credentials connection is re-minted, never refreshed.
func TestLinkChoosesGrant(t *testing.T) {
	f := newFixture(t, providertest.Config{AccessTokenTTL: time.Hour, Scopes: []string{"read"}},
		"    authorization_url: AUTH_URL\n    token_url: TOKEN_URL\n    grant_types: [authorization_code, refresh_token, client_credentials]\n    pkce: false\n")
	res, err := f.startLink(func(l *signing.Link) { l.Grant = provider.GrantClientCredentials })
	if err != nil || res.Binding != nil {
		t.Fatalf("connect: %+v %v", res, err)
	}
	loc, _ := url.Parse(res.Location)
	cb, err := f.finish(res, loc.Query())
	if err != nil || cb.Connection == nil || !strings.HasPrefix(cb.Location, returnTo+"?") {
		t.Fatalf("callback: %+v %v", cb, err)
	}
	if sum := f.sweepAt(t, 56*time.Minute); sum.Refreshed != 1 {
		t.Fatalf("sweep %+v", sum)
	}
	reqs := f.prov.Requests()
	if last := reqs[len(reqs)-1]; last.Params.Get("grant_type") != provider.GrantClientCredentials {
		t.Fatalf("renewed with %q", last.Params.Get("grant_type"))
	}
	// The default stays authorization_code, with a cookie.
	res, err = f.startLink(func(*signing.Link) {})
	if err != nil || res.Binding == nil {
		t.Fatalf("default grant: %+v %v", res, err)
	}
}

func TestConnectRejectsGrantAndParams(t *testing.T) {
	entry := "    authorization_url: AUTH_URL?tenant={tenant}\n    token_url: TOKEN_URL\n    grant_types: [authorization_code]\n" +
		"    token_headers: {X-Tenant: '{tenant}'}\n    connection_params: {tenant: {pattern: '[a-z]{2,10}'}}\n"
	f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, entry)
	tests := []struct {
		name string
		edit func(*signing.Link)
	}{
		{"grant not offered", func(l *signing.Link) {
			l.Grant = provider.GrantClientCredentials
			l.Params = map[string]string{"tenant": "acme"}
		}},
		{"unknown grant", func(l *signing.Link) { l.Grant = "password"; l.Params = map[string]string{"tenant": "acme"} }},
		{"code flow without return_to", func(l *signing.Link) { l.ReturnTo = ""; l.Params = map[string]string{"tenant": "acme"} }},
		{"missing required parameter", func(*signing.Link) {}},
		{"parameter off pattern", func(l *signing.Link) { l.Params = map[string]string{"tenant": "a"} }},
		{"undeclared parameter", func(l *signing.Link) { l.Params = map[string]string{"tenant": "acme", "host": "evil"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.startLink(tt.edit)
			var be *broker.Error
			if !errors.As(err, &be) || be.Kind != broker.KindForbidden {
				t.Fatalf("err = %v, want forbidden", err)
			}
		})
	}

	// A valid parameter is templated into the authorization URL and the
	// token request's header, and kept on the connection for refreshes.
	res, err := f.startLink(func(l *signing.Link) { l.Params = map[string]string{"tenant": "acme"} })
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := url.Parse(res.Location); u.Query().Get("tenant") != "acme" {
		t.Fatalf("authorization URL %s", res.Location)
	}
	back := f.prov.Authorize(t, res.Location)
	cb, err := f.finish(res, back.Query())
	if err != nil || cb.Connection == nil || f.get(t, "c1").Params["tenant"] != "acme" {
		t.Fatalf("callback %+v %v", cb, err)
	}
	reqs := f.prov.Requests()
	if h := reqs[len(reqs)-1].Header.Get("X-Tenant"); h != "acme" {
		t.Fatalf("token request X-Tenant = %q", h)
	}
}

// S3, S2: a code-flow callback without its cookie, or with an empty one,
// is refused before any token request; the state survives for the
// browser that holds the cookie.
func TestCallbackWithoutItsCookie(t *testing.T) {
	for _, tt := range []struct {
		name    string
		binding func(res broker.ConnectResult) func(flow string) (string, bool)
	}{
		{"missing cookie", func(broker.ConnectResult) func(string) (string, bool) {
			return func(string) (string, bool) { return "", false }
		}},
		{"empty cookie", func(res broker.ConnectResult) func(string) (string, bool) {
			return func(flow string) (string, bool) { return "", flow == res.Binding.Flow }
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, codeEntry)
			res, back := f.consent(t)
			_, err := f.Broker.Callback(context.Background(), broker.CallbackRequest{Provider: "acme", Query: back, Binding: tt.binding(res)})
			var be *broker.Error
			if !errors.As(err, &be) || be.Kind != broker.KindForbidden || f.prov.TokenRequests() != 0 {
				t.Fatalf("%s: %v, %d token requests", tt.name, err, f.prov.TokenRequests())
			}
			if cb, err := f.finish(res, back); err != nil || cb.Connection == nil {
				t.Fatalf("with cookie: %v", err)
			}
		})
	}
}

// A client_credentials connect never replaces a customer's authorization
// under the same connection id (nor the reverse): the app gets
// connection_conflict and the stored connection is untouched.
func TestGrantChangeRefused(t *testing.T) {
	f := newFixture(t, providertest.Config{AccessTokenTTL: time.Hour, Scopes: []string{"read"}},
		"    authorization_url: AUTH_URL\n    token_url: TOKEN_URL\n    grant_types: [authorization_code, refresh_token, client_credentials]\n    pkce: false\n")
	c := f.connect(t, "c1")
	res, err := f.startLink(func(l *signing.Link) { l.Grant = provider.GrantClientCredentials })
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := url.Parse(res.Location)
	_, err = f.finish(res, loc.Query())
	var be *broker.Error
	if !errors.As(err, &be) || be.Code != broker.CodeConnectionConflict || be.Kind != broker.KindConflict || !strings.Contains(be.ReturnURL, "error=connection_conflict") {
		t.Fatalf("err = %v", err)
	}
	if got := f.get(t, "c1"); got.AccessToken != c.AccessToken || got.Grant != provider.GrantAuthorizationCode || got.Version != c.Version {
		t.Fatalf("connection changed: %+v", got)
	}
}

// Errors of a client_credentials connect without a return address are
// told to the program, with a kind that says whose fault it is.
func TestClientCredentialsJSONErrors(t *testing.T) {
	f := newFixture(t, providertest.Config{AccessTokenTTL: 300 * time.Second, ClientAuth: "body"},
		"    token_url: TOKEN_URL\n    grant_types: [client_credentials]\n    client_auth: body\n")
	tests := []struct {
		name  string
		fail  int
		extra url.Values
		want  broker.Kind
		code  broker.Code
	}{
		{"provider down", http.StatusServiceUnavailable, nil, broker.KindProviderUnavailable, broker.CodeProviderUnavailable},
		{"provider refuses", http.StatusUnauthorized, nil, broker.KindProviderRefused, broker.CodeProviderError},
		{"error parameter added", 0, url.Values{"error": {"access_denied"}}, broker.KindAuthorizationFailed, broker.CodeAccessDenied},
		{"code parameter added", 0, url.Values{"code": {"x"}}, broker.KindMalformed, broker.CodeProviderError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fail != 0 {
				f.prov.FailNext(1, tt.fail, "application/json", `{"error":"invalid_client"}`, nil)
			}
			res, err := f.startLink(func(l *signing.Link) { l.ReturnTo = "" })
			if err != nil {
				t.Fatal(err)
			}
			loc, _ := url.Parse(res.Location)
			q := loc.Query()
			for k, v := range tt.extra {
				q[k] = v
			}
			_, err = f.finish(res, q)
			var be *broker.Error
			if !errors.As(err, &be) || !be.Program || be.Kind != tt.want || be.Code != tt.code || be.ReturnURL != "" {
				t.Fatalf("err = %+v", be)
			}
		})
	}
}

// A connection whose parameters no longer fit the catalog (an operator's
// change) keeps its tokens and is retried, not sent to needs_reauth.
func TestRefreshWithStaleParamsKeepsConnection(t *testing.T) {
	entry := "    authorization_url: AUTH_URL\n    token_url: TOKEN_URL\n    grant_types: [authorization_code, refresh_token]\n" +
		"    token_headers: {X-Tenant: '{tenant}'}\n    connection_params: {tenant: {pattern: '[a-z]{2,10}'}}\n"
	f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, entry)
	res, err := f.startLink(func(l *signing.Link) { l.Params = map[string]string{"tenant": "acme"} })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.finish(res, f.prov.Authorize(t, res.Location).Query()); err != nil {
		t.Fatal(err)
	}
	c := f.get(t, "c1")
	c.Params = map[string]string{"tenant": "x"} // no longer matches
	if c, err = f.Store.SaveConnection(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if sum := f.sweepAt(t, 56*time.Minute); sum.Failed != 1 {
		t.Fatalf("sweep %+v", sum)
	}
	got := f.get(t, "c1")
	if got.Status != store.StatusConnected || got.AccessToken != c.AccessToken || got.RefreshToken != c.RefreshToken || got.NextRefresh.IsZero() || got.FailureCount != 1 || got.FailureClass != string(broker.ClassCatalog) {
		t.Fatalf("after stale params: %+v", got)
	}
}
