package signing

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// stateTag starts every state's canonical string.
const stateTag = "oauthbroker-state-v1"

// nonceBytes is the state's randomness: 256 bits (S1 asks for ≥ 128).
const nonceBytes = 32

// State is a minted state parameter.
type State struct {
	// Value is what travels in the authorization URL:
	// <kid>.<nonce>.<exp>.<sig>, all URL-safe.
	Value string
	// ID keys the server-side record: hex SHA-256 of the nonce, so the
	// table never holds a usable state.
	ID      string
	Expires time.Time
}

// NewState mints a state for provider that expires after ttl. The
// signature covers the provider, so a state minted for one provider fails
// verification at another provider's callback (S9).
func NewState(ks *Keyset, provider string, now time.Time, ttl time.Duration) (State, error) {
	nonce, err := RandomString(nonceBytes)
	if err != nil {
		return State{}, err
	}
	return mintState(ks, provider, nonce, now.Add(ttl)), nil
}

func mintState(ks *Keyset, provider, nonce string, expires time.Time) State {
	exp := strconv.FormatInt(expires.Unix(), 10)
	kid, sig := ks.sign(func(kid string) string { return stateCanonical(kid, provider, nonce, exp) })
	return State{
		Value:   kid + "." + nonce + "." + exp + "." + sig,
		ID:      Hash(nonce),
		Expires: time.Unix(expires.Unix(), 0),
	}
}

// VerifyState checks a state value received at provider's callback: its
// form, key id, signature and expiry. It returns the record ID.
func VerifyState(ks *Keyset, provider, value string, now time.Time) (id string, err error) {
	parts := strings.Split(value, ".")
	if len(value) > 256 || len(parts) != 4 || len(parts[1]) != base64.RawURLEncoding.EncodedLen(nonceBytes) {
		return "", ErrMalformed
	}
	kid, nonce, exp, sig := parts[0], parts[1], parts[2], parts[3]
	expUnix, ok := parseExp(exp)
	if !ok {
		return "", ErrMalformed
	}
	if err := ks.verify(kid, stateCanonical(kid, provider, nonce, exp), sig); err != nil {
		return "", err
	}
	if !now.Before(time.Unix(expUnix, 0)) {
		return "", ErrExpired
	}
	return Hash(nonce), nil
}

// parseExp reads the expiry of a link or a state: decimal Unix seconds
// in the one spelling strconv.FormatInt writes, no sign, no leading zero.
// The signature covers the formatted value, so accepting "+1800000600" or
// "01800000600" would give one signed value several spellings.
func parseExp(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && strconv.FormatInt(n, 10) == s
}

func stateCanonical(kid, provider, nonce, exp string) string {
	return strings.Join([]string{stateTag, kid, provider, nonce, exp}, "\n")
}

// RandomString returns n random bytes as unpadded base64url.
func RandomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash returns the hex SHA-256 of s.
func Hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
