// Package providertest is an OAuth 2.0 authorization server (RFC 6749) for
// tests, strict like a real provider: exact redirect_uri matching, single-use
// codes bound to client, redirect_uri and PKCE challenge (RFC 7636, S256
// only), exactly one client authentication method (RFC 6749 §2.3), RFC 6749
// §5.2 error responses, refresh token rotation with replay detection
// (RFC 9700 §4.14.2). It records every request and can inject failures,
// delays and a rate limit into the token endpoint. Config knobs reproduce
// non-standard providers (JSON or GET token requests, created_at, echoed
// refresh tokens, required headers, restricted grant types). The client
// secret, the codes and tokens it issues and the states and PKCE verifiers
// it receives are registered with logcheck (S22).
//
// Endpoints (all under Server.URL, at the default paths the Config can change):
//
//	GET  /authorize  authorization endpoint (RFC 6749 §4.1.1); answers as if the user approved
//	     /token      token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §6), method per Config.TokenRequest
//	POST /revoke     token revocation (RFC 7009), same client authentication as /token
//	GET  /resource   a protected resource taking "Authorization: Bearer" (RFC 6750 §2.1)
package providertest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// Client authentication methods (RFC 6749 §2.3.1).
const (
	AuthBasic = "basic" // HTTP Basic with form-urlencoded client_id and client_secret
	AuthBody  = "body"  // client_id and client_secret as request parameters
)

// Token request encodings.
const (
	RequestForm  = "form"  // POST application/x-www-form-urlencoded (RFC 6749 §4.1.3)
	RequestJSON  = "json"  // POST application/json (non-standard, used by some providers)
	RequestQuery = "query" // GET with query parameters (non-standard, used by some providers)
)

// Grant types the token endpoint implements (RFC 6749 §4.1.3, §4.4.2, §6).
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// Config describes the registered client and the provider's behaviour.
type Config struct {
	ClientID, ClientSecret string
	// RedirectURI is the one registered redirect URI; authorization and token
	// requests must carry exactly this string (RFC 9700 §4.1.3). It may be
	// empty only when GrantTypes excludes authorization_code.
	RedirectURI string
	// RedirectURIOptional lets authorization requests omit redirect_uri (the
	// registered one is used). The token request must then omit it or send
	// exactly the registered one; a code requested with redirect_uri still
	// needs the identical value (RFC 6749 §4.1.3).
	RedirectURIOptional bool
	// AuthorizePath, TokenPath, RevokePath and ResourcePath are where the
	// endpoints are served; defaults "/authorize", "/token", "/revoke",
	// "/resource". They must be distinct.
	AuthorizePath, TokenPath, RevokePath, ResourcePath string
	// ClientAuth is AuthBasic (default) or AuthBody.
	ClientAuth string
	// TokenRequest is RequestForm (default), RequestJSON or RequestQuery.
	TokenRequest string
	// AlsoAccept, if set, is a second accepted token request encoding.
	AlsoAccept string
	// GrantTypes, if not nil, lists the grant types the token endpoint
	// accepts; others get unsupported_grant_type (RFC 6749 §5.2). Without
	// authorization_code the authorization endpoint is not served (404).
	GrantTypes []string
	// DefaultGrantType, if set, is assumed for token requests without
	// grant_type (providers documenting a code exchange without it).
	DefaultGrantType string
	// RequireHeaders: every token request must carry each header exactly
	// once with exactly this value, else 400 invalid_request.
	RequireHeaders map[string]string
	// RateLimit, if positive, allows that many token requests per fixed
	// RateWindow (starting at the first request of each window); beyond it
	// the answer is 429 with Retry-After (whole seconds, at least 1) and a
	// JSON body, and no state changes. Such requests count in TokenRequests
	// and do not use up FailNext.
	RateLimit  int
	RateWindow time.Duration
	// RequirePKCE makes code_challenge (S256) mandatory in authorization
	// requests. A challenge sent anyway is always enforced, and a
	// code_verifier without a challenge is always rejected (RFC 9700 §2.1.1).
	RequirePKCE bool
	// Scopes the provider knows; ScopeParam (default "scope") is the request
	// parameter carrying them, ScopeSeparator (default " ") separates them
	// in requests and in the token response's "scope" member.
	Scopes         []string
	ScopeParam     string
	ScopeSeparator string
	// GrantOnly, if not nil, narrows every grant to these scopes, as a user
	// who unticks boxes on the consent screen (RFC 6749 §3.3).
	GrantOnly []string
	// AccessTokenTTL is sent as expires_in; 0 omits it (tokens never expire).
	AccessTokenTTL time.Duration
	// RotateRefreshTokens: a refresh returns a new refresh token and revokes
	// the old one; presenting a rotated-out token revokes the whole grant.
	// Without rotation the response carries no refresh_token (RFC 6749 §6)
	// unless EchoRefreshToken.
	RotateRefreshTokens bool
	// EchoRefreshToken: without rotation, a refresh response carries the
	// refresh token that was presented. It conflicts with RotateRefreshTokens.
	EchoRefreshToken bool
	// NoRefreshTokens: the authorization code grant issues no refresh token.
	NoRefreshTokens bool
	// CodeTTL is the authorization code lifetime (default 10 minutes,
	// RFC 6749 §4.1.2).
	CodeTTL time.Duration
	// Issuer, if set, is sent as iss in authorization responses (RFC 9207).
	Issuer string
	// CreatedAt adds "created_at" (Unix seconds of issue) to successful token
	// responses, as Doorkeeper does.
	CreatedAt bool
	// ExtraResponse is merged into successful token responses last, so it
	// can add members (a user_id) or override standard ones (token_type,
	// expires_in); a nil value sends JSON null.
	ExtraResponse map[string]any
}

