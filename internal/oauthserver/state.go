package oauthserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// keepFor is how long what has ended (expired, rotated out, revoked) is
// remembered: a rotated refresh token or a used code presented within it
// is recognised as reused, and revokes its grant.
const keepFor = 24 * time.Hour

// state is everything the server has handed out and must remember, as it
// is kept in memory and in Config.StateFile. Every map is keyed by the
// hash of the value it was handed out under (the consent request id, the
// code, the token), so neither memory nor the file holds a usable code or
// token; an open consent request keeps the client's state value, to send
// back.
type state struct {
	Requests  map[string]*consentRequest `json:"requests"` // open consent pages
	Codes     map[string]*codeInfo       `json:"codes"`
	Access    map[string]*tokenInfo      `json:"access_tokens"`
	Refresh   map[string]*tokenInfo      `json:"refresh_tokens"` // current, rotated out and revoked
	NextGrant int                        `json:"next_grant"`
}

// consentRequest is an authorization request waiting for the user's
// decision on the consent page.
type consentRequest struct {
	State       string    `json:"state"`
	RedirectURI string    `json:"redirect_uri,omitempty"` // as sent; "" if omitted
	Scope       []string  `json:"scope"`
	Challenge   string    `json:"code_challenge,omitempty"`
	Expires     time.Time `json:"expires"`
}

type codeInfo struct {
	RedirectURI string    `json:"redirect_uri,omitempty"` // as sent in the authorization request; "" if omitted
	Scope       []string  `json:"scope"`
	Challenge   string    `json:"code_challenge,omitempty"`
	Expires     time.Time `json:"expires"`
	Used        bool      `json:"used,omitempty"`
	Grant       int       `json:"grant"`
}

type tokenInfo struct {
	Scope   []string  `json:"scope"`
	Grant   int       `json:"grant"`
	Expires time.Time `json:"expires,omitzero"` // zero: never
	Revoked bool      `json:"revoked,omitempty"`
	Rotated bool      `json:"rotated,omitempty"` // refresh token replaced by rotation
	Ended   time.Time `json:"ended,omitzero"`    // when revoked or rotated out
}

func (ti *tokenInfo) usable(now time.Time) bool {
	return !ti.Revoked && !ti.Rotated && (ti.Expires.IsZero() || now.Before(ti.Expires))
}

// end revokes ti, or with rotated marks it rotated out, at now.
func (ti *tokenInfo) end(now time.Time, rotated bool) {
	if rotated {
		ti.Rotated = true
	} else {
		ti.Revoked = true
	}
	if ti.Ended.IsZero() {
		ti.Ended = now
	}
}

// ended is when ti stopped being usable; zero while it still may be.
func (ti *tokenInfo) ended() time.Time {
	if !ti.Ended.IsZero() {
		return ti.Ended
	}
	return ti.Expires
}

// loadState reads what is kept at path; an empty path or a missing file
// is nothing issued yet.
func loadState(path string) (state, error) {
	st := state{}
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return state{}, fmt.Errorf("oauthserver: %w", err)
		default:
			if err := json.Unmarshal(data, &st); err != nil {
				return state{}, fmt.Errorf("oauthserver: %s: %w (delete it to start afresh)", path, err)
			}
		}
	}
	if st.Requests == nil {
		st.Requests = map[string]*consentRequest{}
	}
	if st.Codes == nil {
		st.Codes = map[string]*codeInfo{}
	}
	if st.Access == nil {
		st.Access = map[string]*tokenInfo{}
	}
	if st.Refresh == nil {
		st.Refresh = map[string]*tokenInfo{}
	}
	return st, nil
}

// save writes the state to the state file, if any, atomically: a new file
// (0600) renamed over the old one. s.mu is held.
func (s *Server) save() error {
	path := s.cfg.StateFile
	if path == "" {
		return nil
	}
	data, err := json.Marshal(s.st)
	if err != nil {
		return fmt.Errorf("oauthserver: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("oauthserver: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)    // CreateTemp made it 0600
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("oauthserver: save: %w", err)
	}
	return nil
}

// prune forgets what ended more than keepFor ago, so that a long-lived
// state file does not grow without bound. s.mu is held.
func (s *Server) prune(now time.Time) {
	gone := func(t time.Time) bool { return !t.IsZero() && now.Sub(t) > keepFor }
	for k, r := range s.st.Requests {
		if !now.Before(r.Expires) {
			delete(s.st.Requests, k)
		}
	}
	for k, c := range s.st.Codes {
		if gone(c.Expires) {
			delete(s.st.Codes, k)
		}
	}
	for _, m := range []map[string]*tokenInfo{s.st.Access, s.st.Refresh} {
		for k, ti := range m {
			if gone(ti.ended()) {
				delete(m, k)
			}
		}
	}
}

// newGrant numbers a new grant; s.mu is held.
func (s *Server) newGrant() int {
	s.st.NextGrant++
	return s.st.NextGrant
}

// newSecret returns prefix + 256 random bits; s.mu is held.
func (s *Server) newSecret(prefix string) string {
	v := prefix + randomString()
	s.issued(v)
	return v
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hash keys the maps, so a memory dump or the state file holds no usable
// credential.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
