// Package sandbox is a DEVELOPMENT-ONLY OAuth 2.0 authorization server.
//
// DO NOT DEPLOY IT. It has no users and no login: anyone who can reach it
// can approve any request. It exists so that `make dev`
// (cmd/dev) can show the whole connect flow — consent, callback, token
// exchange, scheduled refresh — on a laptop without an account at any
// real provider.
//
// It implements the subset of RFC 6749 the broker uses, strictly:
//
//   - GET /sandbox/authorize: response_type=code only, one registered
//     client and redirect_uri (exact match), state required, PKCE S256
//     required (RFC 7636; "plain" is refused). It renders a consent page
//     whose form carries an opaque server-side request id, never the
//     request's parameters.
//   - POST /sandbox/decide: Approve redirects with code and state; Deny
//     with error=access_denied and state.
//   - POST /sandbox/token: HTTP Basic client authentication (RFC 6749
//     §2.3.1, form-decoded), the authorization_code grant (code single-use,
//     valid 5 minutes, bound to redirect_uri and the PKCE challenge; a
//     reused code revokes what it issued, §4.1.2) and the refresh_token
//     grant with rotation (a new refresh token each time; presenting a
//     rotated one revokes the grant, RFC 9700 §4.14.2). Errors are RFC 6749
//     §5.2 JSON; every response is Cache-Control: no-store.
//   - GET /sandbox/userinfo: a protected resource answering a fixed,
//     fictional user for a valid bearer access token (RFC 6750).
//
// What it has issued is kept in memory and, with Config.StateFile, in a
// file rewritten after every change (make dev keeps it in its data
// directory), so grants survive a restart. Without the file, or with the
// file deleted, a restart forgets every issued token, and stored
// connections fail their next refresh with invalid_grant — a realistic
// way to see needs_reauth.
package sandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Lifetimes.
const (
	// DefaultAccessTokenTTL is short so that the refresh schedule is
	// visible within a couple of minutes of connecting.
	DefaultAccessTokenTTL = 2 * time.Minute
	// CodeTTL is how long an authorization code may be redeemed
	// (RFC 6749 §4.1.2 recommends at most 10 minutes).
	CodeTTL = 5 * time.Minute
	// RequestTTL is how long a consent page may stay open.
	RequestTTL = 10 * time.Minute
)

// DefaultScope is granted when an authorization request names no scope.
const DefaultScope = "profile"

const (
	maxBodyBytes   = 64 << 10
	maxStateLen    = 1024
	maxScopes      = 16
	rotatedKeepFor = 24 * time.Hour // reuse detection window
)

// Config configures the sandbox's single registered client.
type Config struct {
	// ClientID and ClientSecret are the client's credentials.
	ClientID     string
	ClientSecret string
	// RedirectURI is the one registered redirect URI; authorization
	// requests must carry it exactly.
	RedirectURI string
	// AccessTokenTTL is the access token lifetime; DefaultAccessTokenTTL
	// if zero.
	AccessTokenTTL time.Duration
	// StateFile is where the sandbox keeps what it has issued (JSON,
	// written 0600, holding hashes of codes and tokens, never the values),
	// so that its grants survive a restart; "" keeps it in memory only.
	// One process at a time may use a file.
	StateFile string
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Server is the sandbox authorization server. It is safe for concurrent
// use.
type Server struct {
	cfg     Config
	app     string // shown on the consent page: the redirect URI's host
	pageCSP string
	mux     *http.ServeMux

	mu     sync.Mutex
	issued issued
}

// New returns a sandbox for cfg, loading cfg.StateFile if it exists. It
// fails if ClientID, ClientSecret or RedirectURI is empty, RedirectURI is
// not an absolute URL, or the state file cannot be read.
func New(cfg Config) (*Server, error) {
	u, err := url.Parse(cfg.RedirectURI)
	if cfg.ClientID == "" || cfg.ClientSecret == "" || err != nil || u.Scheme == "" || u.Host == "" {
		return nil, errors.New("sandbox: New needs ClientID, ClientSecret and an absolute RedirectURI")
	}
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	issued, err := loadIssued(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		app:     u.Host,
		pageCSP: pageCSP(u.Scheme + "://" + u.Host),
		issued:  issued,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sandbox/{$}", s.index)
	mux.HandleFunc("GET /sandbox/authorize", s.authorize)
	// The consent form is the only state-changing browser request: refuse
	// it cross-origin (Sec-Fetch-Site / Origin).
	mux.Handle("POST /sandbox/decide", http.NewCrossOriginProtection().Handler(http.HandlerFunc(s.decide)))
	mux.HandleFunc("POST /sandbox/token", s.token)
	mux.HandleFunc("GET /sandbox/userinfo", s.userinfo)
	s.mux = mux
	return s, nil
}

// Handler returns the sandbox's HTTP handler. Its routes all live under
// /sandbox/; mount it there on the server that also serves the
// redirect URI's origin, or on its own.
func (s *Server) Handler() http.Handler { return s.mux }

// index explains what this is.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	s.page(w, http.StatusOK, pageData{Title: "Sandbox provider — dev only",
		Message: "This is a fake OAuth 2.0 provider for local development. Start a connection from the application."})
}