// Recorded is one request the server received.
type Recorded struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte     // raw body
	Query  url.Values // parameters in the URL
	Params url.Values // all parameters: URL, form body and JSON body (string values) together
	Status int        // status answered; 0 while the request is in flight
}

// Server is a running authorization server; its methods are safe for
// concurrent use.
type Server struct {
	// URL is the base URL, http://127.0.0.1:<port>.
	URL string

	cfg    Config
	srv    *httptest.Server
	ctx    context.Context // cancelled when the test ends: aborts delays
	cancel context.CancelFunc

	mu            sync.Mutex
	requests      []Recorded
	tokenRequests int
	windowStart   time.Time // current rate limit window
	windowCount   int
	codes         map[string]*codeInfo
	access        map[string]*tokenInfo
	refresh       map[string]*tokenInfo
	secrets       []string
	nextGrant     int
	deny          bool
	delay         time.Duration
	failRevoke    bool
	failN         int
	fail          failure
}

type codeInfo struct {
	clientID    string
	redirectURI string // as sent in the authorization request; "" if omitted
	scope       []string
	challenge   string
	expires     time.Time
	used        bool
	grant       int
}

type tokenInfo struct {
	clientID string
	scope    []string
	grant    int
	expires  time.Time // zero: never
	revoked  bool
	rotated  bool // refresh token replaced by rotation
}

type failure struct {
	status      int
	contentType string
	body        string
	header      http.Header
}

