package oauthserver

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Authorization endpoint (RFC 6749 §4.1.1–4.1.2)

var challengeSyntax = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`) // BASE64URL(SHA256) without padding

const (
	// maxStateLen bounds the state a client may send (and a consent request
	// keeps).
	maxStateLen = 1024
	// ConsentTTL is how long a consent page may stay open.
	ConsentTTL = 10 * time.Minute
)

// handleAuthorize checks an authorization request. Errors about the client
// or the redirect URI are answered here and never redirected (RFC 6749
// §4.1.2.1, §10.15); every other error goes back to the client. A valid
// request is approved at once (or denied, see Deny), or with ConsentPage
// shown to the user.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	noStore(w.Header())
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		s.refuse(w, http.StatusMethodNotAllowed, "The authorization endpoint takes GET only.")
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.refuse(w, http.StatusBadRequest, "The authorization request is malformed.")
		return
	}
	if len(q["client_id"]) != 1 || q.Get("client_id") != s.cfg.ClientID {
		s.refuse(w, http.StatusBadRequest, "Unknown or repeated client_id.")
		return
	}
	omitted := len(q["redirect_uri"]) == 0 && s.cfg.RedirectURIOptional
	if !omitted && (len(q["redirect_uri"]) != 1 || q.Get("redirect_uri") != s.cfg.RedirectURI) {
		s.refuse(w, http.StatusBadRequest, "The redirect_uri is missing, repeated or not exactly the registered one.")
		return
	}
	state := q.Get("state")
	if len(q["state"]) > 1 || len(state) > maxStateLen {
		state = "" // not sent back
	}
	s.received(state)
	fail := func(code, desc string) {
		s.redirect(w, r, url.Values{"error": {code}, "error_description": {desc}}, state)
	}

	for k, vs := range q {
		if len(vs) > 1 { // RFC 6749 §3.1
			fail("invalid_request", "parameter "+k+" repeated")
			return
		}
	}
	switch q.Get("response_type") {
	case "code":
	case "":
		fail("invalid_request", "response_type is required")
		return
	default: // RFC 9700 §2.1.2: no implicit grant
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
	scope = s.narrow(scope)

	now := s.now()
	s.mu.Lock()
	s.prune(now)
	if s.cfg.ConsentPage {
		id := randomString()
		s.st.Requests[hash(id)] = &consentRequest{State: state, RedirectURI: q.Get("redirect_uri"), Scope: scope, Challenge: challenge, Expires: now.Add(ConsentTTL)}
		err := s.save()
		s.mu.Unlock()
		if err != nil {
			s.refuse(w, http.StatusInternalServerError, "The provider cannot save its state; see its state file.")
			return
		}
		s.page(w, http.StatusOK, pageData{Title: s.cfg.Title, App: s.app(), ClientID: s.cfg.ClientID, Scopes: scope, RequestID: id, Action: s.cfg.DecidePath})
		return
	}
	if s.deny {
		s.mu.Unlock()
		fail("access_denied", "The user denied the request")
		return
	}
	code := s.newCode(q.Get("redirect_uri"), scope, challenge, now)
	err = s.save()
	s.mu.Unlock()
	if err != nil {
		s.refuse(w, http.StatusInternalServerError, "The provider cannot save its state; see its state file.")
		return
	}
	s.redirect(w, r, url.Values{"code": {code}}, state)
}

// handleDecide takes the consent page's answer: Approve redirects with a
// code, Deny with error=access_denied (RFC 6749 §4.1.2.1); each request is
// decided once.
func (s *Server) handleDecide(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.refuse(w, http.StatusMethodNotAllowed, "The consent form is posted.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.refuse(w, http.StatusBadRequest, "The form is malformed.")
		return
	}
	decision := r.PostForm.Get("decision")
	if decision != "approve" && decision != "deny" {
		s.refuse(w, http.StatusBadRequest, "Choose Approve or Deny.")
		return
	}
	now := s.now()
	s.mu.Lock()
	id := hash(r.PostForm.Get("request"))
	req, ok := s.st.Requests[id]
	delete(s.st.Requests, id) // one decision per request
	if !ok || !now.Before(req.Expires) {
		s.mu.Unlock()
		s.refuse(w, http.StatusBadRequest, "This authorization request is unknown, expired or already decided. Start again from the application.")
		return
	}
	params := url.Values{"error": {"access_denied"}, "error_description": {"The user denied the request"}}
	if decision == "approve" {
		params = url.Values{"code": {s.newCode(req.RedirectURI, req.Scope, req.Challenge, now)}}
	}
	err := s.save()
	s.mu.Unlock()
	if err != nil {
		s.refuse(w, http.StatusInternalServerError, "The provider cannot save its state; see its state file.")
		return
	}
	s.redirect(w, r, params, req.State)
}

// newCode issues an authorization code for a new grant; s.mu is held.
func (s *Server) newCode(redirectURI string, scope []string, challenge string, now time.Time) string {
	code := s.newSecret("ptc_")
	s.st.Codes[hash(code)] = &codeInfo{
		RedirectURI: redirectURI,
		Scope:       scope,
		Challenge:   challenge,
		Expires:     now.Add(s.cfg.CodeTTL),
		Grant:       s.newGrant(),
	}
	return code
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
	noStore(w.Header())
	w.Header().Set("Referrer-Policy", "no-referrer") // the code is in the URL
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
