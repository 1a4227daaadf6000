package provider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
)

var (
	creds = secrets.ClientCredentials{ClientID: "id-1", ClientSecret: "s3cr3t+/&"}
	t0    = time.Unix(1_800_000_000, 0)
)

func testProvider(t *testing.T, tokenURL string, auth ClientAuth, enc TokenRequest) *Endpoint {
	t.Helper()
	doc := "providers:\n  acme:\n    authorization_url: https://acme.example/a\n    token_url: " + tokenURL +
		"\n    grant_types: [authorization_code, refresh_token]\n    client_auth: " + string(auth) +
		"\n    token_request: " + string(enc) + "\n    token_params: {audience: api}\n    metadata_fields: [user_id]\n"
	c, err := Parse("test", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Get("acme")
	return endpoint(t, p)
}

// endpoint resolves an entry without connection parameters.
func endpoint(t *testing.T, p *Provider) *Endpoint {
	t.Helper()
	e, err := p.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func client() *Client { return &Client{HTTP: NewHTTPClient(), Now: func() time.Time { return t0 }} }

// TestExchangeWire asserts the exact token request for every encoding and
// client-auth placement the catalog can describe.
func TestExchangeWire(t *testing.T) {
	tests := []struct {
		auth   ClientAuth
		enc    TokenRequest
		method string
		ctype  string
	}{
		{ClientAuthBasic, TokenRequestForm, "POST", "application/x-www-form-urlencoded"},
		{ClientAuthBody, TokenRequestForm, "POST", "application/x-www-form-urlencoded"},
		{ClientAuthBasic, TokenRequestJSON, "POST", "application/json"},
		{ClientAuthBody, TokenRequestJSON, "POST", "application/json"},
		{ClientAuthBody, TokenRequestQuery, "GET", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.auth)+"/"+string(tt.enc), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != tt.method || r.Header.Get("Content-Type") != tt.ctype {
					t.Errorf("method %s content type %q", r.Method, r.Header.Get("Content-Type"))
				}
				if r.Header.Get("User-Agent") != UserAgent || r.Header.Get("Accept") != "application/json" {
					t.Errorf("headers %v", r.Header)
				}
				params := readParams(t, r)
				want := map[string]string{"grant_type": "authorization_code", "code": "the-code", "redirect_uri": "https://b.example/callback/acme", "code_verifier": "ver", "audience": "api"}
				user, pass, basic := r.BasicAuth()
				if tt.auth == ClientAuthBasic {
					// RFC 6749 §2.3.1: form-encoded before Basic.
					if !basic || user != "id-1" || pass != url.QueryEscape(creds.ClientSecret) {
						t.Errorf("basic auth = %q %q %v", user, pass, basic)
					}
				} else {
					if basic {
						t.Error("Authorization header sent with client_auth body")
					}
					want["client_id"], want["client_secret"] = "id-1", creds.ClientSecret
				}
				if len(params) != len(want) {
					t.Errorf("params %v, want %v", keys(params), want)
				}
				for k, v := range want {
					if params[k] != v {
						t.Errorf("%s = %q, want %q", k, params[k], v)
					}
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"access_token":"at","token_type":"bearer","expires_in":3600,"refresh_token":"rt","scope":"read","user_id":42}`)
			}))
			defer srv.Close()
			tok, err := client().Exchange(context.Background(), testProvider(t, srv.URL+"/token", tt.auth, tt.enc), creds, "the-code", "https://b.example/callback/acme", "ver")
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "at" || tok.RefreshToken != "rt" || tok.TokenType != "Bearer" || tok.Scope != "read" ||
				!tok.ExpiresAt.Equal(t0.Add(time.Hour)) || tok.Metadata["user_id"] != "42" {
				t.Fatalf("token %+v", tok)
			}
		})
	}
}

func readParams(t *testing.T, r *http.Request) map[string]string {
	out := map[string]string{}
	switch r.Header.Get("Content-Type") {
	case "application/json":
		if err := json.NewDecoder(r.Body).Decode(&out); err != nil {
			t.Errorf("body is not a JSON object of strings: %v", err)
		}
	case "application/x-www-form-urlencoded":
		b, _ := io.ReadAll(r.Body)
		v, err := url.ParseQuery(string(b))
		if err != nil {
			t.Error(err)
		}
		for k := range v {
			out[k] = v.Get(k)
		}
	default:
		for k := range r.URL.Query() {
			out[k] = r.URL.Query().Get(k)
		}
	}
	return out
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestTokenResponses(t *testing.T) {
	tests := []struct {
		name, ctype, body string
		status            int
		header            http.Header
		failure           Failure
		check             func(*testing.T, *Token, *Error)
	}{
		{name: "omnisend never expires", status: 200, body: `{"access_token":"a","token_type":"Bearer","expires_in":9223372036}`,
			check: func(t *testing.T, tok *Token, _ *Error) {
				if !tok.ExpiresAt.IsZero() {
					t.Errorf("ExpiresAt = %v, want none", tok.ExpiresAt)
				}
			}},
		{name: "string expires_in", status: 200, body: `{"access_token":"a","token_type":"Bearer","expires_in":"300"}`,
			check: func(t *testing.T, tok *Token, _ *Error) {
				if !tok.ExpiresAt.Equal(t0.Add(300 * time.Second)) {
					t.Errorf("ExpiresAt = %v", tok.ExpiresAt)
				}
			}},
		{name: "narrower scope kept as granted (S14)", status: 200, body: `{"access_token":"a","token_type":"Bearer","scope":"read"}`,
			check: func(t *testing.T, tok *Token, _ *Error) {
				if tok.Scope != "read" || !tok.ExpiresAt.IsZero() {
					t.Errorf("token %+v", tok)
				}
			}},
		{name: "form encoded response", status: 200, ctype: "application/x-www-form-urlencoded", body: `access_token=a&token_type=bearer&expires_in=60`},
		{name: "mac token type (S14)", status: 200, body: `{"access_token":"a","token_type":"mac"}`, failure: FailureResponse},
		{name: "no token type", status: 200, body: `{"access_token":"a"}`, failure: FailureResponse},
		{name: "no access token", status: 200, body: `{"token_type":"bearer"}`, failure: FailureResponse},
		{name: "negative expires_in", status: 200, body: `{"access_token":"a","token_type":"bearer","expires_in":-1}`, failure: FailureResponse},
		{name: "html 200", status: 200, ctype: "text/html", body: `<html>hi</html>`, failure: FailureResponse},
		{name: "garbage json", status: 200, body: `{"access_token":`, failure: FailureResponse},
		{name: "error in 200", status: 200, body: `{"error":"invalid_grant"}`, failure: FailureGrant},
		{name: "invalid_grant", status: 400, body: `{"error":"invalid_grant","error_description":"used"}`, failure: FailureGrant},
		{name: "invalid_client", status: 401, body: `{"error":"invalid_client"}`, failure: FailureClient},
		{name: "invalid_scope", status: 400, body: `{"error":"invalid_scope"}`, failure: FailureRequest},
		{name: "unsafe error code dropped", status: 400, body: `{"error":"<script>"}`, failure: FailureResponse,
			check: func(t *testing.T, _ *Token, e *Error) {
				if e.Code != "" {
					t.Errorf("Code = %q", e.Code)
				}
			}},
		{name: "500", status: 500, body: `oops`, failure: FailureUnavailable},
		{name: "html 502", status: 502, ctype: "text/html", body: `<html>bad gateway</html>`, failure: FailureUnavailable},
		{name: "429 retry-after", status: 429, header: http.Header{"Retry-After": {"120"}}, body: `{}`, failure: FailureUnavailable,
			check: func(t *testing.T, _ *Token, e *Error) {
				if e.RetryAfter != 2*time.Minute {
					t.Errorf("RetryAfter = %v", e.RetryAfter)
				}
			}},
		{name: "redirect not followed (S13)", status: 307, header: http.Header{"Location": {"/elsewhere"}}, failure: FailureResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				ct := tt.ctype
				if ct == "" {
					ct = "application/json"
				}
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			tok, err := client().Refresh(context.Background(), testProvider(t, srv.URL, ClientAuthBasic, TokenRequestForm), creds, "rt-secret")
			var pe *Error
			if tt.failure == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if !errors.As(err, &pe) || pe.Failure != tt.failure {
				t.Fatalf("err = %v, want failure %s", err, tt.failure)
			}
			if err != nil && (strings.Contains(err.Error(), "rt-secret") || strings.Contains(err.Error(), srv.URL)) {
				t.Fatalf("error leaks a credential or URL: %v", err)
			}
			if hits.Load() != 1 {
				t.Fatalf("%d requests, want exactly 1", hits.Load())
			}
			if tt.check != nil {
				tt.check(t, tok, pe)
			}
		})
	}
}

func TestBoundedBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"`+strings.Repeat("x", 10<<20)+`"}`)
	}))
	defer srv.Close()
	_, err := client().Refresh(context.Background(), testProvider(t, srv.URL, ClientAuthBasic, TokenRequestForm), creds, "rt")
	var pe *Error
	if !errors.As(err, &pe) || pe.Failure != FailureResponse || !strings.Contains(pe.Reason, "larger") {
		t.Fatalf("err = %v", err)
	}
}