// New starts a server for cfg and stops it when the test ends.
func New(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.ClientAuth == "" {
		cfg.ClientAuth = AuthBasic
	}
	if cfg.TokenRequest == "" {
		cfg.TokenRequest = RequestForm
	}
	if cfg.ScopeParam == "" {
		cfg.ScopeParam = "scope"
	}
	if cfg.ScopeSeparator == "" {
		cfg.ScopeSeparator = " "
	}
	if cfg.CodeTTL == 0 {
		cfg.CodeTTL = 10 * time.Minute
	}
	cfg.AuthorizePath = cmp.Or(cfg.AuthorizePath, "/authorize")
	cfg.TokenPath = cmp.Or(cfg.TokenPath, "/token")
	cfg.RevokePath = cmp.Or(cfg.RevokePath, "/revoke")
	cfg.ResourcePath = cmp.Or(cfg.ResourcePath, "/resource")
	if err := cfg.check(); err != nil {
		t.Fatalf("providertest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:     cfg,
		ctx:     ctx,
		cancel:  cancel,
		codes:   map[string]*codeInfo{},
		access:  map[string]*tokenInfo{},
		refresh: map[string]*tokenInfo{},
	}
	if cfg.ClientSecret != "" {
		s.secrets = append(s.secrets, cfg.ClientSecret)
		logcheck.Register(cfg.ClientSecret)
	}
	mux := http.NewServeMux()
	if cfg.grants(GrantAuthorizationCode) {
		mux.HandleFunc(cfg.AuthorizePath, s.handleAuthorize)
	}
	mux.HandleFunc(cfg.TokenPath, s.handleToken)
	mux.HandleFunc(cfg.RevokePath, s.handleRevoke)
	mux.HandleFunc(cfg.ResourcePath, s.handleResource)
	s.srv = httptest.NewServer(s.record(mux))
	s.URL = s.srv.URL
	t.Cleanup(func() {
		cancel()
		s.srv.Close()
	})
	return s
}

// endpointPath is what a ServeMux takes as an exact path: no host, method,
// wildcard or trailing slash.
var endpointPath = regexp.MustCompile(`^(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$`)

// check validates a Config with defaults applied.
func (cfg *Config) check() error {
	if cfg.ClientID == "" {
		return fmt.Errorf("Config needs ClientID")
	}
	if cfg.RedirectURI == "" && cfg.grants(GrantAuthorizationCode) {
		return fmt.Errorf("Config needs RedirectURI unless GrantTypes excludes authorization_code")
	}
	if cfg.ClientAuth != AuthBasic && cfg.ClientAuth != AuthBody {
		return fmt.Errorf("ClientAuth %q: want %q or %q", cfg.ClientAuth, AuthBasic, AuthBody)
	}
	encodings := []string{RequestForm, RequestJSON, RequestQuery}
	if !slices.Contains(encodings, cfg.TokenRequest) {
		return fmt.Errorf("TokenRequest %q: want form, json or query", cfg.TokenRequest)
	}
	if cfg.AlsoAccept != "" && (!slices.Contains(encodings, cfg.AlsoAccept) || cfg.AlsoAccept == cfg.TokenRequest) {
		return fmt.Errorf("AlsoAccept %q: want form, json or query other than TokenRequest", cfg.AlsoAccept)
	}
	known := []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}
	for _, g := range cfg.GrantTypes {
		if !slices.Contains(known, g) {
			return fmt.Errorf("GrantTypes: %q not implemented", g)
		}
	}
	if cfg.DefaultGrantType != "" && (!slices.Contains(known, cfg.DefaultGrantType) || !cfg.grants(cfg.DefaultGrantType)) {
		return fmt.Errorf("DefaultGrantType %q: not an accepted grant type", cfg.DefaultGrantType)
	}
	if cfg.EchoRefreshToken && cfg.RotateRefreshTokens {
		return fmt.Errorf("EchoRefreshToken and RotateRefreshTokens exclude each other")
	}
	if cfg.RateLimit < 0 || (cfg.RateLimit > 0) != (cfg.RateWindow > 0) {
		return fmt.Errorf("RateLimit and RateWindow go together (got %d, %v)", cfg.RateLimit, cfg.RateWindow)
	}
	for k := range cfg.RequireHeaders {
		if k == "" || http.CanonicalHeaderKey(k) == "Authorization" {
			return fmt.Errorf("RequireHeaders: header %q not allowed", k)
		}
	}
	paths := []string{cfg.AuthorizePath, cfg.TokenPath, cfg.RevokePath, cfg.ResourcePath}
	for i, p := range paths {
		if !endpointPath.MatchString(p) || path.Clean(p) != p {
			return fmt.Errorf("endpoint path %q: want /segment/... without wildcards or a trailing slash", p)
		}
		if slices.Contains(paths[:i], p) {
			return fmt.Errorf("endpoint path %q used twice", p)
		}
	}
	return nil
}

// grants reports whether the token endpoint accepts grant type g.
func (cfg *Config) grants(g string) bool {
	return cfg.GrantTypes == nil || slices.Contains(cfg.GrantTypes, g)
}

// AuthorizeURL is the authorization endpoint.
func (s *Server) AuthorizeURL() string { return s.URL + s.cfg.AuthorizePath }

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.URL + s.cfg.TokenPath }

// RevokeURL is the revocation endpoint (RFC 7009).
func (s *Server) RevokeURL() string { return s.URL + s.cfg.RevokePath }

// ResourceURL is a protected resource that accepts valid access tokens.
func (s *Server) ResourceURL() string { return s.URL + s.cfg.ResourcePath }

// Deny makes the authorization endpoint answer as if the user clicked Deny
// (error=access_denied, RFC 6749 §4.1.2.1), until Deny(false).
func (s *Server) Deny(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deny = on
}

// FailNext makes the next n token requests fail with this answer (a 429 with
// Retry-After, a 500, an HTML page, garbage...). Header is sent as given;
// contentType, if not empty, sets Content-Type. It replaces an earlier
// FailNext; such requests are recorded and counted but change no state.
func (s *Server) FailNext(n int, status int, contentType, body string, header http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN = n
	s.fail = failure{status: status, contentType: contentType, body: body, header: header.Clone()}
}

