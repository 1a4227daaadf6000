// Package signing mints and verifies the two signed values of a connect
// flow: the app's connect link (who may start a flow) and the broker's
// state parameter (RFC 6749 §10.12, RFC 9700 §2.1).
//
// Both are HMAC-SHA256 over a canonical string that starts with its own
// purpose tag, so neither can stand in for the other even though one
// keyset signs both. Every signature names its key id, so keys rotate: the
// current key signs, every key in the set verifies.
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// MinKeyBytes is the shortest key material accepted.
const MinKeyBytes = 32

// Errors returned by verification. All of them mean "reject".
var (
	ErrMalformed    = errors.New("signing: malformed value")
	ErrUnknownKey   = errors.New("signing: unknown key id")
	ErrBadSignature = errors.New("signing: bad signature")
	ErrExpired      = errors.New("signing: expired")
	// ErrTooFarAhead: a connect link expires further ahead than
	// MaxLinkLifetime. It is not ErrExpired: the signer's clock or code
	// is wrong, not the customer too slow.
	ErrTooFarAhead = errors.New("signing: expiry too far ahead")
)

var kidField = field{"[A-Za-z0-9_-]{1,32}", 1, 32, "", alnum + "_-"}

// Keyset is a set of HMAC keys by key id, one of which signs.
type Keyset struct {
	current string
	keys    map[string][]byte
}

// ParseKeyset reads the keys secret: a flat JSON object whose
// "current_kid" names the signing key and whose every other member maps a
// key id to its key material (a string of at least MinKeyBytes bytes):
//
//	{"current_kid": "k2", "k1": "…64 random characters…", "k2": "…"}
func ParseKeyset(b []byte) (*Keyset, error) {
	var raw map[string]string
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, errors.New("signing keys: not a JSON object of strings")
	}
	ks := &Keyset{current: raw["current_kid"], keys: map[string][]byte{}}
	for kid, material := range raw {
		if kid == "current_kid" {
			continue
		}
		if !kidField.match(kid) {
			return nil, fmt.Errorf("signing keys: key id %q must match %s", kid, kidField)
		}
		if len(material) < MinKeyBytes {
			return nil, fmt.Errorf("signing keys: key %q is shorter than %d bytes", kid, MinKeyBytes)
		}
		ks.keys[kid] = []byte(material)
	}
	if _, ok := ks.keys[ks.current]; !ok {
		return nil, errors.New("signing keys: current_kid does not name a key in the set")
	}
	return ks, nil
}

// sign returns the current key id and the base64url (unpadded)
// HMAC-SHA256 of msg under it.
func (ks *Keyset) sign(msg func(kid string) string) (kid, sig string) {
	kid = ks.current
	return kid, mac(ks.keys[kid], msg(kid))
}

// verify checks sig over msg with key kid in constant time.
func (ks *Keyset) verify(kid, msg, sig string) error {
	key, ok := ks.keys[kid]
	if !ok {
		return ErrUnknownKey
	}
	if _, err := base64.RawURLEncoding.DecodeString(sig); err != nil {
		return ErrMalformed
	}
	// Compare the encoded forms, not the decoded bytes: the decoder ignores
	// CR and LF and the spare bits of the last character, so several
	// strings decode to one signature. Only the canonical one verifies, so
	// a signed value has exactly one accepted spelling.
	if !hmac.Equal([]byte(sig), []byte(mac(key, msg))) {
		return ErrBadSignature
	}
	return nil
}

func mac(key []byte, msg string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