// authorize handles the authorization request (RFC 6749 §4.1.1). Errors
// about the client or the redirect URI are shown here and never
// redirected (§4.1.2.1); every other error goes back to the client.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "The authorization request is malformed.")
		return
	}
	if len(q["client_id"]) != 1 || !equal(q.Get("client_id"), s.cfg.ClientID) {
		s.errorPage(w, http.StatusBadRequest, "Unknown client_id.")
		return
	}
	if len(q["redirect_uri"]) != 1 || q.Get("redirect_uri") != s.cfg.RedirectURI {
		s.errorPage(w, http.StatusBadRequest, "The redirect_uri does not exactly match the registered one.")
		return
	}
	state := q.Get("state")
	if len(q["state"]) > 1 {
		state = ""
	}
	fail := func(code, description string) {
		v := url.Values{"error": {code}, "error_description": {description}}
		if state != "" {
			v.Set("state", state)
		}
		s.redirect(w, r, v)
	}
	for k, v := range q {
		if len(v) != 1 { // RFC 6749 §3.1
			fail("invalid_request", "parameter "+k+" is repeated")
			return
		}
	}
	switch {
	case q.Get("response_type") == "":
		fail("invalid_request", "response_type is required")
		return
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case state == "" || len(state) > maxStateLen:
		fail("invalid_request", "state is required")
		return
	case q.Get("code_challenge") == "":
		fail("invalid_request", "PKCE is required: send code_challenge and code_challenge_method=S256")
		return
	case q.Get("code_challenge_method") != "S256": // absent means plain (RFC 7636 §4.3)
		fail("invalid_request", "code_challenge_method must be S256; plain is not accepted")
		return
	case !validChallenge(q.Get("code_challenge")):
		fail("invalid_request", "code_challenge is not a base64url SHA-256")
		return
	}
	scopes, ok := parseScope(q.Get("scope"))
	if !ok {
		fail("invalid_scope", "scope is malformed")
		return
	}
	id := randomToken("")
	now := s.cfg.Now()
	s.mu.Lock()
	s.prune(now)
	s.issued.Requests[hash(id)] = &authRequest{State: state, Scope: strings.Join(scopes, " "), Challenge: q.Get("code_challenge"), Expires: now.Add(RequestTTL)}
	err = s.save()
	s.mu.Unlock()
	if err != nil {
		s.errorPage(w, http.StatusInternalServerError, "The sandbox cannot save its state; see its state file.")
		return
	}
	s.page(w, http.StatusOK, pageData{Title: "Sandbox provider — dev only", App: s.app, ClientID: s.cfg.ClientID, Scopes: scopes, RequestID: id})
}

// decide handles the consent form.
func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "The form is malformed.")
		return
	}
	decision := r.PostForm.Get("decision")
	if decision != "approve" && decision != "deny" {
		s.errorPage(w, http.StatusBadRequest, "Choose Approve or Deny.")
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	id := hash(r.PostForm.Get("request"))
	req, ok := s.issued.Requests[id]
	delete(s.issued.Requests, id) // one decision per request
	if !ok || !now.Before(req.Expires) {
		s.mu.Unlock()
		s.errorPage(w, http.StatusBadRequest, "This authorization request is unknown, expired or already decided. Start again from the application.")
		return
	}
	params := url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}, "state": {req.State}}
	if decision == "approve" {
		code := randomToken("sandbox_code_")
		s.issued.Codes[hash(code)] = &authCode{
			Grant:       randomToken(""),
			Scope:       req.Scope,
			Challenge:   req.Challenge,
			RedirectURI: s.cfg.RedirectURI,
			Expires:     now.Add(CodeTTL),
		}
		params = url.Values{"code": {code}, "state": {req.State}}
	}
	err := s.save()
	s.mu.Unlock()
	if err != nil {
		s.errorPage(w, http.StatusInternalServerError, "The sandbox cannot save its state; see its state file.")
		return
	}
	s.redirect(w, r, params)
}