// FailRevocations makes the revocation endpoint answer 503 (a provider
// that is down) until called with false.
func (s *Server) FailRevocations(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failRevoke = on
}

// Delay makes every token request wait d before it is handled (0 to stop).
// The wait ends early when the client goes away or the test ends.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

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

// TokenRequests counts the requests that reached the token endpoint,
// whatever their outcome.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenRequests
}

// Issued reports whether access was ever issued as an access token.
func (s *Server) Issued(access string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.access[access]
	return ok
}

// Valid reports whether access is an issued access token that is neither
// revoked nor expired.
func (s *Server) Valid(access string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ti, ok := s.access[access]
	return ok && ti.usable(time.Now())
}

// ValidRefresh reports whether rt is an issued refresh token that may still be
// used.
func (s *Server) ValidRefresh(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ti, ok := s.refresh[rt]
	return ok && ti.usable(time.Now())
}

// RevokeRefresh revokes a refresh token, as a user disconnecting the app on
// the provider's side or an expiry would: its next use gets invalid_grant.
func (s *Server) RevokeRefresh(rt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ti, ok := s.refresh[rt]; ok {
		ti.revoked = true
	}
}

// RevokeAccess revokes an access token: the resource endpoint rejects it.
func (s *Server) RevokeAccess(access string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ti, ok := s.access[access]; ok {
		ti.revoked = true
	}
}

// IssueGrant creates a new grant for the registered client, as a completed
// authorization code flow would, and returns its access and refresh
// tokens: for tests that need many connections without a browser flow.
func (s *Server) IssueGrant(scope ...string) (access, refresh string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextGrant++
	resp := s.issue(scope, s.nextGrant, true)
	return resp["access_token"].(string), resp["refresh_token"].(string)
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

// ---------------------------------------------------------------------------
// Recording

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// record reads the body (at most 1 MiB), records the request and hands it on
// with the body restored.
func (s *Server) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		query, _ := url.ParseQuery(r.URL.RawQuery)
		rec := Recorded{
			Method: r.Method,
			Path:   r.URL.Path,
			Header: r.Header.Clone(),
			Body:   body,
			Query:  query,
			Params: cloneValues(query),
		}
		for k, vs := range bodyParams(r.Header.Get("Content-Type"), body) {
			rec.Params[k] = append(rec.Params[k], vs...)
		}
		s.mu.Lock()
		i := len(s.requests)
		s.requests = append(s.requests, rec)
		s.mu.Unlock()

		sw := &statusWriter{ResponseWriter: w}
		if err != nil {
			http.Error(sw, "request body too large", http.StatusRequestEntityTooLarge)
		} else {
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(sw, r)
		}
		s.mu.Lock()
		s.requests[i].Status = sw.status
		s.mu.Unlock()
	})
}

// bodyParams parses a form or JSON body leniently, for recording.
func bodyParams(contentType string, body []byte) url.Values {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/x-www-form-urlencoded":
		v, _ := url.ParseQuery(string(body))
		return v
	case "application/json":
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			return nil
		}
		v := url.Values{}
		for k, x := range m {
			if str, ok := x.(string); ok {
				v.Add(k, str)
			}
		}
		return v
	}
	return nil
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// ---------------------------------------------------------------------------
// Authorization endpoint (RFC 6749 §4.1.1–4.1.2)

