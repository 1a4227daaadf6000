// Package providertest runs the repository's OAuth 2.0 authorization
// server (package oauthserver) for a test: on its own httptest server,
// answering the authorization request as if the user approved (or, with
// Deny, denied), recording every request, with the failures, delays and
// rate limit oauthserver can inject into the token endpoint, and
// registering the client secret, the codes and tokens it issues and the
// states and PKCE verifiers it receives with logcheck (S22).
//
// The server itself lives in oauthserver so that make dev (cmd/dev) can
// run it without linking testing or this package.
package providertest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/oauthserver"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// Config describes the registered client and the provider's behaviour.
type Config = oauthserver.Config

// Client authentication methods, token request encodings and grant types:
// see oauthserver.
const (
	AuthBasic = oauthserver.AuthBasic
	AuthBody  = oauthserver.AuthBody

	RequestForm  = oauthserver.RequestForm
	RequestJSON  = oauthserver.RequestJSON
	RequestQuery = oauthserver.RequestQuery

	GrantAuthorizationCode = oauthserver.GrantAuthorizationCode
	GrantRefreshToken      = oauthserver.GrantRefreshToken
	GrantClientCredentials = oauthserver.GrantClientCredentials
)

// ConsentTTL is how long a consent page may stay open.
const ConsentTTL = oauthserver.ConsentTTL

// Server is an authorization server running for a test; its methods,
// those of oauthserver.Server included, are safe for concurrent use.
type Server struct {
	*oauthserver.Server
	// URL is the base URL, http://127.0.0.1:<port>.
	URL string

	paths    oauthserver.Config // for the endpoint URLs
	mu       sync.Mutex
	requests []Recorded
	secrets  []string
}

// New starts a server for cfg on its own httptest server and stops it
// when the test ends. It fails the test if cfg is invalid.
func New(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := &Server{}
	if cfg.ClientSecret != "" {
		s.keep(cfg.ClientSecret)
	}
	inner, err := oauthserver.OpenObserved(cfg, (*observer)(s))
	if err != nil {
		t.Fatalf("providertest: %v", err)
	}
	s.Server = inner
	s.paths = inner.Config()
	srv := httptest.NewServer(s.record(inner.Handler()))
	s.URL = srv.URL
	t.Cleanup(func() {
		inner.Close()
		srv.Close()
	})
	return s
}

// observer is the Server as the oauthserver.Observer of its server.
type observer Server

// Issued keeps v for Credentials and registers it with logcheck.
func (o *observer) Issued(v string) { (*Server)(o).keep(v) }

// Received registers a state or PKCE verifier a client sent with logcheck.
func (o *observer) Received(v string) { logcheck.Register(v) }

// keep keeps v for Credentials and registers it with logcheck.
func (s *Server) keep(v string) {
	s.mu.Lock()
	s.secrets = append(s.secrets, v)
	s.mu.Unlock()
	logcheck.Register(v)
}

// AuthorizeURL is the authorization endpoint.
func (s *Server) AuthorizeURL() string { return s.URL + s.paths.AuthorizePath }

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.URL + s.paths.TokenPath }

// RevokeURL is the revocation endpoint (RFC 7009).
func (s *Server) RevokeURL() string { return s.URL + s.paths.RevokePath }

// ResourceURL is a protected resource that accepts valid access tokens.
func (s *Server) ResourceURL() string { return s.URL + s.paths.ResourcePath }

// Handler serves the endpoints, recording the requests as the test
// server does.
func (s *Server) Handler() http.Handler { return s.record(s.Server.Handler()) }

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Recorded, len(s.requests))
	for i, r := range s.requests {
		out[i] = r
		out[i].Header = r.Header.Clone()
		out[i].Body = bytes.Clone(r.Body)
		out[i].Query = cloneValues(r.Query)
		out[i].Params = cloneValues(r.Params)
	}
	return out
}

// Credentials returns the client secret and every code, access token and
// refresh token issued so far: the strings that must never appear in a log
// (RFC 6750 §5.3, RFC 9700 §4.2).
func (s *Server) Credentials() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.secrets)
}

// Authorize sends the browser's GET to authorizeURL without following the
// redirect and returns where the server sends the browser: the client's
// redirect_uri with code and state, or with error. It fails the test unless
// the answer is a 302.
func (s *Server) Authorize(t testing.TB, authorizeURL string) *url.URL {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authorizeURL)
	if err != nil {
		t.Fatalf("providertest: authorize: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("providertest: authorize answered %d: %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("providertest: authorize Location: %v", err)
	}
	return loc
}
