package seedproviders_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/seedproviders"
)

const (
	clientID     = "123abc-456def-789ghi"
	clientSecret = "1234567890"
	redirectURI  = "https://broker.example/callback/seed"
	otherURI     = "https://broker.example/callback/other"
)

var client = seedproviders.Client{ID: clientID, Secret: clientSecret, RedirectURI: redirectURI}

const (
	formType = "application/x-www-form-urlencoded"
	jsonType = "application/json"
)

// send makes one request; contentType "" sends none.
var send = providertest.Send

// basic is curl -u id:secret.
func basic(id, secret string, more ...string) http.Header {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(id, secret)
	h := http.Header{"Authorization": {req.Header.Get("Authorization")}}
	for i := 0; i+1 < len(more); i += 2 {
		h.Set(more[i], more[i+1])
	}
	return h
}

func wantOK(t *testing.T, r providertest.Reply) {
	t.Helper()
	if r.Status != 200 || r.Str("access_token") == "" {
		t.Fatalf("got %s, want 200 with an access_token", r)
	}
}

func wantError(t *testing.T, r providertest.Reply, status int, code string) {
	t.Helper()
	if r.Status != status || r.Str("error") != code {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
}

// refusal is a request that the provider's documents rule out, made with a
// fresh code, and the error the server must answer it with.
type refusal struct {
	name   string
	do     func(t *testing.T, s *providertest.Server, code string) providertest.Reply
	status int
	want   string
}

// wantRefused runs each case on its own server from start, with a code
// obtained through authorizeURL.
func wantRefused(t *testing.T, start func(*testing.T) *providertest.Server, authorizeURL func(*providertest.Server) string, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t)
			wantError(t, tc.do(t, s, code(t, s, authorizeURL(s))), tc.status, tc.want)
		})
	}
}

// authorize sends the browser to authorizeURL and returns the callback's
// query, checking it goes to the registered redirect URI.
func authorize(t *testing.T, s *providertest.Server, authorizeURL string) url.Values {
	t.Helper()
	loc := s.Authorize(t, authorizeURL)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirectURI {
		t.Fatalf("redirected to %s", loc)
	}
	return loc.Query()
}

// code authorizes and returns the code.
func code(t *testing.T, s *providertest.Server, authorizeURL string) string {
	t.Helper()
	q := authorize(t, s, authorizeURL)
	if q.Get("code") == "" || q.Get("error") != "" {
		t.Fatalf("callback %v", q)
	}
	return q.Get("code")
}

func esc(s string) string { return url.QueryEscape(s) }

// jsonObject encodes string members in the given order.
func jsonObject(kv ...string) string {
	var b strings.Builder
	b.WriteString("{\n")
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := json.Marshal(kv[i])
		v, _ := json.Marshal(kv[i+1])
		fmt.Fprintf(&b, "%s: %s", k, v)
		if i+2 < len(kv) {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("}")
	return b.String()
}

// wantCreatedAt checks a created_at integer between from and now.
func wantCreatedAt(t *testing.T, r providertest.Reply, from time.Time) {
	t.Helper()
	v, ok := r.Body["created_at"].(float64)
	if !ok || v != float64(int64(v)) || int64(v) < from.Unix() || int64(v) > time.Now().Unix() {
		t.Fatalf("created_at %v: %s", r.Body["created_at"], r)
	}
}

func TestMount(t *testing.T) {
	for _, tc := range []struct{ server, real, want string }{
		{"http://127.0.0.1:5000", "https://app.omnisend.com/oauth2/authorize", "http://127.0.0.1:5000/app.omnisend.com/oauth2/authorize"},
		{"http://127.0.0.1:5000/", "https://app.omnisend.com/oauth2/token", "http://127.0.0.1:5000/app.omnisend.com/oauth2/token"},
		{"http://127.0.0.1:5000", "https://app.getresponse.com/oauth2_authorize.html?response_type=code&client_id=_your_client_id_&state=xyz",
			"http://127.0.0.1:5000/app.getresponse.com/oauth2_authorize.html?response_type=code&client_id=_your_client_id_&state=xyz"},
		{"http://127.0.0.1:5000", "https://api3.getresponse360.pl/v3/token", "http://127.0.0.1:5000/api3.getresponse360.pl/v3/token"},
		{"http://127.0.0.1:5000", "https://auth.freespee.com", "http://127.0.0.1:5000/auth.freespee.com"},
		{"http://127.0.0.1:5000", "https://h.example:8443/a%20b/c?x=1%202", "http://127.0.0.1:5000/h.example:8443/a%20b/c?x=1%202"},
	} {
		if got := seedproviders.Mount(tc.server, tc.real); got != tc.want {
			t.Errorf("Mount(%q, %q) = %q, want %q", tc.server, tc.real, got, tc.want)
		}
	}
	for _, bad := range []string{"/oauth/token", "app.omnisend.com/oauth2/token", "mailto:a@b.example", "https://%zz/"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Mount(_, %q) did not panic", bad)
				}
			}()
			seedproviders.Mount("http://127.0.0.1:5000", bad)
		}()
	}
}