// redirect sends the browser to the registered redirect URI with params.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, params url.Values) {
	u, _ := url.Parse(s.cfg.RedirectURI) // checked in New
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	noStore(w.Header())
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// token handles the token endpoint (RFC 6749 §3.2, §4.1.3, §6).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	form, status, code, desc := s.tokenRequest(w, r)
	if code != "" {
		tokenError(w, status, code, desc)
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	s.prune(now)
	var a answer
	switch form.Get("grant_type") {
	case "authorization_code":
		a = s.exchange(form, now)
	case "refresh_token":
		a = s.rotate(form, now)
	case "":
		a = oauthError(http.StatusBadRequest, "invalid_request", "grant_type is required")
	default:
		a = oauthError(http.StatusBadRequest, "unsupported_grant_type", "only authorization_code and refresh_token are supported")
	}
	// Saved before answering, so no client holds a token that the
	// sandbox would forget in a restart.
	err := s.save()
	s.mu.Unlock()
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", "the sandbox cannot save its state")
		return
	}
	writeJSON(w, a.status, a.body)
}

// answer is a token endpoint response to write once the state is saved.
type answer struct {
	status int
	body   any
}

// oauthError is an RFC 6749 §5.2 error answer. description is fixed text.
func oauthError(status int, code, description string) answer {
	return answer{status, map[string]string{"error": code, "error_description": description}}
}

