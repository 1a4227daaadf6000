package oauthserver

import (
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

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
	now := s.now()
	s.mu.Lock()
	tok := hash(params.Get("token"))
	if ti, ok := s.st.Access[tok]; ok {
		ti.end(now, false)
	}
	if ti, ok := s.st.Refresh[tok]; ok {
		s.revokeGrant(ti.Grant, now) // revoking a refresh token ends the grant (RFC 7009 §2.1)
	}
	err = s.save()
	s.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "the provider cannot save its state"})
		return
	}
	noStore(w.Header())
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
	ti, ok := s.st.Access[hash(h[len(prefix):])]
	valid := ok && ti.usable(s.now())
	var scope []string
	if ok {
		scope = ti.Scope
	}
	s.mu.Unlock()
	if !valid {
		w.Header().Set("WWW-Authenticate", `Bearer realm="providertest", error="invalid_token", error_description="The access token is invalid"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"client_id": s.cfg.ClientID, "scope": strings.Join(scope, s.cfg.ScopeSeparator)})
}