// Every server serves the real URLs where Mount puts them, and nothing at
// providertest's default paths. (That Mount of the catalog's own URLs
// reaches each server is TestEmbeddedEntries.)
func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		name             string
		s                *providertest.Server
		authorize, token string // real URLs; authorize "" when there is none
	}{
		{"omnisend", seedproviders.Omnisend(t, client, nil), seedproviders.OmnisendAuthorizeURL, seedproviders.OmnisendTokenURL},
		{"outstand", seedproviders.Outstand(t, client), seedproviders.OutstandAuthorizeURL, seedproviders.OutstandTokenURL},
		{"verticalresponse", seedproviders.VerticalResponse(t, client), seedproviders.VerticalResponseAuthorizeURL, seedproviders.VerticalResponseTokenURL},
		{"kaisa", seedproviders.Kaisa(t, client), "", seedproviders.KaisaTokenURL},
		{"getresponse", seedproviders.GetResponse(t, client), seedproviders.GetResponseAuthorizeURL, seedproviders.GetResponseTokenURL},
		{"getresponse360 com", seedproviders.GetResponse360(t, client, "mail.example.com", "com"),
			seedproviders.GetResponse360AuthorizeURL("mail.example.com"), seedproviders.GetResponse360TokenURL("com")},
		{"getresponse360 pl", seedproviders.GetResponse360(t, client, "news.example.pl", "pl"),
			seedproviders.GetResponse360AuthorizeURL("news.example.pl"), seedproviders.GetResponse360TokenURL("pl")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.TokenURL(); got != seedproviders.Mount(tc.s.URL, tc.token) {
				t.Errorf("TokenURL %q", got)
			}
			if tc.authorize != "" {
				if got := tc.s.AuthorizeURL(); got != seedproviders.Mount(tc.s.URL, tc.authorize) {
					t.Errorf("AuthorizeURL %q", got)
				}
			}
			for _, p := range []string{"/authorize", "/token"} {
				if r := send(t, "GET", tc.s.URL+p, "", "", nil); r.Status != 404 {
					t.Errorf("GET %s: %s", p, r)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Omnisend (omnisend-oauth.txt)

func TestOmnisend(t *testing.T) {
	scopes := []string{"contacts", "events"}
	// "GET https://app.omnisend.com/oauth2/authorize?client_id=YOUR_CLIENT_ID
	//  &redirect_uri=REDIRECT_URI &response_type=code
	//  &state=RANDOMLY_GENERATED_VALUE &scope=RESOURCEX%20RESOURCEY"
	authorizeURL := func(s *providertest.Server) string {
		return seedproviders.Mount(s.URL, seedproviders.OmnisendAuthorizeURL) + "?client_id=" + esc(clientID) +
			"&redirect_uri=" + esc(redirectURI) + "&response_type=code&state=adxcsasdcqws&scope=contacts%20events"
	}
	tokenURL := func(s *providertest.Server) string { return seedproviders.Mount(s.URL, seedproviders.OmnisendTokenURL) }
	// "POST https://app.omnisend.com/oauth2/token
	//  Content-Type: application/x-www-form-urlencoded
	//  client_id=YOUR_CLIENT_ID &client_secret=YOUR_CLIENT_SECRET
	//  &grant_type=authorization_code &code=AUTH_CODE &redirect_uri=REDIRECT_URI"
	exchange := func(code, redirect string) string {
		return "client_id=" + esc(clientID) + "&client_secret=" + esc(clientSecret) +
			"&grant_type=authorization_code&code=" + esc(code) + "&redirect_uri=" + esc(redirect)
	}

	t.Run("documented flow", func(t *testing.T) {
		s := seedproviders.Omnisend(t, client, scopes)
		// "http://localhost:6000/?code=6O-KEB2KNCWKT7YVFYTF9G&state=adxcsasdcqws"
		q := authorize(t, s, authorizeURL(s))
		if q.Get("state") != "adxcsasdcqws" || q.Get("code") == "" {
			t.Fatalf("callback %v", q)
		}
		r := send(t, "POST", tokenURL(s), formType, exchange(q.Get("code"), redirectURI), nil)
		wantOK(t, r)
		// {"access_token": "...", "expires_in": 9223372036, "refresh_token": "...",
		//  "scope": "RESOURCEX RESOURCEY", "token_type": "Bearer"}
		if r.Body["expires_in"] != float64(9223372036) || !strings.Contains(string(r.Raw), `"expires_in":9223372036`) ||
			r.Str("refresh_token") == "" || r.Str("scope") != "contacts events" || r.Str("token_type") != "Bearer" {
			t.Fatalf("token response %s", r)
		}
		if !s.Valid(r.Str("access_token")) {
			t.Fatal("access token not valid")
		}
	})

	// The table's "scopes" is not what the example sends: a client that
	// follows the table gets an unscoped grant.
	t.Run("table's scopes parameter is not the scope parameter", func(t *testing.T) {
		s := seedproviders.Omnisend(t, client, scopes)
		u := strings.Replace(authorizeURL(s), "&scope=", "&scopes=", 1)
		r := send(t, "POST", tokenURL(s), formType, exchange(code(t, s, u), redirectURI), nil)
		wantOK(t, r)
		if _, has := r.Body["scope"]; has {
			t.Fatalf("scope granted from scopes: %s", r)
		}
	})

	t.Run("unknown scope", func(t *testing.T) {
		s := seedproviders.Omnisend(t, client, scopes)
		q := authorize(t, s, strings.Replace(authorizeURL(s), "contacts%20events", "contacts%20orders", 1))
		if q.Get("error") != "invalid_scope" {
			t.Fatalf("callback %v", q)
		}
	})

	wantRefused(t, func(t *testing.T) *providertest.Server { return seedproviders.Omnisend(t, client, scopes) }, authorizeURL, []refusal{
		{"token request as GET", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			return send(t, "GET", tokenURL(s)+"?"+exchange(code, redirectURI), "", "", nil)
		}, 405, "invalid_request"},
		{"JSON body", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			body := jsonObject("client_id", clientID, "client_secret", clientSecret, "grant_type", "authorization_code", "code", code, "redirect_uri", redirectURI)
			return send(t, "POST", tokenURL(s), jsonType, body, nil)
		}, 400, "invalid_request"},
		{"no Content-Type", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			return send(t, "POST", tokenURL(s), "", exchange(code, redirectURI), nil)
		}, 400, "invalid_request"},
		{"secret in HTTP Basic instead of the body", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			body := "client_id=" + esc(clientID) + "&grant_type=authorization_code&code=" + esc(code) + "&redirect_uri=" + esc(redirectURI)
			return send(t, "POST", tokenURL(s), formType, body, basic(clientID, clientSecret))
		}, 400, "invalid_request"},
		{"wrong secret", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			return send(t, "POST", tokenURL(s), formType, strings.Replace(exchange(code, redirectURI), clientSecret, "nope", 1), nil)
		}, 401, "invalid_client"},
		{"mismatched redirect_uri", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			// "redirect_uri | Same redirect URI used in the step 2"
			return send(t, "POST", tokenURL(s), formType, exchange(code, otherURI), nil)
		}, 400, "invalid_grant"},
		{"reused code", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			wantOK(t, send(t, "POST", tokenURL(s), formType, exchange(code, redirectURI), nil))
			return send(t, "POST", tokenURL(s), formType, exchange(code, redirectURI), nil)
		}, 400, "invalid_grant"},
		{"refresh grant is not documented", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			rt := send(t, "POST", tokenURL(s), formType, exchange(code, redirectURI), nil).Str("refresh_token")
			body := "client_id=" + esc(clientID) + "&client_secret=" + esc(clientSecret) + "&grant_type=refresh_token&refresh_token=" + esc(rt)
			return send(t, "POST", tokenURL(s), formType, body, nil)
		}, 400, "unsupported_grant_type"},
		{"client_credentials is not documented", func(t *testing.T, s *providertest.Server, _ string) providertest.Reply {
			body := "client_id=" + esc(clientID) + "&client_secret=" + esc(clientSecret) + "&grant_type=client_credentials"
			return send(t, "POST", tokenURL(s), formType, body, nil)
		}, 400, "unsupported_grant_type"},
	})
}

