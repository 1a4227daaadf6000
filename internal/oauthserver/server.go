// Package oauthserver is the repository's one OAuth 2.0 authorization
// server (RFC 6749), strict like a real provider: exact redirect_uri
// matching, single-use codes bound to redirect_uri and PKCE challenge
// (RFC 7636, S256 only), exactly one client authentication method (RFC 6749
// §2.3), RFC 6749 §5.2 error responses, refresh token rotation with replay
// detection (RFC 9700 §4.14.2). Config knobs reproduce non-standard
// providers (JSON or GET token requests, created_at, echoed refresh tokens,
// required headers, restricted grant types): package seedproviders
// configures it as each seed provider documents itself.
//
// It is the "sandbox provider" of make dev (cmd/dev, through Open): the
// caller mounts Handler on its own server; with ConsentPage the
// authorization endpoint shows an HTML consent page with Approve and Deny,
// and with StateFile what it issued survives a restart. It keeps no
// credential in the clear. It has no users and no login: anyone who can
// reach it can approve any request, so it must never be deployed.
//
// Tests use it through package providertest, which runs it on an httptest
// server, records the requests and registers the credentials it sees with
// logcheck (through OpenObserved). This package imports neither testing
// nor any test support, so that the dev binary links neither.
//
// Endpoints (at the default paths the Config can change):
//
//	GET  /authorize  authorization endpoint (RFC 6749 §4.1.1)
//	POST /decide     the consent form's answer (ConsentPage only)
//	     /token      token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §6), method per Config.TokenRequest
//	POST /revoke     token revocation (RFC 7009), same client authentication as /token
//	GET  /resource   a protected resource taking "Authorization: Bearer" (RFC 6750 §2.1)
package oauthserver

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sync"
	"time"
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
	// AuthorizePath, TokenPath, RevokePath, ResourcePath and DecidePath are
	// where the endpoints are served; defaults "/authorize", "/token",
	// "/revoke", "/resource", "/decide". They must be distinct.
	AuthorizePath, TokenPath, RevokePath, ResourcePath, DecidePath string
	// ConsentPage makes the authorization endpoint show an HTML consent
	// page (Approve or Deny, posted to DecidePath) instead of approving at
	// once; Title names the provider on its pages ("Test provider — dev
	// only" if empty). The page and its form carry an opaque request id,
	// never the request's parameters.
	ConsentPage bool
	Title       string
	// StateFile is where the server keeps what it has issued (JSON,
	// written 0600, keyed by hashes of codes and tokens, never the values),
	// rewritten after every change, so that its grants survive a restart;
	// "" keeps it in memory only. One process at a time may use a file.
	StateFile string
	// Now is the clock deciding expiry; time.Now if nil.
	Now func() time.Time
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

// Server is an authorization server; its methods are safe for concurrent
// use.
type Server struct {
	cfg     Config
	now     func() time.Time
	mux     *http.ServeMux
	pageCSP string        // the consent page's Content-Security-Policy
	obs     Observer      // nil from Open
	closed  chan struct{} // closed by Close: aborts delays
	close   sync.Once

	mu            sync.Mutex
	st            state
	tokenRequests int
	windowStart   time.Time // current rate limit window
	windowCount   int
	deny          bool
	delay         time.Duration
	failRevoke    bool
	failN         int
	fail          failure
}

// Observer sees the secrets a server handles, for a test harness that
// must know them (package providertest registers them with logcheck, S22).
// Its methods are called with the server's lock held: they must not call
// the server.
type Observer interface {
	// Issued is called with every code, access token and refresh token
	// the server issues.
	Issued(v string)
	// Received is called with every secret value a client sends that the
	// server did not issue: a state, a PKCE verifier.
	Received(v string)
}

type failure struct {
	status      int
	contentType string
	body        string
	header      http.Header
}

// Open returns a server for cfg, loading cfg.StateFile if it exists, for
// the caller to serve with Handler at the origin of its own server (make
// dev). It fails if cfg is invalid, has no ClientSecret, or the state file
// cannot be read.
func Open(cfg Config) (*Server, error) {
	if cfg.ClientSecret == "" {
		return nil, errors.New("oauthserver: Open needs ClientSecret")
	}
	return open(cfg, nil)
}

// OpenObserved is Open for a test harness: cfg may lack a ClientSecret (a
// public client, or a test of what the server refuses), and obs sees every
// secret the server issues or receives.
func OpenObserved(cfg Config, obs Observer) (*Server, error) {
	return open(cfg, obs)
}

