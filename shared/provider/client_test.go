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
	c, err := parseDoc("test", []byte(doc))
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
	c, err := parseDoc("test", []byte(doc))
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

// TestRevoke: RFC 7009 revocation with the provider's client
// authentication, against the strict provider test server.
func TestRevoke(t *testing.T) {
	ctx := t.Context()
	for _, auth := range []ClientAuth{ClientAuthBasic, ClientAuthBody} {
		t.Run(string(auth), func(t *testing.T) {
			srv := providertest.New(t, providertest.Config{ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, ClientAuth: string(auth), RedirectURI: "https://broker.example/callback/acme"})
			doc := "providers:\n  acme:\n    authorization_url: https://acme.example/a\n    token_url: " + srv.TokenURL() +
				"\n    revocation_url: " + srv.RevokeURL() + "\n    grant_types: [authorization_code, refresh_token]\n    client_auth: " + string(auth) + "\n"
			cat, err := parseDoc("test", []byte(doc))
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
	if _, err := parseDoc("test", []byte("providers:\n  acme:\n    authorization_url: https://acme.example/a\n    token_url: https://acme.example/t\n    revocation_url: https://elsewhere.example/r\n    grant_types: [authorization_code]\n")); err == nil {
		t.Error("a revocation_url on another host than token_url was accepted (it would receive the client secret)")
	}
}