// ---------------------------------------------------------------------------
// Outstand (outstand-api-docs.txt)

func TestOutstand(t *testing.T) {
	// "https://app.outstand.com/oauth/authorize?client_id=[client_id]&redirect_uri=[redirect_uri]&response_type=code"
	// plus the state every broker request carries.
	authorizeURL := func(s *providertest.Server) string {
		return seedproviders.Mount(s.URL, seedproviders.OutstandAuthorizeURL) + "?client_id=" + esc(clientID) +
			"&redirect_uri=" + esc(redirectURI) + "&response_type=code&state=st-1"
	}
	tokenURL := func(s *providertest.Server) string { return seedproviders.Mount(s.URL, seedproviders.OutstandTokenURL) }
	// {"client_id": [client_id], "client_secret": [client_secret], "code": [authorization code],
	//  "grant_type": "authorization_code", "redirect_uri": "https://example.com/auth/outstand/callback"}
	exchange := func(code, redirect string) string {
		return jsonObject("client_id", clientID, "client_secret", clientSecret, "code", code, "grant_type", "authorization_code", "redirect_uri", redirect)
	}
	// {"client_id": [client_id], "client_secret": [client_secret],
	//  "refresh_token": [refresh token], "grant_type": "refresh_token"}
	refresh := func(rt string) string {
		return jsonObject("client_id", clientID, "client_secret", clientSecret, "refresh_token", rt, "grant_type", "refresh_token")
	}
	info := func(s *providertest.Server, at string) providertest.Reply {
		// "Try making an authorized request to https://app.outstand.com/oauth/token/info"
		// with "Authorization: Bearer ACCESS_TOKEN".
		return send(t, "GET", seedproviders.Mount(s.URL, seedproviders.OutstandTokenInfoURL), "", "", http.Header{"Authorization": {"Bearer " + at}})
	}

	t.Run("documented flow", func(t *testing.T) {
		s := seedproviders.Outstand(t, client)
		start := time.Now()
		r := send(t, "POST", tokenURL(s), jsonType, exchange(code(t, s, authorizeURL(s)), redirectURI), nil)
		wantOK(t, r)
		// {"access_token": "...", "token_type": "bearer", "expires_in": 7200,
		//  "refresh_token": "...", "created_at": 1447820578}
		if r.Str("token_type") != "bearer" || r.Body["expires_in"] != float64(7200) || r.Str("refresh_token") == "" {
			t.Fatalf("token response %s", r)
		}
		wantCreatedAt(t, r, start)
		if ir := info(s, r.Str("access_token")); ir.Status != 200 {
			t.Fatalf("token info: %s", ir)
		}
		// "You'll receive a 200 OK with a new access_token and refresh_token"
		r2 := send(t, "POST", tokenURL(s), jsonType, refresh(r.Str("refresh_token")), nil)
		wantOK(t, r2)
		if r2.Str("access_token") == r.Str("access_token") || r2.Str("refresh_token") == "" || r2.Str("refresh_token") == r.Str("refresh_token") ||
			r2.Str("token_type") != "bearer" || r2.Body["expires_in"] != float64(7200) {
			t.Fatalf("refresh response %s", r2)
		}
		wantCreatedAt(t, r2, start)
		if s.ValidRefresh(r.Str("refresh_token")) || !s.ValidRefresh(r2.Str("refresh_token")) {
			t.Fatal("refresh token not rotated")
		}
		if ir := info(s, r2.Str("access_token")); ir.Status != 200 {
			t.Fatalf("token info: %s", ir)
		}
		if ir := info(s, "made-up"); ir.Status != 401 {
			t.Fatalf("token info with an unknown token: %s", ir)
		}
	})

	wantRefused(t, func(t *testing.T) *providertest.Server { return seedproviders.Outstand(t, client) }, authorizeURL, []refusal{
		{"token request as GET", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			q := url.Values{"client_id": {clientID}, "client_secret": {clientSecret}, "code": {code}, "grant_type": {"authorization_code"}, "redirect_uri": {redirectURI}}
			return send(t, "GET", tokenURL(s)+"?"+q.Encode(), "", "", nil)
		}, 405, "invalid_request"},
		{"form body instead of JSON", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			q := url.Values{"client_id": {clientID}, "client_secret": {clientSecret}, "code": {code}, "grant_type": {"authorization_code"}, "redirect_uri": {redirectURI}}
			return send(t, "POST", tokenURL(s), formType, q.Encode(), nil)
		}, 400, "invalid_request"},
		{"JSON without Content-Type", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			return send(t, "POST", tokenURL(s), "", exchange(code, redirectURI), nil)
		}, 400, "invalid_request"},
		{"secret in HTTP Basic instead of the body", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			body := jsonObject("client_id", clientID, "code", code, "grant_type", "authorization_code", "redirect_uri", redirectURI)
			return send(t, "POST", tokenURL(s), jsonType, body, basic(clientID, clientSecret))
		}, 400, "invalid_request"},
		{"mismatched redirect_uri", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			return send(t, "POST", tokenURL(s), jsonType, exchange(code, otherURI), nil)
		}, 400, "invalid_grant"},
		{"reused code", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			wantOK(t, send(t, "POST", tokenURL(s), jsonType, exchange(code, redirectURI), nil))
			return send(t, "POST", tokenURL(s), jsonType, exchange(code, redirectURI), nil)
		}, 400, "invalid_grant"},
		{"unknown refresh token", func(t *testing.T, s *providertest.Server, _ string) providertest.Reply {
			return send(t, "POST", tokenURL(s), jsonType, refresh("made-up"), nil)
		}, 400, "invalid_grant"},
		{"old refresh token after rotation", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			rt1 := send(t, "POST", tokenURL(s), jsonType, exchange(code, redirectURI), nil).Str("refresh_token")
			r2 := send(t, "POST", tokenURL(s), jsonType, refresh(rt1), nil)
			wantOK(t, r2)
			r := send(t, "POST", tokenURL(s), jsonType, refresh(rt1), nil)
			// The replay also ends the grant (RFC 9700 §4.14.2).
			if s.ValidRefresh(r2.Str("refresh_token")) || s.Valid(r2.Str("access_token")) {
				t.Error("grant still valid after a refresh token replay")
			}
			return r
		}, 400, "invalid_grant"},
		{"client_credentials is not documented", func(t *testing.T, s *providertest.Server, _ string) providertest.Reply {
			return send(t, "POST", tokenURL(s), jsonType, jsonObject("client_id", clientID, "client_secret", clientSecret, "grant_type", "client_credentials"), nil)
		}, 400, "unsupported_grant_type"},
	})

	// "Our API has a default rate limit of 300 requests per 5 minute window.
	//  You'll receive a 429 Too Many Requests response if you send more
	//  requests than you're allotted. ... the Retry-After header included in
	//  all 429 responses."
	t.Run("rate limit", func(t *testing.T) {
		s := seedproviders.Outstand(t, client)
		first := send(t, "POST", tokenURL(s), jsonType, exchange(code(t, s, authorizeURL(s)), redirectURI), nil)
		wantOK(t, first)
		rt := first.Str("refresh_token")
		for i := 2; i <= 300; i++ {
			if r := send(t, "POST", tokenURL(s), jsonType, refresh("made-up"), nil); r.Status != 400 {
				t.Fatalf("request %d: %s", i, r)
			}
		}
		r := send(t, "POST", tokenURL(s), jsonType, refresh(rt), nil)
		if r.Status != 429 || r.Body == nil {
			t.Fatalf("request 301: %s", r)
		}
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 300 {
			t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
		}
		// The refused refresh changed nothing: its token was not rotated out.
		if !s.ValidRefresh(rt) || s.TokenRequests() != 301 {
			t.Fatalf("after 429: refresh token valid %v, %d token requests", s.ValidRefresh(rt), s.TokenRequests())
		}
	})
}