var challengeSyntax = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`) // BASE64URL(SHA256) without padding

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "authorization endpoint: GET only", http.StatusMethodNotAllowed)
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "invalid_request: malformed query", http.StatusBadRequest)
		return
	}
	// Without a valid client and exactly the registered redirect_uri the
	// server must not redirect (RFC 6749 §4.1.2.1, §10.15).
	if len(q["client_id"]) != 1 || q.Get("client_id") != s.cfg.ClientID {
		http.Error(w, "invalid_request: unknown or repeated client_id", http.StatusBadRequest)
		return
	}
	omitted := len(q["redirect_uri"]) == 0 && s.cfg.RedirectURIOptional
	if !omitted && (len(q["redirect_uri"]) != 1 || q.Get("redirect_uri") != s.cfg.RedirectURI) {
		http.Error(w, "invalid_request: redirect_uri is missing, repeated or not the registered one", http.StatusBadRequest)
		return
	}
	state := q.Get("state")
	logcheck.Register(state)
	fail := func(code, desc string) {
		s.redirect(w, r, url.Values{"error": {code}, "error_description": {desc}}, state)
	}

	for k, vs := range q {
		if len(vs) > 1 { // RFC 6749 §3.1
			fail("invalid_request", "parameter "+k+" repeated")
			return
		}
	}
	if q.Get("response_type") != "code" { // RFC 9700 §2.1.2: no implicit grant
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	if state == "" {
		fail("invalid_request", "state is required")
		return
	}
	scope, ok := s.parseScope(q.Get(s.cfg.ScopeParam))
	if !ok {
		fail("invalid_scope", "unknown scope requested")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "" && s.cfg.RequirePKCE: // RFC 7636 §4.4.1
		fail("invalid_request", "code challenge required")
		return
	case challenge == "" && method != "":
		fail("invalid_request", "code_challenge_method without code_challenge")
		return
	case challenge != "" && method != "S256": // absent means plain (RFC 7636 §4.3), refused (§7.2)
		fail("invalid_request", "transform algorithm not supported")
		return
	case challenge != "" && !challengeSyntax.MatchString(challenge):
		fail("invalid_request", "malformed code_challenge")
		return
	}

	s.mu.Lock()
	if s.deny {
		s.mu.Unlock()
		fail("access_denied", "The user denied the request")
		return
	}
	code := s.newSecret("ptc_")
	s.nextGrant++
	s.codes[code] = &codeInfo{
		clientID:    s.cfg.ClientID,
		redirectURI: q.Get("redirect_uri"),
		scope:       s.narrow(scope),
		challenge:   challenge,
		expires:     time.Now().Add(s.cfg.CodeTTL),
		grant:       s.nextGrant,
	}
	s.mu.Unlock()
	s.redirect(w, r, url.Values{"code": {code}}, state)
}

// redirect answers 302 to the registered redirect_uri, keeping its own query
// (RFC 6749 §3.1.2), with params, state and iss (RFC 9207 §2).
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, params url.Values, state string) {
	u, _ := url.Parse(s.cfg.RedirectURI)
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	if state != "" {
		q.Set("state", state)
	}
	if s.cfg.Issuer != "" {
		q.Set("iss", s.cfg.Issuer)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// parseScope splits a scope parameter; every scope must be known (RFC 6749
// §3.3).
func (s *Server) parseScope(raw string) ([]string, bool) {
	var out []string
	for _, sc := range strings.Split(raw, s.cfg.ScopeSeparator) {
		if sc == "" {
			continue
		}
		if !slices.Contains(s.cfg.Scopes, sc) {
			return nil, false
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, true
}

func (s *Server) narrow(scope []string) []string {
	if s.cfg.GrantOnly == nil {
		return scope
	}
	var out []string
	for _, sc := range scope {
		if slices.Contains(s.cfg.GrantOnly, sc) {
			out = append(out, sc)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Token endpoint

// oauthError is an RFC 6749 §5.2 error response.
type oauthError struct {
	status int
	code   string
	desc   string
	basic  bool // add WWW-Authenticate: Basic (RFC 6749 §5.2, invalid_client)
}

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store") // RFC 6749 §5.1
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (e *oauthError) write(w http.ResponseWriter) {
	if e.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="providertest"`)
	}
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.tokenRequests++
	delay := s.delay
	retryAfter := s.rateLimited(time.Now())
	var inject *failure
	if s.failN > 0 && retryAfter == 0 {
		s.failN--
		f := s.fail
		inject = &f
	}
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			panic(http.ErrAbortHandler) // drop the connection, no answer
		case <-s.ctx.Done():
			panic(http.ErrAbortHandler)
		}
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{
			"error":             "too_many_requests",
			"error_description": fmt.Sprintf("at most %d requests per %v", s.cfg.RateLimit, s.cfg.RateWindow),
		})
		return
	}
	if inject != nil {
		for k, vs := range inject.header {
			w.Header()[k] = slices.Clone(vs)
		}
		if inject.contentType != "" {
			w.Header().Set("Content-Type", inject.contentType)
		}
		w.WriteHeader(inject.status)
		_, _ = io.WriteString(w, inject.body)
		return
	}

	params, oerr := s.tokenParams(r)
	if oerr == nil {
		oerr = s.requiredHeaders(r)
	}
	if oerr == nil {
		oerr = s.authenticate(r, params)
	}
	if oerr != nil {
		oerr.write(w)
		return
	}
	grant := params.Get("grant_type")
	if grant == "" {
		grant = s.cfg.DefaultGrantType
	}
	unsupported := &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type", desc: "grant_type not supported"}
	var resp map[string]any
	switch {
	case grant == "":
		oerr = errInvalidRequest("grant_type is required")
	case !s.cfg.grants(grant):
		oerr = unsupported
	case grant == GrantAuthorizationCode:
		resp, oerr = s.grantCode(params)
	case grant == GrantRefreshToken:
		resp, oerr = s.grantRefresh(params)
	case grant == GrantClientCredentials:
		resp, oerr = s.grantClientCredentials(params)
	default:
		oerr = unsupported
	}
	if oerr != nil {
		oerr.write(w)
		return
	}
	for k, v := range s.cfg.ExtraResponse {
		resp[k] = v
	}
	writeJSON(w, http.StatusOK, resp)
}