// tokenRequest parses the form body and authenticates the client. A
// non-empty code is an RFC 6749 §5.2 error to answer with.
func (s *Server) tokenRequest(w http.ResponseWriter, r *http.Request) (form url.Values, status int, code, desc string) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return nil, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded"
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return nil, http.StatusBadRequest, "invalid_request", "the body is malformed"
	}
	form = r.PostForm // the body only: parameters in the query are ignored
	for _, v := range form {
		if len(v) != 1 {
			return nil, http.StatusBadRequest, "invalid_request", "a parameter is repeated"
		}
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="sandbox"`)
		return nil, http.StatusUnauthorized, "invalid_client", "client authentication with HTTP Basic is required"
	}
	if form.Has("client_secret") {
		return nil, http.StatusBadRequest, "invalid_request", "use one client authentication method only"
	}
	// RFC 6749 §2.3.1: both are form-encoded before Basic encoding.
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	idOK := equal(id, s.cfg.ClientID)
	secretOK := equal(secret, s.cfg.ClientSecret)
	if err1 != nil || err2 != nil || !idOK || !secretOK || form.Has("client_id") && form.Get("client_id") != id {
		w.Header().Set("WWW-Authenticate", `Basic realm="sandbox"`)
		return nil, http.StatusUnauthorized, "invalid_client", "client authentication failed"
	}
	return form, 0, "", ""
}

// exchange redeems an authorization code. s.mu is held.
func (s *Server) exchange(form url.Values, now time.Time) answer {
	code := form.Get("code")
	if code == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "code is required")
	}
	c, ok := s.issued.Codes[hash(code)]
	switch {
	case !ok || !now.Before(c.Expires):
		return oauthError(http.StatusBadRequest, "invalid_grant", "the code is invalid or expired")
	case c.Used:
		// RFC 6749 §4.1.2: a code used twice revokes what it issued.
		s.revoke(c.Grant)
		return oauthError(http.StatusBadRequest, "invalid_grant", "the code was already used; the tokens issued for it are revoked")
	}
	c.Used = true // every attempt uses the code up, right or wrong
	switch verifier := form.Get("code_verifier"); {
	case form.Get("redirect_uri") != c.RedirectURI:
		return oauthError(http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
	case verifier == "":
		return oauthError(http.StatusBadRequest, "invalid_grant", "code_verifier is required")
	case !validVerifier(verifier) || subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(c.Challenge)) != 1:
		return oauthError(http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
	}
	return s.issue(c.Grant, c.Scope, now)
}

// rotate redeems a refresh token and rotates it. s.mu is held.
func (s *Server) rotate(form url.Values, now time.Time) answer {
	rt := form.Get("refresh_token")
	if rt == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "refresh_token is required")
	}
	t, ok := s.issued.Refresh[hash(rt)]
	switch {
	case !ok:
		return oauthError(http.StatusBadRequest, "invalid_grant", "the refresh token is invalid or revoked")
	case !t.RotatedAt.IsZero():
		// A rotated token came back: one of its holders is not the client.
		// Revoke the whole grant (RFC 9700 §4.14.2).
		s.revoke(t.Grant)
		return oauthError(http.StatusBadRequest, "invalid_grant", "the refresh token was already used; the grant is revoked")
	}
	scope := t.Scope
	if form.Has("scope") { // §6: may narrow, never widen
		requested, ok := parseScope(form.Get("scope"))
		if !ok || !subset(requested, strings.Fields(t.Scope)) {
			return oauthError(http.StatusBadRequest, "invalid_scope", "the scope exceeds the one originally granted")
		}
		scope = strings.Join(requested, " ")
	}
	t.RotatedAt = now
	return s.issue(t.Grant, scope, now)
}

// issue mints an access token and a refresh token for grant. s.mu is held.
func (s *Server) issue(grant, scope string, now time.Time) answer {
	at, rt := randomToken("sandbox_at_"), randomToken("sandbox_rt_")
	s.issued.Access[hash(at)] = &accessToken{Grant: grant, Scope: scope, Expires: now.Add(s.cfg.AccessTokenTTL)}
	s.issued.Refresh[hash(rt)] = &refreshToken{Grant: grant, Scope: scope}
	return answer{http.StatusOK, map[string]any{
		"access_token":  at,
		"token_type":    "Bearer",
		"expires_in":    int64(s.cfg.AccessTokenTTL / time.Second),
		"refresh_token": rt,
		"scope":         scope,
	}}
}

// revoke forgets every token of grant. s.mu is held.
func (s *Server) revoke(grant string) {
	for k, t := range s.issued.Access {
		if t.Grant == grant {
			delete(s.issued.Access, k)
		}
	}
	for k, t := range s.issued.Refresh {
		if t.Grant == grant {
			delete(s.issued.Refresh, k)
		}
	}
}

// prune drops what has expired. s.mu is held.
func (s *Server) prune(now time.Time) {
	for k, r := range s.issued.Requests {
		if !now.Before(r.Expires) {
			delete(s.issued.Requests, k)
		}
	}
	for k, c := range s.issued.Codes {
		if !now.Before(c.Expires) {
			delete(s.issued.Codes, k)
		}
	}
	for k, t := range s.issued.Access {
		if !now.Before(t.Expires) {
			delete(s.issued.Access, k)
		}
	}
	for k, t := range s.issued.Refresh {
		if !t.RotatedAt.IsZero() && now.Sub(t.RotatedAt) > rotatedKeepFor {
			delete(s.issued.Refresh, k)
		}
	}
}

// userinfo is a protected resource (RFC 6750 §2.1, header only).
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	now := s.cfg.Now()
	s.mu.Lock()
	t, ok := s.issued.Access[hash(tok)]
	valid := ok && strings.EqualFold(scheme, "Bearer") && now.Before(t.Expires)
	var scope string
	if valid {
		scope = t.Scope
	}
	s.mu.Unlock()
	if !valid {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox", error="invalid_token"`)
		tokenError(w, http.StatusUnauthorized, "invalid_token", "the access token is missing, invalid or expired")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"sub": "sandbox-user", "name": "Sandbox User", "scope": scope})
}

// parseScope splits a scope parameter (RFC 6749 §3.3); empty means
// DefaultScope.
func parseScope(raw string) ([]string, bool) {
	if raw == "" {
		return []string{DefaultScope}, true
	}
	parts := strings.Split(raw, " ")
	if len(parts) > maxScopes {
		return nil, false
	}
	for _, p := range parts {
		if p == "" || len(p) > 128 {
			return nil, false
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
				return nil, false
			}
		}
	}
	return parts, true
}

func subset(a, b []string) bool {
	for _, x := range a {
		found := false
		for _, y := range b {
			found = found || x == y
		}
		if !found {
			return false
		}
	}
	return true
}

// validChallenge reports whether c is an S256 challenge: the unpadded
// base64url encoding of 32 bytes.
func validChallenge(c string) bool {
	b, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil && len(b) == sha256.Size
}

// validVerifier checks RFC 7636 §4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// equal compares in constant time (for equal-length hashes).
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// hash keys the maps, so a memory dump or the state file holds no usable
// credential.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// randomToken returns prefix and 256 random bits, base64url.
func randomToken(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}