// ---------------------------------------------------------------------------
// VerticalResponse (verticalresponse-oauth.txt)

func TestVerticalResponse(t *testing.T) {
	// "https://vrapi.verticalresponse.com/api/v1/oauth/authorize?client_id=<app id>&redirect_uri=<redirect_uri>"
	// plus response_type=code and state, which the broker always sends.
	authorizeURL := func(s *providertest.Server) string {
		return seedproviders.Mount(s.URL, seedproviders.VerticalResponseAuthorizeURL) + "?client_id=" + esc(clientID) +
			"&redirect_uri=" + esc(redirectURI) + "&response_type=code&state=st-1"
	}
	// "performing a GET request to https://vrapi.verticalresponse.com/api/v1/oauth/access_token,
	//  passing in the client ID, client secret, and the redirect URI with the authorization code"
	tokenURL := func(s *providertest.Server, code, redirect, extra string) string {
		return seedproviders.Mount(s.URL, seedproviders.VerticalResponseTokenURL) + "?client_id=" + esc(clientID) +
			"&client_secret=" + esc(clientSecret) + "&redirect_uri=" + esc(redirect) + "&code=" + esc(code) + extra
	}

	for _, tc := range []struct{ name, extra string }{
		{"documented flow without grant_type", ""},
		{"with grant_type=authorization_code", "&grant_type=authorization_code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := seedproviders.VerticalResponse(t, client)
			r := send(t, "GET", tokenURL(s, code(t, s, authorizeURL(s)), redirectURI, tc.extra), "", "", nil)
			wantOK(t, r)
			// "containing the access token type and the access token itself. In
			//  addition the response also includes the VR userid"; "Currently
			//  access tokens do not expire."
			_, hasExpiry := r.Body["expires_in"]
			_, hasRefresh := r.Body["refresh_token"]
			if r.Str("token_type") != "bearer" || r.Body["user_id"] != float64(seedproviders.VerticalResponseUserID) || hasExpiry || hasRefresh {
				t.Fatalf("token response %s", r)
			}
		})
	}

	t.Run("authorization without state", func(t *testing.T) {
		s := seedproviders.VerticalResponse(t, client)
		q := authorize(t, s, strings.Replace(authorizeURL(s), "&state=st-1", "", 1))
		if q.Get("error") != "invalid_request" || q.Has("code") {
			t.Fatalf("callback %v", q)
		}
	})

	wantRefused(t, func(t *testing.T) *providertest.Server { return seedproviders.VerticalResponse(t, client) }, authorizeURL, []refusal{
		{"token request as a form POST", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			u, _ := url.Parse(tokenURL(s, code, redirectURI, ""))
			body := u.RawQuery
			u.RawQuery = ""
			return send(t, "POST", u.String(), formType, body, nil)
		}, 405, "invalid_request"},
		{"GET with a form body", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			u, _ := url.Parse(tokenURL(s, code, redirectURI, ""))
			body := u.RawQuery
			u.RawQuery = ""
			return send(t, "GET", u.String(), formType, body, nil)
		}, 400, "invalid_request"},
		{"secret in HTTP Basic instead of the query", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			u := strings.Replace(tokenURL(s, code, redirectURI, ""), "&client_secret="+esc(clientSecret), "", 1)
			return send(t, "GET", u, "", "", basic(clientID, clientSecret))
		}, 400, "invalid_request"},
		{"wrong secret", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			return send(t, "GET", strings.Replace(tokenURL(s, code, redirectURI, ""), clientSecret, "nope", 1), "", "", nil)
		}, 401, "invalid_client"},
		// "The redirect_uri value used in the auth code and the access token
		//  call should be the same. If not the access token call will result
		//  in an invalid token result."
		{"mismatched redirect_uri", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			return send(t, "GET", tokenURL(s, code, otherURI, ""), "", "", nil)
		}, 400, "invalid_grant"},
		{"missing redirect_uri", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			return send(t, "GET", strings.Replace(tokenURL(s, code, redirectURI, ""), "&redirect_uri="+esc(redirectURI), "", 1), "", "", nil)
		}, 400, "invalid_grant"},
		{"reused code", func(t *testing.T, s *providertest.Server, code string) providertest.Reply {
			wantOK(t, send(t, "GET", tokenURL(s, code, redirectURI, ""), "", "", nil))
			return send(t, "GET", tokenURL(s, code, redirectURI, ""), "", "", nil)
		}, 400, "invalid_grant"},
		{"refresh grant is not documented", func(t *testing.T, s *providertest.Server, _ string) providertest.Reply {
			u := seedproviders.Mount(s.URL, seedproviders.VerticalResponseTokenURL) + "?client_id=" + esc(clientID) +
				"&client_secret=" + esc(clientSecret) + "&grant_type=refresh_token&refresh_token=made-up"
			return send(t, "GET", u, "", "", nil)
		}, 400, "unsupported_grant_type"},
		{"client_credentials is not documented", func(t *testing.T, s *providertest.Server, _ string) providertest.Reply {
			u := seedproviders.Mount(s.URL, seedproviders.VerticalResponseTokenURL) + "?client_id=" + esc(clientID) +
				"&client_secret=" + esc(clientSecret) + "&grant_type=client_credentials"
			return send(t, "GET", u, "", "", nil)
		}, 400, "unsupported_grant_type"},
	})
}