// rateLimited counts a token request in the current fixed window and returns
// 0 if it is allowed, else the seconds until the window ends (at least 1);
// s.mu is held.
func (s *Server) rateLimited(now time.Time) int {
	if s.cfg.RateLimit <= 0 {
		return 0
	}
	end := s.windowStart.Add(s.cfg.RateWindow)
	if s.windowStart.IsZero() || !now.Before(end) {
		s.windowStart, s.windowCount = now, 0
		end = now.Add(s.cfg.RateWindow)
	}
	s.windowCount++
	if s.windowCount <= s.cfg.RateLimit {
		return 0
	}
	return max(1, int((end.Sub(now)+time.Second-1)/time.Second))
}

// accepts reports whether enc is an accepted token request encoding.
func (s *Server) accepts(enc string) bool {
	return s.cfg.TokenRequest == enc || s.cfg.AlsoAccept == enc
}

// tokenParams enforces the configured methods and encodings and returns the
// request parameters; parameters sent without a value count as omitted and
// none may be repeated (RFC 6749 §3.1, §3.2).
func (s *Server) tokenParams(r *http.Request) (url.Values, *oauthError) {
	var methods, types []string
	if s.accepts(RequestQuery) {
		methods = append(methods, http.MethodGet)
	}
	if s.accepts(RequestForm) {
		types = append(types, "application/x-www-form-urlencoded")
	}
	if s.accepts(RequestJSON) {
		types = append(types, "application/json")
	}
	if len(types) > 0 {
		methods = append(methods, http.MethodPost)
	}
	if !slices.Contains(methods, r.Method) {
		return nil, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "token requests must use " + strings.Join(methods, " or ")}
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errInvalidRequest("malformed query")
	}
	body, _ := io.ReadAll(r.Body)
	var params url.Values
	if r.Method == http.MethodGet {
		if len(body) > 0 {
			return nil, errInvalidRequest("token requests carry their parameters in the query, not a body")
		}
		params = query
	} else {
		if len(query) > 0 { // the secret must never travel in the URI (RFC 6749 §2.3.1)
			return nil, errInvalidRequest("parameters in the query string are not accepted")
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || !slices.Contains(types, mt) {
			return nil, errInvalidRequest("Content-Type must be " + strings.Join(types, " or "))
		}
		if mt == "application/x-www-form-urlencoded" {
			if params, err = url.ParseQuery(string(body)); err != nil {
				return nil, errInvalidRequest("malformed form body")
			}
		} else {
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(body))
			if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
				return nil, errInvalidRequest("body must be one JSON object")
			}
			params = url.Values{}
			for k, v := range m {
				str, ok := v.(string)
				if !ok {
					return nil, errInvalidRequest("parameter " + k + " must be a string")
				}
				params.Set(k, str)
			}
		}
	}
	for k, vs := range params {
		if len(vs) > 1 {
			return nil, errInvalidRequest("parameter " + k + " repeated")
		}
		if vs[0] == "" {
			delete(params, k)
		}
	}
	return params, nil
}

// requiredHeaders checks Config.RequireHeaders.
func (s *Server) requiredHeaders(r *http.Request) *oauthError {
	for k, want := range s.cfg.RequireHeaders {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != want {
			return errInvalidRequest("header " + http.CanonicalHeaderKey(k) + " missing, repeated or wrong")
		}
	}
	return nil
}

// authenticate checks the client with exactly the configured method
// (RFC 6749 §2.3: one method per request).
func (s *Server) authenticate(r *http.Request, params url.Values) *oauthError {
	header := r.Header.Get("Authorization")
	switch s.cfg.ClientAuth {
	case AuthBasic:
		if params.Has("client_secret") {
			return errInvalidRequest("client_secret must not be sent as a parameter: use HTTP Basic")
		}
		user, pass, ok := r.BasicAuth()
		if header == "" || !ok {
			return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication required (HTTP Basic)", basic: true}
		}
		// The id and secret are form-urlencoded before Base64 (RFC 6749 §2.3.1).
		id, err1 := url.QueryUnescape(user)
		secret, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil || !s.clientMatches(id, secret) {
			return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed", basic: true}
		}
		if params.Has("client_id") && params.Get("client_id") != id {
			return errInvalidRequest("client_id differs from the authenticated client")
		}
	case AuthBody:
		if header != "" {
			return errInvalidRequest("Authorization header not accepted: send client_id and client_secret as parameters")
		}
		if !s.clientMatches(params.Get("client_id"), params.Get("client_secret")) {
			return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed"}
		}
	}
	return nil
}