// open applies cfg's defaults, checks it and assembles the server; obs,
// if not nil, sees the secrets.
func open(cfg Config, obs Observer) (*Server, error) {
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
	cfg.Title = cmp.Or(cfg.Title, "Test provider — dev only")
	cfg.AuthorizePath = cmp.Or(cfg.AuthorizePath, "/authorize")
	cfg.TokenPath = cmp.Or(cfg.TokenPath, "/token")
	cfg.RevokePath = cmp.Or(cfg.RevokePath, "/revoke")
	cfg.ResourcePath = cmp.Or(cfg.ResourcePath, "/resource")
	cfg.DecidePath = cmp.Or(cfg.DecidePath, "/decide")
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	st, err := loadState(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, now: cfg.Now, st: st, obs: obs, closed: make(chan struct{})}
	if u, _ := url.Parse(cfg.RedirectURI); u != nil {
		s.pageCSP = pageCSP(u.Scheme + "://" + u.Host)
	}
	mux := http.NewServeMux()
	if cfg.grants(GrantAuthorizationCode) {
		mux.HandleFunc(cfg.AuthorizePath, s.handleAuthorize)
		if cfg.ConsentPage {
			// The consent form is the only state-changing browser request:
			// refuse it cross-origin (Sec-Fetch-Site / Origin).
			mux.Handle(cfg.DecidePath, http.NewCrossOriginProtection().Handler(http.HandlerFunc(s.handleDecide)))
		}
	}
	mux.HandleFunc(cfg.TokenPath, s.handleToken)
	mux.HandleFunc(cfg.RevokePath, s.handleRevoke)
	mux.HandleFunc(cfg.ResourcePath, s.handleResource)
	s.mux = mux
	return s, nil
}

// Handler serves the endpoints at their paths; mount it on the server that
// serves the redirect URI's origin, or on its own.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.mux.ServeHTTP(w, r)
	})
}

// maxBody is the largest request body the server reads (1 MiB).
const maxBody = 1 << 20

// Close makes delayed token requests (Delay) drop their connection now
// instead of waiting; the handler still serves later requests.
func (s *Server) Close() { s.close.Do(func() { close(s.closed) }) }

// Config returns the server's Config with its defaults applied: its
// endpoint paths, for one.
func (s *Server) Config() Config { return s.cfg }

// issued tells the observer, if any, about a secret the server issued.
func (s *Server) issued(v string) {
	if s.obs != nil {
		s.obs.Issued(v)
	}
}

// received tells the observer, if any, about a secret value a client sent
// (a state, a PKCE verifier).
func (s *Server) received(v string) {
	if s.obs != nil {
		s.obs.Received(v)
	}
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
	if u, err := url.Parse(cfg.RedirectURI); cfg.RedirectURI != "" && (err != nil || u.Scheme == "" || u.Host == "") {
		return fmt.Errorf("RedirectURI %q is not an absolute URL", cfg.RedirectURI)
	}
	if cfg.ConsentPage && !cfg.grants(GrantAuthorizationCode) {
		return fmt.Errorf("ConsentPage needs the authorization_code grant")
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
	paths := []string{cfg.AuthorizePath, cfg.TokenPath, cfg.RevokePath, cfg.ResourcePath, cfg.DecidePath}
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

// Deny makes the authorization endpoint answer as if the user clicked Deny
// (error=access_denied, RFC 6749 §4.1.2.1), until Deny(false). A consent
// page lets the user choose instead.
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
// The wait ends early when the client goes away or the server is closed.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
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
	_, ok := s.st.Access[hash(access)]
	return ok
}

// Valid reports whether access is an issued access token that is neither
// revoked nor expired.
func (s *Server) Valid(access string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ti, ok := s.st.Access[hash(access)]
	return ok && ti.usable(s.now())
}

// ValidRefresh reports whether rt is an issued refresh token that may still be
// used.
func (s *Server) ValidRefresh(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ti, ok := s.st.Refresh[hash(rt)]
	return ok && ti.usable(s.now())
}

// RevokeRefresh revokes a refresh token, as a user disconnecting the app on
// the provider's side or an expiry would: its next use gets invalid_grant.
func (s *Server) RevokeRefresh(rt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ti, ok := s.st.Refresh[hash(rt)]; ok {
		ti.end(s.now(), false)
	}
	_ = s.save() // a test's server keeps no file
}

// RevokeAccess revokes an access token: the resource endpoint rejects it.
func (s *Server) RevokeAccess(access string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ti, ok := s.st.Access[hash(access)]; ok {
		ti.end(s.now(), false)
	}
	_ = s.save()
}

// IssueGrant creates a new grant for the registered client, as a completed
// authorization code flow would, and returns its access and refresh
// tokens: for tests that need many connections without a browser flow.
func (s *Server) IssueGrant(scope ...string) (access, refresh string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := s.issue(scope, s.newGrant(), true)
	_ = s.save()
	return resp["access_token"].(string), resp["refresh_token"].(string)
}