// ---------------------------------------------------------------------------
// Kaisa / Freespee (kaisa-freespee-oauth.txt)

func TestKaisa(t *testing.T) {
	tokenURL := func(s *providertest.Server) string { return seedproviders.Mount(s.URL, seedproviders.KaisaTokenURL) }
	for _, tc := range []struct {
		name, contentType, body string
	}{
		// curl -X POST https://auth.freespee.com/oauth2/token -H "Content-Type: application/json"
		//  -d '{"grant_type": "client_credentials", "client_id": "123abc-456def-789ghi", "client_secret": "1234567890"}'
		{"documented JSON", jsonType, jsonObject("grant_type", "client_credentials", "client_id", clientID, "client_secret", clientSecret)},
		// curl -X POST https://auth.freespee.com/oauth2/token -d "grant_type=client_credentials"
		//  -d "client_id=123abc456def789ghi" -d "client_secret=1234567890"   (curl -d sends a form)
		{"documented form", formType, "grant_type=client_credentials&client_id=" + esc(clientID) + "&client_secret=" + esc(clientSecret)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := seedproviders.Kaisa(t, client)
			r := send(t, "POST", tokenURL(s), tc.contentType, tc.body, nil)
			wantOK(t, r)
			// "The token will expire in 5 minutes (300 seconds)."
			if _, hasRefresh := r.Body["refresh_token"]; r.Body["expires_in"] != float64(300) || hasRefresh {
				t.Fatalf("token response %s", r)
			}
			// "add it as a Authorization header in your request ... with a bearer token"
			if res := send(t, "GET", s.ResourceURL(), "", "", http.Header{"Authorization": {"Bearer " + r.Str("access_token")}}); res.Status != 200 {
				t.Fatalf("resource: %s", res)
			}
		})
	}

	cc := "grant_type=client_credentials&client_id=" + esc(clientID) + "&client_secret=" + esc(clientSecret)
	for _, tc := range []struct {
		name             string
		method, ct, body string
		header           http.Header
		status           int
		want             string
	}{
		{"GET", "GET", "", "", nil, 405, "invalid_request"},
		{"text/plain", "POST", "text/plain", cc, nil, 400, "invalid_request"},
		{"no Content-Type", "POST", "", cc, nil, 400, "invalid_request"},
		{"secret in HTTP Basic instead of the body", "POST", formType, "grant_type=client_credentials&client_id=" + esc(clientID), basic(clientID, clientSecret), 400, "invalid_request"},
		{"wrong secret", "POST", jsonType, jsonObject("grant_type", "client_credentials", "client_id", clientID, "client_secret", "nope"), nil, 401, "invalid_client"},
		{"no grant_type", "POST", jsonType, jsonObject("client_id", clientID, "client_secret", clientSecret), nil, 400, "invalid_request"},
		{"authorization_code is not documented", "POST", formType, "grant_type=authorization_code&code=x&client_id=" + esc(clientID) + "&client_secret=" + esc(clientSecret), nil, 400, "unsupported_grant_type"},
		{"refresh_token is not documented", "POST", jsonType, jsonObject("grant_type", "refresh_token", "refresh_token", "x", "client_id", clientID, "client_secret", clientSecret), nil, 400, "unsupported_grant_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := seedproviders.Kaisa(t, client)
			u := tokenURL(s)
			if tc.method == "GET" {
				u += "?" + cc
			}
			wantError(t, send(t, tc.method, u, tc.ct, tc.body, tc.header), tc.status, tc.want)
		})
	}

	t.Run("no authorization endpoint", func(t *testing.T) {
		s := seedproviders.Kaisa(t, seedproviders.Client{ID: clientID, Secret: clientSecret})
		u := s.AuthorizeURL() + "?response_type=code&client_id=" + esc(clientID) + "&state=x"
		if r := send(t, "GET", u, "", "", nil); r.Status != 404 {
			t.Fatalf("authorize: %s", r)
		}
	})
}

