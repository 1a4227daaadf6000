package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// issued is everything the sandbox has handed out and must remember, as
// it is kept in memory and in Config.StateFile. Every map is keyed by the
// hash of the value it was handed out under (the request id, the code,
// the token), so neither memory nor the file holds a usable code or
// token; an open request keeps the client's state value, to send back.
type issued struct {
	Requests map[string]*authRequest  `json:"requests"`       // open consent pages
	Codes    map[string]*authCode     `json:"codes"`          // authorization codes
	Refresh  map[string]*refreshToken `json:"refresh_tokens"` // current and recently rotated
	Access   map[string]*accessToken  `json:"access_tokens"`
}

type authRequest struct {
	State     string    `json:"state"`
	Scope     string    `json:"scope"`
	Challenge string    `json:"code_challenge"`
	Expires   time.Time `json:"expires"`
}

type authCode struct {
	Grant       string    `json:"grant"`
	Scope       string    `json:"scope"`
	Challenge   string    `json:"code_challenge"`
	RedirectURI string    `json:"redirect_uri"`
	Expires     time.Time `json:"expires"`
	Used        bool      `json:"used,omitempty"`
}

type refreshToken struct {
	Grant     string    `json:"grant"`
	Scope     string    `json:"scope"`
	RotatedAt time.Time `json:"rotated_at,omitzero"` // zero while current
}

type accessToken struct {
	Grant   string    `json:"grant"`
	Scope   string    `json:"scope"`
	Expires time.Time `json:"expires"`
}

// loadIssued reads what is kept at path; an empty path or a missing file
// is nothing issued yet.
func loadIssued(path string) (issued, error) {
	st := issued{}
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return issued{}, fmt.Errorf("sandbox: %w", err)
		default:
			if err := json.Unmarshal(data, &st); err != nil {
				return issued{}, fmt.Errorf("sandbox: %s: %w (delete it to start afresh)", path, err)
			}
		}
	}
	if st.Requests == nil {
		st.Requests = map[string]*authRequest{}
	}
	if st.Codes == nil {
		st.Codes = map[string]*authCode{}
	}
	if st.Refresh == nil {
		st.Refresh = map[string]*refreshToken{}
	}
	if st.Access == nil {
		st.Access = map[string]*accessToken{}
	}
	return st, nil
}

// save writes s.issued to the state file, if any, atomically: a new file
// (0600) renamed over the old one. s.mu is held.
func (s *Server) save() error {
	path := s.cfg.StateFile
	if path == "" {
		return nil
	}
	data, err := json.Marshal(s.issued)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
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
		return fmt.Errorf("sandbox: save: %w", err)
	}
	return nil
}