func (s *Server) clientMatches(id, secret string) bool {
	okID := subtle.ConstantTimeCompare([]byte(id), []byte(s.cfg.ClientID)) == 1
	okSecret := subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) == 1
	return okID && okSecret
}

// grantCode redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6).
// Any redemption attempt by the right client uses the code up; a second
// attempt fails and revokes the tokens issued from it (RFC 6749 §4.1.2).
func (s *Server) grantCode(params url.Values) (map[string]any, *oauthError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	logcheck.Register(params.Get("code_verifier"))
	ci, ok := s.codes[params.Get("code")]
	switch {
	case !params.Has("code"):
		return nil, errInvalidRequest("code is required")
	case !ok || ci.clientID != s.cfg.ClientID:
		return nil, errInvalidGrant("unknown code")
	case ci.used:
		s.revokeGrant(ci.grant)
		return nil, errInvalidGrant("code already used; tokens issued from it are revoked")
	}
	ci.used = true
	switch {
	case time.Now().After(ci.expires):
		return nil, errInvalidGrant("code expired")
	case ci.redirectURI != "" && params.Get("redirect_uri") != ci.redirectURI:
		// RFC 6749 §4.1.3: "identical" to the authorization request's.
		return nil, errInvalidGrant("redirect_uri differs from the authorization request")
	case ci.redirectURI == "" && params.Has("redirect_uri") && params.Get("redirect_uri") != s.cfg.RedirectURI:
		return nil, errInvalidGrant("redirect_uri is not the registered one")
	case ci.challenge == "" && params.Has("code_verifier"):
		return nil, errInvalidGrant("code_verifier sent but the authorization request had no code_challenge")
	case ci.challenge != "" && !params.Has("code_verifier"):
		return nil, errInvalidGrant("code_verifier required")
	case ci.challenge != "" && !verifierMatches(params.Get("code_verifier"), ci.challenge):
		return nil, errInvalidGrant("code_verifier does not match the code_challenge")
	}
	return s.issue(ci.scope, ci.grant, !s.cfg.NoRefreshTokens), nil
}