// ---------------------------------------------------------------------------
// GetResponse and GetResponse 360 (getresponse-oauth.txt)

type grEndpoints struct {
	authorize, token string
	header           http.Header // extra token request headers
}

func getResponseCases() map[string]func(t *testing.T) (*providertest.Server, grEndpoints) {
	return map[string]func(t *testing.T) (*providertest.Server, grEndpoints){
		"getresponse": func(t *testing.T) (*providertest.Server, grEndpoints) {
			s := seedproviders.GetResponse(t, client)
			return s, grEndpoints{seedproviders.Mount(s.URL, seedproviders.GetResponseAuthorizeURL), seedproviders.Mount(s.URL, seedproviders.GetResponseTokenURL), nil}
		},
		"getresponse360 com": func(t *testing.T) (*providertest.Server, grEndpoints) {
			s := seedproviders.GetResponse360(t, client, "mail.example.com", "com")
			return s, grEndpoints{
				seedproviders.Mount(s.URL, "https://mail.example.com/oauth2_authorize.html"),
				seedproviders.Mount(s.URL, "https://api3.getresponse360.com/v3/token"),
				http.Header{"X-Domain": {"mail.example.com"}},
			}
		},
		"getresponse360 pl": func(t *testing.T) (*providertest.Server, grEndpoints) {
			s := seedproviders.GetResponse360(t, client, "news.example.pl", "pl")
			return s, grEndpoints{
				seedproviders.Mount(s.URL, "https://news.example.pl/oauth2_authorize.html"),
				seedproviders.Mount(s.URL, "https://api3.getresponse360.pl/v3/token"),
				http.Header{"X-Domain": {"news.example.pl"}},
			}
		},
	}
}