// TestHTTPClientTLS (S13): the provider client verifies certificates,
// insists on TLS 1.2 or later and follows no redirect.
func TestHTTPClientTLS(t *testing.T) {
	hc := NewHTTPClient()
	tr, ok := hc.Transport.(*http.Transport)
	if !ok || tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion != tls.VersionTLS12 || tr.TLSClientConfig.InsecureSkipVerify {
		t.Fatalf("TLS config %+v: want MinVersion TLS 1.2 and verification on", tr.TLSClientConfig)
	}
	if hc.CheckRedirect == nil || hc.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Fatal("the client follows redirects")
	}
	ok200 := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	// A certificate nobody trusts: refused.
	untrusted := httptest.NewUnstartedServer(ok200)
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0)
	untrusted.StartTLS()
	defer untrusted.Close()
	if resp, err := hc.Get(untrusted.URL); err == nil {
		resp.Body.Close()
		t.Fatal("an untrusted certificate was accepted")
	}
	// A trusted server that speaks at most TLS 1.1: refused; at most
	// TLS 1.2: accepted.
	for _, tt := range []struct {
		max uint16
		ok  bool
	}{{tls.VersionTLS11, false}, {tls.VersionTLS12, true}} {
		srv := httptest.NewUnstartedServer(ok200)
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.TLS = &tls.Config{MaxVersion: tt.max}
		srv.StartTLS()
		c := NewHTTPClient()
		ctr := c.Transport.(*http.Transport)
		ctr.TLSClientConfig.RootCAs = x509.NewCertPool()
		ctr.TLSClientConfig.RootCAs.AddCert(srv.Certificate())
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("server at most %s: err = %v, want ok=%v", tls.VersionName(tt.max), err, tt.ok)
		}
		srv.Close()
	}
}