var verifierSyntax = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`) // RFC 7636 §4.1

func verifierMatches(verifier, challenge string) bool {
	if !verifierSyntax.MatchString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// grantRefresh refreshes an access token (RFC 6749 §6).
func (s *Server) grantRefresh(params url.Values) (map[string]any, *oauthError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !params.Has("refresh_token") {
		return nil, errInvalidRequest("refresh_token is required")
	}
	ti, ok := s.refresh[params.Get("refresh_token")]
	switch {
	case !ok || ti.clientID != s.cfg.ClientID:
		return nil, errInvalidGrant("unknown refresh token")
	case ti.rotated:
		// Replay of a rotated-out token: revoke the grant (RFC 9700 §4.14.2).
		s.revokeGrant(ti.grant)
		return nil, errInvalidGrant("refresh token already used; grant revoked")
	case !ti.usable(time.Now()):
		return nil, errInvalidGrant("refresh token revoked")
	}
	scope := ti.scope
	if params.Has(s.cfg.ScopeParam) {
		req, ok := s.parseScope(params.Get(s.cfg.ScopeParam))
		if !ok || slices.ContainsFunc(req, func(sc string) bool { return !slices.Contains(ti.scope, sc) }) {
			return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_scope", desc: "scope exceeds the original grant"}
		}
		scope = req
	}
	if s.cfg.RotateRefreshTokens {
		ti.rotated = true
	}
	resp := s.issue(scope, ti.grant, s.cfg.RotateRefreshTokens)
	if s.cfg.EchoRefreshToken {
		resp["refresh_token"] = params.Get("refresh_token")
	}
	return resp, nil
}

// grantClientCredentials issues a token to the client itself, without a
// refresh token (RFC 6749 §4.4.3).
func (s *Server) grantClientCredentials(params url.Values) (map[string]any, *oauthError) {
	scope, ok := s.parseScope(params.Get(s.cfg.ScopeParam))
	if !ok {
		return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_scope", desc: "unknown scope requested"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextGrant++
	return s.issue(s.narrow(scope), s.nextGrant, false), nil
}

// issue creates tokens for a grant (RFC 6749 §5.1); s.mu is held.
func (s *Server) issue(scope []string, grant int, withRefresh bool) map[string]any {
	now := time.Now()
	at := s.newSecret("pta_")
	ti := &tokenInfo{clientID: s.cfg.ClientID, scope: scope, grant: grant}
	if s.cfg.AccessTokenTTL > 0 {
		ti.expires = now.Add(s.cfg.AccessTokenTTL)
	}
	s.access[at] = ti
	resp := map[string]any{"access_token": at, "token_type": "Bearer"}
	if s.cfg.AccessTokenTTL > 0 {
		resp["expires_in"] = int64(s.cfg.AccessTokenTTL / time.Second)
	}
	if withRefresh {
		rt := s.newSecret("ptr_")
		s.refresh[rt] = &tokenInfo{clientID: s.cfg.ClientID, scope: scope, grant: grant}
		resp["refresh_token"] = rt
	}
	if len(scope) > 0 {
		resp["scope"] = strings.Join(scope, s.cfg.ScopeSeparator)
	}
	if s.cfg.CreatedAt {
		resp["created_at"] = now.Unix()
	}
	return resp
}

// revokeGrant revokes every token of a grant; s.mu is held.
func (s *Server) revokeGrant(grant int) {
	for _, ti := range s.access {
		if ti.grant == grant {
			ti.revoked = true
		}
	}
	for _, ti := range s.refresh {
		if ti.grant == grant {
			ti.revoked = true
		}
	}
}

func (ti *tokenInfo) usable(now time.Time) bool {
	return !ti.revoked && !ti.rotated && (ti.expires.IsZero() || now.Before(ti.expires))
}

// newSecret returns prefix + 256 random bits; s.mu is held.
func (s *Server) newSecret(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := prefix + base64.RawURLEncoding.EncodeToString(b)
	s.secrets = append(s.secrets, v)
	logcheck.Register(v)
	return v
}

// ---------------------------------------------------------------------------
// Revocation (RFC 7009) and a protected resource (RFC 6750)

// handleRevoke revokes an access or refresh token of the client; like a real
// server it answers 200 for unknown tokens too (RFC 7009 §2.2). It takes the
// token endpoint's client authentication, always as a form POST.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.failRevoke
	s.mu.Unlock()
	if down {
		http.Error(w, "<html>503 Service Unavailable</html>", http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodPost {
		errInvalidRequest("POST only").write(w)
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body, _ := io.ReadAll(r.Body)
	params, err := url.ParseQuery(string(body))
	if mt != "application/x-www-form-urlencoded" || err != nil || r.URL.RawQuery != "" {
		errInvalidRequest("form-encoded POST body required").write(w)
		return
	}
	if oerr := s.authenticate(r, params); oerr != nil {
		oerr.write(w)
		return
	}
	if !params.Has("token") || params.Get("token") == "" {
		errInvalidRequest("token is required").write(w)
		return
	}
	s.mu.Lock()
	tok := params.Get("token")
	if ti, ok := s.access[tok]; ok && ti.clientID == s.cfg.ClientID {
		ti.revoked = true
	}
	if ti, ok := s.refresh[tok]; ok && ti.clientID == s.cfg.ClientID {
		s.revokeGrant(ti.grant) // revoking a refresh token ends the grant (RFC 7009 §2.1)
	}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// handleResource answers {"client_id","scope"} to a valid bearer token in
// the Authorization header (RFC 6750 §2.1), else 401 with WWW-Authenticate
// (RFC 6750 §3).
func (s *Server) handleResource(w http.ResponseWriter, r *http.Request) {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="providertest"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	ti, ok := s.access[h[len(prefix):]]
	valid := ok && ti.usable(time.Now())
	var scope []string
	if ok {
		scope = ti.scope
	}
	s.mu.Unlock()
	if !valid {
		w.Header().Set("WWW-Authenticate", `Bearer realm="providertest", error="invalid_token", error_description="The access token is invalid"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"client_id": s.cfg.ClientID, "scope": strings.Join(scope, s.cfg.ScopeSeparator)})
}

// String helps in test failure messages.
func (r Recorded) String() string {
	return fmt.Sprintf("%s %s -> %d", r.Method, r.Path, r.Status)
}