// with returns h plus the header pairs kv.
func with(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

func TestGetResponse(t *testing.T) {
	// "https://app.getresponse.com/oauth2_authorize.html?response_type=code&client_id=_your_client_id_&state=xyz"
	docAuthorize := func(e grEndpoints) string {
		return e.authorize + "?response_type=code&client_id=" + esc(clientID) + "&state=xyz"
	}
	// "curl -u client_id:client_secret https://api.getresponse.com/v3/token"
	auth := func(e grEndpoints) http.Header {
		h := with(e.header)
		for k, v := range basic(clientID, clientSecret) {
			h[k] = v
		}
		return h
	}

	for name, setup := range getResponseCases() {
		t.Run(name, func(t *testing.T) {
			t.Run("documented flow", func(t *testing.T) {
				s, e := setup(t)
				// "https://myredirecturi.com/cb?code=ed17c4...&state=xyz"
				q := authorize(t, s, docAuthorize(e))
				if q.Get("state") != "xyz" || q.Get("code") == "" {
					t.Fatalf("callback %v", q)
				}
				// "-d 'grant_type=authorization_code&code=ed17c4...'"
				r := send(t, "POST", e.token, formType, "grant_type=authorization_code&code="+esc(q.Get("code")), auth(e))
				wantOK(t, r)
				// {"access_token":"...", "expires_in":3600, "token_type":"bearer",
				//  "scope":null, "refresh_token": "170d9f..."}
				if v, has := r.Body["scope"]; !has || v != nil || r.Body["expires_in"] != float64(3600) ||
					!strings.EqualFold(r.Str("token_type"), "bearer") || r.Str("refresh_token") == "" {
					t.Fatalf("token response %s", r)
				}
				// "-d 'grant_type=refresh_token&refresh_token=170d9f..." answers
				// "refresh_token": "170d9f..." — the same token.
				rt := r.Str("refresh_token")
				for i := range 2 {
					r2 := send(t, "POST", e.token, formType, "grant_type=refresh_token&refresh_token="+esc(rt), auth(e))
					wantOK(t, r2)
					if r2.Str("refresh_token") != rt || r2.Str("access_token") == r.Str("access_token") || !strings.Contains(string(r2.Raw), `"scope":null`) {
						t.Fatalf("refresh %d: %s", i, r2)
					}
				}
				// "curl -u client_id:client_secret https://api.getresponse.com/v3/token -d 'grant_type=client_credentials'"
				r3 := send(t, "POST", e.token, formType, "grant_type=client_credentials", auth(e))
				wantOK(t, r3)
				if _, hasRefresh := r3.Body["refresh_token"]; hasRefresh || !strings.Contains(string(r3.Raw), `"scope":null`) {
					t.Fatalf("client_credentials: %s", r3)
				}
			})

			t.Run("redirect_uri sent in both requests", func(t *testing.T) {
				s, e := setup(t)
				c := code(t, s, docAuthorize(e)+"&redirect_uri="+esc(redirectURI))
				wantOK(t, send(t, "POST", e.token, formType, "grant_type=authorization_code&code="+esc(c)+"&redirect_uri="+esc(redirectURI), auth(e)))
			})

			t.Run("implicit flow refused", func(t *testing.T) {
				// "?response_type=token&client_id=_your_client_id_&redirect_uri=https://myredirecturi.com/cb&state=xyz"
				s, e := setup(t)
				q := authorize(t, s, e.authorize+"?response_type=token&client_id="+esc(clientID)+"&redirect_uri="+esc(redirectURI)+"&state=xyz")
				if q.Get("error") != "unsupported_response_type" || q.Has("access_token") || q.Has("code") {
					t.Fatalf("callback %v", q)
				}
			})

			t.Run("unregistered redirect_uri", func(t *testing.T) {
				_, e := setup(t)
				if r := send(t, "GET", docAuthorize(e)+"&redirect_uri="+esc(otherURI), "", "", nil); r.Status != 400 {
					t.Fatalf("authorize: %s", r)
				}
			})

			for _, tc := range []struct {
				name   string
				do     func(t *testing.T, s *providertest.Server, e grEndpoints, code string) providertest.Reply
				status int
				want   string
			}{
				{"token request as GET", func(t *testing.T, s *providertest.Server, e grEndpoints, code string) providertest.Reply {
					return send(t, "GET", e.token+"?grant_type=authorization_code&code="+esc(code), "", "", auth(e))
				}, 405, "invalid_request"},
				{"JSON body", func(t *testing.T, s *providertest.Server, e grEndpoints, code string) providertest.Reply {
					return send(t, "POST", e.token, jsonType, jsonObject("grant_type", "authorization_code", "code", code), auth(e))
				}, 400, "invalid_request"},
				{"secret in the body instead of HTTP Basic", func(t *testing.T, s *providertest.Server, e grEndpoints, code string) providertest.Reply {
					body := "grant_type=authorization_code&code=" + esc(code) + "&client_id=" + esc(clientID) + "&client_secret=" + esc(clientSecret)
					return send(t, "POST", e.token, formType, body, e.header)
				}, 400, "invalid_request"},
				{"no client authentication", func(t *testing.T, s *providertest.Server, e grEndpoints, code string) providertest.Reply {
					return send(t, "POST", e.token, formType, "grant_type=authorization_code&code="+esc(code)+"&client_id="+esc(clientID), e.header)
				}, 401, "invalid_client"},
				{"wrong secret", func(t *testing.T, s *providertest.Server, e grEndpoints, code string) providertest.Reply {
					h := with(e.header)
					h["Authorization"] = basic(clientID, "nope")["Authorization"]
					return send(t, "POST", e.token, formType, "grant_type=authorization_code&code="+esc(code), h)
				}, 401, "invalid_client"},
				{"redirect_uri other than the registered one", func(t *testing.T, s *providertest.Server, e grEndpoints, code string) providertest.Reply {
					return send(t, "POST", e.token, formType, "grant_type=authorization_code&code="+esc(code)+"&redirect_uri="+esc(otherURI), auth(e))
				}, 400, "invalid_grant"},
				{"redirect_uri sent at authorization, omitted at token", func(t *testing.T, s *providertest.Server, e grEndpoints, _ string) providertest.Reply {
					c := code(t, s, docAuthorize(e)+"&redirect_uri="+esc(redirectURI))
					return send(t, "POST", e.token, formType, "grant_type=authorization_code&code="+esc(c), auth(e))
				}, 400, "invalid_grant"},
				{"reused code", func(t *testing.T, s *providertest.Server, e grEndpoints, code string) providertest.Reply {
					wantOK(t, send(t, "POST", e.token, formType, "grant_type=authorization_code&code="+esc(code), auth(e)))
					return send(t, "POST", e.token, formType, "grant_type=authorization_code&code="+esc(code), auth(e))
				}, 400, "invalid_grant"},
				{"unknown refresh token", func(t *testing.T, s *providertest.Server, e grEndpoints, _ string) providertest.Reply {
					return send(t, "POST", e.token, formType, "grant_type=refresh_token&refresh_token=170d9f64e781aaa6b3ba036083faba71b2fc4e6c", auth(e))
				}, 400, "invalid_grant"},
				{"password grant is not documented", func(t *testing.T, s *providertest.Server, e grEndpoints, _ string) providertest.Reply {
					return send(t, "POST", e.token, formType, "grant_type=password&username=u&password=p", auth(e))
				}, 400, "unsupported_grant_type"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					s, e := setup(t)
					wantError(t, tc.do(t, s, e, code(t, s, docAuthorize(e))), tc.status, tc.want)
				})
			}
		})
	}
}

