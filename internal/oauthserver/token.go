package oauthserver

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Token endpoint (RFC 6749 §3.2)

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
	w.Header().Set("X-Content-Type-Options", "nosniff")
	noStore(w.Header()) // RFC 6749 §5.1
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
	retryAfter := s.rateLimited(s.now())
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
		case <-s.closed:
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
	now := s.now()
	s.mu.Lock()
	s.prune(now)
	var resp map[string]any
	switch {
	case grant == "":
		oerr = errInvalidRequest("grant_type is required")
	case !s.cfg.grants(grant):
		oerr = unsupported
	case grant == GrantAuthorizationCode:
		resp, oerr = s.grantCode(params, now)
	case grant == GrantRefreshToken:
		resp, oerr = s.grantRefresh(params, now)
	case grant == GrantClientCredentials:
		resp, oerr = s.grantClientCredentials(params)
	default:
		oerr = unsupported
	}
	// Saved before answering, so that no client holds a token the server
	// would forget in a restart.
	if err := s.save(); err != nil && oerr == nil {
		oerr = &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "the provider cannot save its state"}
	}
	s.mu.Unlock()
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
// s.mu is held.
func (s *Server) grantCode(params url.Values, now time.Time) (map[string]any, *oauthError) {
	s.received(params.Get("code_verifier"))
	ci, ok := s.st.Codes[hash(params.Get("code"))]
	switch {
	case !params.Has("code"):
		return nil, errInvalidRequest("code is required")
	case !ok:
		return nil, errInvalidGrant("unknown code")
	case ci.Used:
		s.revokeGrant(ci.Grant, now)
		return nil, errInvalidGrant("code already used; tokens issued from it are revoked")
	}
	ci.Used = true
	switch {
	case !now.Before(ci.Expires):
		return nil, errInvalidGrant("code expired")
	case ci.RedirectURI != "" && params.Get("redirect_uri") != ci.RedirectURI:
		// RFC 6749 §4.1.3: "identical" to the authorization request's.
		return nil, errInvalidGrant("redirect_uri differs from the authorization request")
	case ci.RedirectURI == "" && params.Has("redirect_uri") && params.Get("redirect_uri") != s.cfg.RedirectURI:
		return nil, errInvalidGrant("redirect_uri is not the registered one")
	case ci.Challenge == "" && params.Has("code_verifier"):
		return nil, errInvalidGrant("code_verifier sent but the authorization request had no code_challenge")
	case ci.Challenge != "" && !params.Has("code_verifier"):
		return nil, errInvalidGrant("code_verifier required")
	case ci.Challenge != "" && !verifierMatches(params.Get("code_verifier"), ci.Challenge):
		return nil, errInvalidGrant("code_verifier does not match the code_challenge")
	}
	return s.issue(ci.Scope, ci.Grant, !s.cfg.NoRefreshTokens), nil
}

var verifierSyntax = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`) // RFC 7636 §4.1

func verifierMatches(verifier, challenge string) bool {
	if !verifierSyntax.MatchString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// grantRefresh refreshes an access token (RFC 6749 §6); s.mu is held.
func (s *Server) grantRefresh(params url.Values, now time.Time) (map[string]any, *oauthError) {
	if !params.Has("refresh_token") {
		return nil, errInvalidRequest("refresh_token is required")
	}
	ti, ok := s.st.Refresh[hash(params.Get("refresh_token"))]
	switch {
	case !ok:
		return nil, errInvalidGrant("unknown refresh token")
	case ti.Rotated:
		// Replay of a rotated-out token: revoke the grant (RFC 9700 §4.14.2).
		s.revokeGrant(ti.Grant, now)
		return nil, errInvalidGrant("refresh token already used; grant revoked")
	case !ti.usable(now):
		return nil, errInvalidGrant("refresh token revoked")
	}
	scope := ti.Scope
	if params.Has(s.cfg.ScopeParam) { // may narrow, never widen
		req, ok := s.parseScope(params.Get(s.cfg.ScopeParam))
		if !ok || slices.ContainsFunc(req, func(sc string) bool { return !slices.Contains(ti.Scope, sc) }) {
			return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_scope", desc: "scope exceeds the original grant"}
		}
		scope = req
	}
	if s.cfg.RotateRefreshTokens {
		ti.end(now, true)
	}
	resp := s.issue(scope, ti.Grant, s.cfg.RotateRefreshTokens)
	if s.cfg.EchoRefreshToken {
		resp["refresh_token"] = params.Get("refresh_token")
	}
	return resp, nil
}

// grantClientCredentials issues a token to the client itself, without a
// refresh token (RFC 6749 §4.4.3); s.mu is held.
func (s *Server) grantClientCredentials(params url.Values) (map[string]any, *oauthError) {
	scope, ok := s.parseScope(params.Get(s.cfg.ScopeParam))
	if !ok {
		return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_scope", desc: "unknown scope requested"}
	}
	return s.issue(s.narrow(scope), s.newGrant(), false), nil
}

// issue creates tokens for a grant (RFC 6749 §5.1); s.mu is held.
func (s *Server) issue(scope []string, grant int, withRefresh bool) map[string]any {
	now := s.now()
	at := s.newSecret("pta_")
	ti := &tokenInfo{Scope: scope, Grant: grant}
	if s.cfg.AccessTokenTTL > 0 {
		ti.Expires = now.Add(s.cfg.AccessTokenTTL)
	}
	s.st.Access[hash(at)] = ti
	resp := map[string]any{"access_token": at, "token_type": "Bearer"}
	if s.cfg.AccessTokenTTL > 0 {
		resp["expires_in"] = int64(s.cfg.AccessTokenTTL / time.Second)
	}
	if withRefresh {
		rt := s.newSecret("ptr_")
		s.st.Refresh[hash(rt)] = &tokenInfo{Scope: scope, Grant: grant}
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
func (s *Server) revokeGrant(grant int, now time.Time) {
	for _, m := range []map[string]*tokenInfo{s.st.Access, s.st.Refresh} {
		for _, ti := range m {
			if ti.Grant == grant {
				ti.end(now, false)
			}
		}
	}
}
