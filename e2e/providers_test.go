package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/seedproviders"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// The seed providers of the embedded catalog, end to end through the
// built functions. Each test server behaves as the provider's public
// documentation says (see internal/testsupport/seedproviders; the quoted
// facts are in docs/providers.md), and each catalog entry is the embedded
// one with only its hosts moved onto the test server: "https://HOST/PATH"
// becomes "<server>/HOST/PATH". Every other field — encodings, client auth,
// scope parameter, expiry rules,
// templates — is exactly what ships.

const (
	gr360Domain = "mail.acme-shop.com"
	// A client secret with characters a GET query must escape, so that the
	// log check also looks for its escaped form.
	vrSecret = "vr-secret/Q+7&x=1"
)

// seedEntry returns the embedded catalog entry for name as YAML under
// "providers:", with every URL moved onto srvURL.
func seedEntry(t *testing.T, name, srvURL string) string {
	t.Helper()
	cat, err := provider.Load("")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := cat.Get(name)
	if !ok {
		t.Fatalf("%s not in the embedded catalog", name)
	}
	cp := *p
	for _, u := range []*string{&cp.AuthorizationURL, &cp.TokenURL} {
		if *u != "" {
			if !strings.HasPrefix(*u, "https://") {
				t.Fatalf("%s: %s is not https", name, *u)
			}
			*u = srvURL + "/" + strings.TrimPrefix(*u, "https://")
		}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]any{"providers": map[string]*provider.Provider{name: &cp}}); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(b.String(), "providers:\n")
}

func newSeedStack(t *testing.T) *stack {
	return newStackWith(t, func(redirect func(string) string) []extraProvider {
		client := func(name, secret string) seedproviders.Client {
			return seedproviders.Client{ID: name + "-client-id", Secret: secret, RedirectURI: redirect(name)}
		}
		servers := map[string]struct {
			secret string
			srv    *providertest.Server
		}{}
		add := func(name, secret string, srv func(seedproviders.Client) *providertest.Server) {
			servers[name] = struct {
				secret string
				srv    *providertest.Server
			}{secret, srv(client(name, secret))}
		}
		add("omnisend", "omnisend-secret-Jd93", func(c seedproviders.Client) *providertest.Server {
			return seedproviders.Omnisend(t, c, []string{"contacts", "events"})
		})
		add("outstand", "outstand-secret-Kx20", func(c seedproviders.Client) *providertest.Server { return seedproviders.Outstand(t, c) })
		add("verticalresponse", vrSecret, func(c seedproviders.Client) *providertest.Server { return seedproviders.VerticalResponse(t, c) })
		add("kaisa", "kaisa-secret-Lq55", func(c seedproviders.Client) *providertest.Server { return seedproviders.Kaisa(t, c) })
		add("getresponse", "getresponse-secret-Vb61", func(c seedproviders.Client) *providertest.Server { return seedproviders.GetResponse(t, c) })
		add("getresponse360", "gr360-secret-Hn07", func(c seedproviders.Client) *providertest.Server {
			return seedproviders.GetResponse360(t, c, gr360Domain, "pl")
		})
		var out []extraProvider
		for name, s := range servers {
			out = append(out, extraProvider{name: name, entry: seedEntry(t, name, s.srv.URL), id: name + "-client-id", secret: s.secret, srv: s.srv})
		}
		return out
	})
}

func (s *stack) server(name string) *providertest.Server {
	for _, e := range s.extra {
		if e.name == name {
			return e.srv
		}
	}
	s.T.Fatalf("no provider %s in the stack", name)
	return nil
}

// browserFlow runs connect → the provider's consent → callback for l in
// one browser, checks that it ended at the app with l's connection, and
// returns the authorization URL.
func (s *stack) browserFlow(l signing.Link) (authURL *url.URL) {
	s.T.Helper()
	st := s.Start(l)
	back := s.Consent(st.AuthURL)
	cb := s.Deliver(l.Provider, back.RawQuery, st.Cookie)
	if cb.StatusCode != http.StatusFound {
		s.T.Fatalf("callback %s: %d %s", l.Provider, cb.StatusCode, cb.Body)
	}
	s.AssertConnected(cb.Headers, l.ConnectionID)
	return st.AuthURL
}

// dueNow moves a connection's refresh time into the past, as if the clock
// had advanced to it.
func (s *stack) dueNow(provider, id string) {
	s.T.Helper()
	c := s.ConnOf(provider, id)
	c.NextRefresh = time.Now().Add(-time.Minute)
	if _, err := s.store.SaveConnection(context.Background(), c); err != nil {
		s.T.Fatal(err)
	}
}