// TestQueryRequestErrorsHideURL: a GET token request carries the secret
// and the code in its URL, so no error may include it.
func TestQueryRequestErrorsHideURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := client().Exchange(ctx, testProvider(t, srv.URL, ClientAuthBody, TokenRequestQuery), creds, "code-xyz", "https://b.example/cb", "")
	var pe *Error
	if !errors.As(err, &pe) || pe.Failure != FailureUnavailable || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	for _, leak := range []string{creds.ClientSecret, url.QueryEscape(creds.ClientSecret), "code-xyz", srv.URL} {
		if strings.Contains(err.Error(), leak) {
			t.Fatalf("error %q leaks %q", err, leak)
		}
	}
}

// TestIssuedAt: Outstand's "created_at" is the base of expires_in when it
// is believable, and never lengthens a lifetime.
func TestIssuedAt(t *testing.T) {
	doc := "providers:\n  outstand:\n    authorization_url: https://o.example/a\n    token_url: %s\n    grant_types: [authorization_code, refresh_token]\n    expiry: {issued_at_field: created_at}\n"
	tests := []struct {
		name      string
		createdAt string
		want      time.Time
	}{
		{"a little before the request", `1799999990`, t0.Add(-10 * time.Second).Add(7200 * time.Second)},
		{"as a string", `"1799999990"`, t0.Add(-10 * time.Second).Add(7200 * time.Second)},
		{"after the request (fast clock)", `1800000030`, t0.Add(7200 * time.Second)},
		{"the document's own example (2015)", `1447820578`, t0.Add(7200 * time.Second)},
		{"far future", `1900000000`, t0.Add(7200 * time.Second)},
		{"not a number", `"yesterday"`, t0.Add(7200 * time.Second)},
		{"null", `null`, t0.Add(7200 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"access_token":"a","token_type":"bearer","expires_in":7200,"refresh_token":"r","created_at":`+tt.createdAt+`}`)
			}))
			defer srv.Close()
			c, err := Parse("test", []byte(strings.Replace(doc, "%s", srv.URL, 1)))
			if err != nil {
				t.Fatal(err)
			}
			p, _ := c.Get("outstand")
			tok, err := client().Refresh(context.Background(), endpoint(t, p), creds, "r")
			if err != nil {
				t.Fatal(err)
			}
			if !tok.ExpiresAt.Equal(tt.want) || tok.Lifetime != 7200*time.Second {
				t.Fatalf("ExpiresAt = %v, want %v", tok.ExpiresAt, tt.want)
			}
		})
	}
}

// TestTokenHeadersAndQuirks: templated token headers are sent (GetResponse
// 360's X-Domain), "scope": null means "not stated" (GetResponse), and a
// numeric metadata field is kept as text (VerticalResponse's user_id).
func TestTokenHeadersAndQuirks(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"a","token_type":"bearer","expires_in":3600,"scope":null,"user_id":1234567}`)
	}))
	defer srv.Close()
	doc := "providers:\n  gr:\n    authorization_url: https://{domain}/a\n    token_url: " + srv.URL + "/t\n    grant_types: [authorization_code]\n" +
		"    token_headers: {X-Domain: '{domain}'}\n    metadata_fields: [user_id]\n    connection_params: {domain: {pattern: '[a-z.]+'}}\n"
	c, err := Parse("test", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Get("gr")
	r, err := p.Resolve(map[string]string{"domain": "mail.acme.com"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := client().Exchange(context.Background(), r, creds, "c", "https://b.example/cb", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Get("X-Domain") != "mail.acme.com" || tok.Scope != "" || tok.Metadata["user_id"] != "1234567" {
		t.Fatalf("X-Domain %q scope %q metadata %v", got.Get("X-Domain"), tok.Scope, tok.Metadata)
	}
}

// TestKaisaUndocumentedResponse: Kaisa's document shows no response body,
// only "The token will expire in 5 minutes (300 seconds)." The embedded
// entry accepts an answer without token_type or expires_in and gives it
// 300 s.
func TestKaisaUndocumentedResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"kt"}`)
	}))
	defer srv.Close()
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := c.Get("kaisa")
	p := *k
	p.TokenURL = srv.URL
	tok, err := client().ClientCredentials(context.Background(), endpoint(t, &p), creds, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.Lifetime != 300*time.Second || !tok.ExpiresAt.Equal(t0.Add(300*time.Second)) {
		t.Fatalf("token %+v", tok)
	}
	if m := p.RefreshMargin(tok.Lifetime); m != 120*time.Second {
		t.Fatalf("refresh margin %v", m)
	}
}

// TestRevoke: RFC 7009 revocation with the provider's client
// authentication, against the strict provider test server.
func TestRevoke(t *testing.T) {
	ctx := t.Context()
	for _, auth := range []ClientAuth{ClientAuthBasic, ClientAuthBody} {
		t.Run(string(auth), func(t *testing.T) {
			srv := providertest.New(t, providertest.Config{ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, ClientAuth: string(auth), RedirectURI: "https://broker.example/callback/acme"})
			doc := "providers:\n  acme:\n    authorization_url: https://acme.example/a\n    token_url: " + srv.TokenURL() +
				"\n    revocation_url: " + srv.RevokeURL() + "\n    grant_types: [authorization_code, refresh_token]\n    client_auth: " + string(auth) + "\n"
			cat, err := Parse("test", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			p, _ := cat.Get("acme")
			access, refresh := srv.IssueGrant("read")
			c := &Client{}
			if err := c.Revoke(ctx, endpoint(t, p), creds, refresh, "refresh_token"); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			if srv.ValidRefresh(refresh) || srv.Valid(access) {
				t.Error("the grant is still valid after revoking its refresh token")
			}
			if err := c.Revoke(ctx, endpoint(t, p), secrets.ClientCredentials{ClientID: creds.ClientID, ClientSecret: "wrong-secret-1234"}, access, "access_token"); err == nil || strings.Contains(err.Error(), "wrong-secret-1234") {
				t.Errorf("Revoke with a wrong secret: %v, want an error without the secret", err)
			}
			none := *p
			none.RevocationURL = ""
			before := len(srv.Requests())
			if err := c.Revoke(ctx, endpoint(t, &none), creds, access, "access_token"); err != nil || len(srv.Requests()) != before {
				t.Errorf("Revoke without a revocation_url: %v, %d requests", err, len(srv.Requests())-before)
			}
		})
	}
	if _, err := Parse("test", []byte("providers:\n  acme:\n    authorization_url: https://acme.example/a\n    token_url: https://acme.example/t\n    revocation_url: https://elsewhere.example/r\n    grant_types: [authorization_code]\n")); err == nil {
		t.Error("a revocation_url on another host than token_url was accepted (it would receive the client secret)")
	}
}

// TestTokenValueSyntax: an access or refresh token is stored and handed to
// apps only when it is RFC 6749 Appendix A's VSCHAR (printable ASCII);
// anything else — a CR/LF that would split the app's Authorization header,
// a control character, non-ASCII — fails the response, in either encoding,
// and the error never repeats the value.
func TestTokenValueSyntax(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiZXhwIjoxODAwMDAwMDAwfQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmU_-w"
	tests := []struct {
		name  string
		ctype string // application/json if empty
		body  string
		ok    bool
	}{
		// Shapes real providers issue.
		{name: "JWT", body: `{"access_token":"` + jwt + `","token_type":"Bearer","refresh_token":"` + jwt + `"}`, ok: true},
		{name: "standard base64 with +/= padding", body: `{"access_token":"q83vEjRWeJA+/w==","token_type":"Bearer","refresh_token":"AAEC+/8="}`, ok: true},
		{name: "hex", body: `{"access_token":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","token_type":"Bearer"}`, ok: true},
		{name: "unreserved -._~", body: `{"access_token":"a-b.c_d~e","token_type":"Bearer","refresh_token":"r-1.2_3~4"}`, ok: true},
		{name: "providertest prefix", body: `{"access_token":"pta_2brSXjAaSKnfxMRGYjCn4oLxFm0V-WDEhsTb3BVNZQA","token_type":"Bearer","refresh_token":"ptr_x"}`, ok: true},
		{name: "Salesforce-style with !", body: `{"access_token":"00D5e000000AbCd!AQ0AQH1xYz.Abc_123","token_type":"Bearer"}`, ok: true},
		{name: "app token with |", body: `{"access_token":"123456789|abcDEF","token_type":"Bearer"}`, ok: true},
		{name: "form-encoded with +/=", ctype: "application/x-www-form-urlencoded", body: "access_token=q83vEjRWeJA%2B%2Fw%3D%3D&token_type=bearer&refresh_token=AAEC%2B%2F8%3D", ok: true},
		{name: "empty refresh_token means none", body: `{"access_token":"a","token_type":"Bearer","refresh_token":""}`, ok: true},

		// Values that must never reach the store or an app.
		{name: "CR LF in access_token", body: `{"access_token":"abc\r\nX-Injected: 1","token_type":"Bearer"}`},
		{name: "LF in access_token", body: `{"access_token":"abc\ndef","token_type":"Bearer"}`},
		{name: "CR LF in refresh_token", body: `{"access_token":"abc","token_type":"Bearer","refresh_token":"rt\r\nx"}`},
		{name: "tab", body: `{"access_token":"abc\tdef","token_type":"Bearer"}`},
		{name: "NUL", body: `{"access_token":"abc\u0000def","token_type":"Bearer"}`},
		{name: "DEL", body: `{"access_token":"abc` + "\x7f" + `def","token_type":"Bearer"}`},
		{name: "non-ASCII", body: `{"access_token":"abcédef","token_type":"Bearer"}`},
		{name: "line separator U+2028", body: `{"access_token":"abc\u2028def","token_type":"Bearer"}`},
		{name: "form-encoded CR LF", ctype: "application/x-www-form-urlencoded", body: "access_token=abc%0D%0AX-Injected%3A+1&token_type=bearer"},
		{name: "form-encoded CR LF in refresh_token", ctype: "application/x-www-form-urlencoded", body: "access_token=abc&token_type=bearer&refresh_token=r%0Ax"},
	}
	p := testProvider(t, "https://acme.example/token", ClientAuthBasic, TokenRequestForm)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.ctype
			if ct == "" {
				ct = "application/json"
			}
			tok, err := parseToken(p.Provider, ct, []byte(tt.body), t0)
			if tt.ok {
				if err != nil || tok.AccessToken == "" {
					t.Fatalf("err = %v, want a token", err)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Failure != FailureTokenSyntax || pe.Temporary() {
				t.Fatalf("token %v, err = %v; want a %s failure", tok != nil, err, FailureTokenSyntax)
			}
			if strings.Contains(err.Error(), "abc") || strings.ContainsAny(err.Error(), "\r\n\x00") {
				t.Fatalf("error repeats the value: %v", err)
			}
		})
	}
}