func TestGetResponse360(t *testing.T) {
	s := seedproviders.GetResponse360(t, client, "mail.example.com", "com")
	tokenURL := seedproviders.Mount(s.URL, seedproviders.GetResponse360TokenURL("com"))
	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
		status int
		want   string // error code; "" for success
	}{
		{"X-Domain", tokenURL, basic(clientID, clientSecret, "X-Domain", "mail.example.com"), 200, ""},
		{"missing X-Domain", tokenURL, basic(clientID, clientSecret), 400, "invalid_request"},
		{"other domain", tokenURL, basic(clientID, clientSecret, "X-Domain", "other.example.com"), 400, "invalid_request"},
		{"other region", seedproviders.Mount(s.URL, seedproviders.GetResponse360TokenURL("pl")), basic(clientID, clientSecret, "X-Domain", "mail.example.com"), 404, ""},
		{"GetResponse's own token URL", seedproviders.Mount(s.URL, seedproviders.GetResponseTokenURL), basic(clientID, clientSecret, "X-Domain", "mail.example.com"), 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, "POST", tc.url, formType, "grant_type=client_credentials", tc.header)
			switch {
			case tc.status == 200:
				wantOK(t, r)
			case tc.want == "":
				if r.Status != tc.status {
					t.Fatalf("got %s, want %d", r, tc.status)
				}
			default:
				wantError(t, r, tc.status, tc.want)
			}
		})
	}
	t.Run("authorization endpoint is the customer's domain", func(t *testing.T) {
		for _, u := range []string{seedproviders.GetResponseAuthorizeURL, "https://other.example.com/oauth2_authorize.html"} {
			if r := send(t, "GET", seedproviders.Mount(s.URL, u)+"?response_type=code&client_id="+esc(clientID)+"&state=xyz", "", "", nil); r.Status != 404 {
				t.Errorf("%s: %s", u, r)
			}
		}
	})
	t.Run("bad domain or region", func(t *testing.T) {
		for _, tc := range []struct{ domain, region string }{
			{"mail.example.com", "de"},
			{"mail.example.com", ""},
			{"", "com"},
			{"mail.example.com/x", "com"},
			{"{domain}", "com"},
			{"MAIL.example.com", "com"},
		} {
			if msgs := failures.Of(t, func(tb testing.TB) { seedproviders.GetResponse360(tb, client, tc.domain, tc.region) }); len(msgs) == 0 {
				t.Errorf("GetResponse360(%q, %q) accepted", tc.domain, tc.region)
			}
		}
	})
}