// tokenRequests returns the requests srv's token endpoint received.
func tokenRequests(srv *providertest.Server, path string) []providertest.Recorded {
	var out []providertest.Recorded
	for _, r := range srv.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func last[T any](xs []T) T { return xs[len(xs)-1] }

func TestSeedProviders(t *testing.T) {
	s := newSeedStack(t)

	t.Run("omnisend", func(t *testing.T) {
		s.Within(t)
		srv := s.server("omnisend")
		authURL := s.browserFlow(signing.Link{Provider: "omnisend", ConnectionID: "om-1", ReturnTo: returnTo, Scopes: []string{"contacts", "events"}})
		// "GET https://app.omnisend.com/oauth2/authorize?client_id=...&redirect_uri=...&response_type=code&state=...&scope=RESOURCEX%20RESOURCEY":
		// the table names the parameter "scopes", the example sends "scope"; the example is followed.
		q := authURL.Query()
		if authURL.Path != "/app.omnisend.com/oauth2/authorize" || q.Get("scope") != "contacts events" || q.Has("scopes") ||
			q.Get("response_type") != "code" || q.Get("client_id") != "omnisend-client-id" || q.Get("redirect_uri") != baseURL+"/callback/omnisend" || q.Has("code_challenge") {
			t.Fatalf("authorization URL %s", authURL)
		}
		// "POST https://app.omnisend.com/oauth2/token Content-Type: application/x-www-form-urlencoded client_id=...&client_secret=..."
		tr := last(tokenRequests(srv, "/app.omnisend.com/oauth2/token"))
		if tr.Method != http.MethodPost || tr.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || tr.Header.Get("Authorization") != "" ||
			tr.Params.Get("client_secret") != "omnisend-secret-Jd93" || tr.Params.Get("redirect_uri") != baseURL+"/callback/omnisend" || tr.Status != 200 {
			t.Fatalf("token request %v %v", tr, tr.Header)
		}
		// "expires_in": 9223372036 and "it will never expire": no expiry,
		// never scheduled, refresh token kept.
		c := s.ConnOf("omnisend", "om-1")
		if !c.ExpiresAt.IsZero() || !c.NextRefresh.IsZero() || c.RefreshToken == "" || !srv.Valid(c.AccessToken) || c.Scope != "contacts events" {
			t.Fatalf("connection %+v", redact(c))
		}
		if sum := s.runRefresh(); sum["due"] != 0 {
			t.Fatalf("never-expiring token scheduled: %v", sum)
		}
		// Refresh is not documented, so after a 401 the app's forced
		// refresh cannot renew: 409 reauth_required, no provider call, the
		// connection needs_reauth with a fixed cause and never scheduled.
		before := len(tokenRequests(srv, "/app.omnisend.com/oauth2/token"))
		wantError(t, s.tokenCall(http.MethodGet, "omnisend", "om-1", "force_refresh=true"), http.StatusConflict, "reauth_required")
		got := s.ConnOf("omnisend", "om-1")
		if got.Status != store.StatusNeedsReauth || got.FailureClass != string(broker.ClassCannotRenew) || !got.NextRefresh.IsZero() ||
			len(tokenRequests(srv, "/app.omnisend.com/oauth2/token")) != before {
			t.Errorf("forced refresh of Omnisend: status %s class %q due %v, %d provider calls",
				got.Status, got.FailureClass, got.NextRefresh, len(tokenRequests(srv, "/app.omnisend.com/oauth2/token"))-before)
		}
		if sum := s.runRefresh(); sum["due"] != 0 {
			t.Fatalf("Omnisend connection scheduled after the forced refresh: %v", sum)
		}
	})

	t.Run("outstand", func(t *testing.T) {
		s.Within(t)
		srv := s.server("outstand")
		const tokenPath = "/app.outstand.com/oauth/token"
		before := time.Now().Add(-time.Second)
		authURL := s.browserFlow(signing.Link{Provider: "outstand", ConnectionID: "os-1", ReturnTo: returnTo})
		if authURL.Path != "/app.outstand.com/oauth/authorize" || authURL.Query().Get("response_type") != "code" {
			t.Fatalf("authorization URL %s", authURL)
		}
		// "POST https://app.outstand.com/oauth/token with a body of: {client_id, client_secret, code, grant_type, redirect_uri}"
		tr := last(tokenRequests(srv, tokenPath))
		var body map[string]string
		if err := json.Unmarshal(tr.Body, &body); err != nil || tr.Header.Get("Content-Type") != "application/json" ||
			body["client_secret"] != "outstand-secret-Kx20" || body["grant_type"] != "authorization_code" || body["redirect_uri"] != baseURL+"/callback/outstand" || body["code"] == "" {
			t.Fatalf("token request %s (%v)", tr.Body, err)
		}
		// "expires_in": 7200 with "created_at": expiry counts from created_at.
		c := s.ConnOf("outstand", "os-1")
		if c.ExpiresAt.Before(before.Add(7200*time.Second).Truncate(time.Second)) || c.ExpiresAt.After(time.Now().Add(7200*time.Second)) ||
			!dueWithinMargin(c, provider.DefaultRefreshMargin) {
			t.Fatalf("expiry %v due %v", c.ExpiresAt, c.NextRefresh)
		}

		// "You'll receive a 200 OK with a new access_token and refresh_token":
		// the new refresh token replaces the old, which stops working.
		s.dueNow("outstand", "os-1")
		if sum := s.runRefresh(); sum["refreshed"] != 1 {
			t.Fatalf("sweep %v", sum)
		}
		c2 := s.ConnOf("outstand", "os-1")
		if c2.RefreshToken == c.RefreshToken || srv.ValidRefresh(c.RefreshToken) || !srv.ValidRefresh(c2.RefreshToken) || !srv.Valid(c2.AccessToken) {
			t.Fatalf("rotation not kept: %+v", redact(c2))
		}
		if err := json.Unmarshal(last(tokenRequests(srv, tokenPath)).Body, &body); err != nil || body["grant_type"] != "refresh_token" || body["refresh_token"] != c.RefreshToken {
			t.Fatalf("refresh request %v", body)
		}

		// "You'll receive a 429 Too Many Requests ... rely on the Retry-After header":
		// the connection is not marked broken and is retried after that time.
		s.dueNow("outstand", "os-1")
		c3 := s.ConnOf("outstand", "os-1")
		srv.FailNext(1, http.StatusTooManyRequests, "application/json", `{"error":"rate limited"}`, http.Header{"Retry-After": {"240"}})
		start := time.Now()
		if sum := s.runRefresh(); sum["failed"] != 1 {
			t.Fatalf("sweep during 429: %v", sum)
		}
		c4 := s.ConnOf("outstand", "os-1")
		if c4.Status != store.StatusConnected || c4.FailureCount != 1 || c4.AccessToken != c3.AccessToken || c4.RefreshToken != c3.RefreshToken ||
			c4.NextRefresh.Before(start.Add(239*time.Second)) || c4.NextRefresh.After(time.Now().Add(241*time.Second)) {
			t.Fatalf("after 429: status %s failures %d due in %v", c4.Status, c4.FailureCount, time.Until(c4.NextRefresh))
		}
		if sum := s.runRefresh(); sum["due"] != 0 {
			t.Fatalf("retried before Retry-After: %v", sum)
		}
		// The warm instance keeps the whole provider paused for Retry-After,
		// even for a connection that is due: it defers without a request.
		s.dueNow("outstand", "os-1")
		sent := len(tokenRequests(srv, tokenPath))
		if sum := s.runRefresh(); sum["deferred"] != 1 || len(tokenRequests(srv, tokenPath)) != sent {
			t.Fatalf("sweep while the provider is paused: %v", sum)
		}
		// Once that time has passed (here: a new instance, as Lambda starts
		// after an idle period), the connection is retried and recovers.
		s.newRefreshInstance()
		if sum := s.runRefresh(); sum["refreshed"] != 1 {
			t.Fatalf("retry after Retry-After: %v", sum)
		}
		if c5 := s.ConnOf("outstand", "os-1"); c5.FailureCount != 0 || c5.LastError != "" || !srv.Valid(c5.AccessToken) {
			t.Fatalf("after recovery %+v", redact(c5))
		}
	})

	t.Run("verticalresponse", func(t *testing.T) {
		s.Within(t)
		srv := s.server("verticalresponse")
		const tokenPath = "/vrapi.verticalresponse.com/api/v1/oauth/access_token"
		authURL := s.browserFlow(signing.Link{Provider: "verticalresponse", ConnectionID: "vr-1", ReturnTo: returnTo})
		if authURL.Path != "/vrapi.verticalresponse.com/api/v1/oauth/authorize" || authURL.Query().Get("client_id") != "verticalresponse-client-id" ||
			authURL.Query().Get("redirect_uri") != baseURL+"/callback/verticalresponse" {
			t.Fatalf("authorization URL %s", authURL)
		}
		// "performing a GET request to .../oauth/access_token, passing in the client ID, client secret, and the redirect URI with the authorization code"
		tr := last(tokenRequests(srv, tokenPath))
		if tr.Method != http.MethodGet || len(tr.Body) != 0 || tr.Query.Get("client_secret") != vrSecret || tr.Query.Get("code") == "" ||
			tr.Query.Get("redirect_uri") != authURL.Query().Get("redirect_uri") || tr.Status != 200 {
			t.Fatalf("token request %v %v", tr, tr.Query)
		}
		// "the response also includes the VR userid"; "Currently access tokens do not expire".
		c := s.ConnOf("verticalresponse", "vr-1")
		if c.Metadata["user_id"] == "" || !c.ExpiresAt.IsZero() || !c.NextRefresh.IsZero() || c.RefreshToken != "" || !srv.Valid(c.AccessToken) {
			t.Fatalf("connection %+v", redact(c))
		}
		if sum := s.runRefresh(); sum["due"] != 0 {
			t.Fatalf("non-expiring token scheduled: %v", sum)
		}
		// The app's backend reads the token; after a 401 it forces a
		// refresh, which VerticalResponse cannot do: the connection needs
		// the customer again, and the provider is not called.
		if b := decodeToken(t, s.tokenCall(http.MethodGet, "verticalresponse", "vr-1", "")); b.AccessToken != c.AccessToken || b.ExpiresAt != "" || b.Metadata["user_id"] != c.Metadata["user_id"] {
			t.Errorf("VerticalResponse token answer does not match the connection")
		}
		before := len(tokenRequests(srv, tokenPath))
		wantError(t, s.tokenCall(http.MethodGet, "verticalresponse", "vr-1", "force_refresh=true"), http.StatusConflict, "reauth_required")
		if got := s.ConnOf("verticalresponse", "vr-1"); got.Status != store.StatusNeedsReauth || len(tokenRequests(srv, tokenPath)) != before {
			t.Errorf("forced refresh of VerticalResponse: status %s, %d provider calls", got.Status, len(tokenRequests(srv, tokenPath))-before)
		}

		// The GET carries the secret in its URL: a provider that hangs past
		// the callback's deadline yields an error redirect, and no log line
		// holds the URL (the stack's log check looks for the secret, raw
		// and escaped, when the test ends).
		srv.Delay(10 * time.Second)
		defer srv.Delay(0)
		st := s.Start(signing.Link{Provider: "verticalresponse", ConnectionID: "vr-2", ReturnTo: returnTo})
		back := s.Consent(st.AuthURL)
		cb := s.DeliverTo(via(s.slowCB), "verticalresponse", back.RawQuery, st.Cookie)
		loc, _ := url.Parse(cb.Headers["Location"])
		if cb.StatusCode != http.StatusFound || loc.Query().Get("error") != "provider_unavailable" {
			t.Fatalf("slow provider: %d %s", cb.StatusCode, cb.Headers["Location"])
		}
		for _, fn := range []string{s.slowCB.Logs(), s.callback.Logs()} {
			if strings.Contains(fn, "access_token?") || strings.Contains(fn, "client_secret") {
				t.Fatal("a function logged the token URL")
			}
		}
	})

	t.Run("kaisa", func(t *testing.T) {
		s.Within(t)
		srv := s.server("kaisa")
		const tokenPath = "/auth.freespee.com/oauth2/token"
		// No consent step and no return address: authorize sends the caller
		// to the callback (no binding cookie: only the link's), which
		// mints, stores and answers 201.
		resp := s.Connect("kaisa", s.Sign(signing.Link{Provider: "kaisa", ConnectionID: "ks-1"}))
		if resp.StatusCode != http.StatusFound || len(resp.Cookies) != 1 || !strings.HasPrefix(resp.Cookies[0], httpapi.LinkCookiePrefix) ||
			!strings.HasPrefix(resp.Headers["Location"], baseURL+"/callback/kaisa?state=") {
			t.Fatalf("authorize: %d %v %v", resp.StatusCode, resp.Cookies, resp.Headers)
		}
		next, _ := url.Parse(resp.Headers["Location"])
		s.remember(next.Query().Get("state"))
		start := time.Now()
		cb := s.Deliver("kaisa", next.RawQuery)
		var info map[string]string
		if cb.StatusCode != http.StatusCreated || json.Unmarshal([]byte(cb.Body), &info) != nil ||
			info["connection_id"] != "ks-1" || info["status"] != "connected" || info["provider"] != "kaisa" || info["expires_at"] == "" {
			t.Fatalf("callback: %d %s", cb.StatusCode, cb.Body)
		}
		c := s.ConnOf("kaisa", "ks-1")
		if strings.Contains(cb.Body, c.AccessToken) || cb.Headers["Cache-Control"] != "no-store" {
			t.Fatal("201 answer carries the token or is cacheable")
		}
		// "grant_type (sent as "client_credentials"), client_id, client_secret ... (for JSON)"
		var body map[string]string
		tr := last(tokenRequests(srv, tokenPath))
		if err := json.Unmarshal(tr.Body, &body); err != nil || tr.Header.Get("Content-Type") != "application/json" || body["grant_type"] != "client_credentials" ||
			body["client_id"] != "kaisa-client-id" || body["client_secret"] != "kaisa-secret-Lq55" {
			t.Fatalf("token request %s", tr.Body)
		}
		// "The token will expire in 5 minutes (300 seconds)": re-minted
		// before that by the schedule.
		if c.ExpiresAt.Before(start.Add(299*time.Second).Truncate(time.Second)) || c.ExpiresAt.After(time.Now().Add(301*time.Second)) ||
			!dueWithinMargin(c, 120*time.Second) || c.RefreshToken != "" || c.Grant != provider.GrantClientCredentials {
			t.Fatalf("connection expires %v due %v grant %q", c.ExpiresAt, c.NextRefresh, c.Grant)
		}
		if replay := s.Deliver("kaisa", next.RawQuery); replay.StatusCode != http.StatusForbidden {
			t.Fatalf("replayed client_credentials state: %d", replay.StatusCode)
		}
		s.dueNow("kaisa", "ks-1")
		if sum := s.runRefresh(); sum["refreshed"] != 1 {
			t.Fatalf("sweep %v", sum)
		}
		if c2 := s.ConnOf("kaisa", "ks-1"); c2.AccessToken == c.AccessToken || !srv.Valid(c2.AccessToken) || c2.NextRefresh.Before(time.Now()) {
			t.Fatalf("not re-minted: %+v", redact(c2))
		}
		// With a return address the caller is sent there instead.
		resp = s.Connect("kaisa", s.Sign(signing.Link{Provider: "kaisa", ConnectionID: "ks-2", ReturnTo: returnTo}))
		next, _ = url.Parse(resp.Headers["Location"])
		s.remember(next.Query().Get("state"))
		s.AssertConnected(s.Deliver("kaisa", next.RawQuery).Headers, "ks-2")
	})

	t.Run("getresponse", func(t *testing.T) {
		s.Within(t)
		srv := s.server("getresponse")
		const tokenPath = "/api.getresponse.com/v3/token"
		authURL := s.browserFlow(signing.Link{Provider: "getresponse", ConnectionID: "gr-1", ReturnTo: returnTo})
		// "https://app.getresponse.com/oauth2_authorize.html?response_type=code&client_id=_your_client_id_&state=xyz"
		q := authURL.Query()
		if authURL.Path != "/app.getresponse.com/oauth2_authorize.html" || q.Get("response_type") != "code" || q.Get("client_id") != "getresponse-client-id" || q.Get("state") == "" {
			t.Fatalf("authorization URL %s", authURL)
		}
		// "curl -u client_id:client_secret https://api.getresponse.com/v3/token -d 'grant_type=authorization_code&code=...'"
		tr := last(tokenRequests(srv, tokenPath))
		user, pass, ok := (&http.Request{Header: tr.Header}).BasicAuth()
		if !ok || user != "getresponse-client-id" || pass != "getresponse-secret-Vb61" || tr.Params.Has("client_secret") ||
			tr.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || tr.Params.Get("grant_type") != "authorization_code" {
			t.Fatalf("token request %v", tr)
		}
		// "scope": null is "not stated"; "expires_in": 3600.
		c := s.ConnOf("getresponse", "gr-1")
		if c.Scope != "" || c.ExpiresAt.IsZero() || c.RefreshToken == "" {
			t.Fatalf("connection %+v", redact(c))
		}
		// "to issue a new pair of access_token and refresh_token": the
		// refresh answer repeats the refresh token, which is kept.
		s.dueNow("getresponse", "gr-1")
		if sum := s.runRefresh(); sum["refreshed"] != 1 {
			t.Fatalf("sweep %v", sum)
		}
		c2 := s.ConnOf("getresponse", "gr-1")
		if c2.AccessToken == c.AccessToken || !srv.Valid(c2.AccessToken) || !srv.ValidRefresh(c2.RefreshToken) {
			t.Fatalf("after refresh %+v", redact(c2))
		}
		if tr := last(tokenRequests(srv, tokenPath)); tr.Params.Get("grant_type") != "refresh_token" || tr.Header.Get("Authorization") == "" {
			t.Fatalf("refresh request %v", tr)
		}
		// "curl -u client_id:client_secret https://api.getresponse.com/v3/token -d 'grant_type=client_credentials'":
		// the app's own account, chosen in the link.
		resp := s.Connect("getresponse", s.Sign(signing.Link{Provider: "getresponse", ConnectionID: "gr-own", Grant: provider.GrantClientCredentials}))
		next, _ := url.Parse(resp.Headers["Location"])
		s.remember(next.Query().Get("state"))
		if cb := s.Deliver("getresponse", next.RawQuery); cb.StatusCode != http.StatusCreated {
			t.Fatalf("client_credentials connect: %d %s", cb.StatusCode, cb.Body)
		}
		if own := s.ConnOf("getresponse", "gr-own"); own.Grant != provider.GrantClientCredentials || !srv.Valid(own.AccessToken) {
			t.Fatalf("own-account connection %+v", redact(own))
		}
		// The implicit grant GetResponse also documents is not offered.
		if link := s.Sign(signing.Link{Provider: "getresponse", ConnectionID: "gr-x", ReturnTo: returnTo, Grant: "implicit"}); s.Connect("getresponse", link).StatusCode != http.StatusForbidden {
			t.Fatal("implicit grant accepted")
		}
	})

	t.Run("getresponse360", func(t *testing.T) {
		s.Within(t)
		srv := s.server("getresponse360")
		const tokenPath = "/api3.getresponse360.pl/v3/token"
		link := signing.Link{Provider: "getresponse360", ConnectionID: "g3-1", ReturnTo: returnTo,
			Params: map[string]string{"domain": gr360Domain, "region": "pl"}}
		authURL := s.browserFlow(link)
		if authURL.Path != "/"+gr360Domain+"/oauth2_authorize.html" {
			t.Fatalf("authorization URL %s", authURL)
		}
		tr := last(tokenRequests(srv, tokenPath))
		if tr.Header.Get("X-Domain") != gr360Domain || tr.Status != 200 {
			t.Fatalf("token request %v X-Domain %q", tr, tr.Header.Get("X-Domain"))
		}
		c := s.ConnOf("getresponse360", "g3-1")
		if c.Params["domain"] != gr360Domain || c.Params["region"] != "pl" {
			t.Fatalf("params %v", c.Params)
		}
		s.dueNow("getresponse360", "g3-1")
		if sum := s.runRefresh(); sum["refreshed"] != 1 {
			t.Fatalf("sweep %v", sum)
		}
		if tr := last(tokenRequests(srv, tokenPath)); tr.Params.Get("grant_type") != "refresh_token" || tr.Header.Get("X-Domain") != gr360Domain {
			t.Fatalf("refresh request %v", tr)
		}
		// A value that could move a request to another host never gets a
		// signature (the link refuses it) nor past the catalog's pattern.
		for _, params := range []map[string]string{
			{"domain": "127.0.0.1", "region": "pl"},
			{"domain": gr360Domain, "region": "evil"},
			{"region": "pl"},
		} {
			l := link
			l.ConnectionID, l.Params = "g3-bad", params
			if resp := s.Connect("getresponse360", s.Sign(l)); resp.StatusCode != http.StatusForbidden {
				t.Errorf("params %v: %d", params, resp.StatusCode)
			}
		}
		if _, err := signing.SignLink(s.Keys, signing.Link{Provider: "getresponse360", ConnectionID: "x", ReturnTo: returnTo, Expires: time.Now().Add(time.Hour),
			Params: map[string]string{"domain": "evil.example/@x"}}); err == nil {
			t.Error("signed a parameter that changes URL structure")
		}
	})
}
