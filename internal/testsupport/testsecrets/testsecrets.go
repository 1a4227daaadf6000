// Package testsecrets holds the secrets a test deployment's broker reads —
// the signing keys secret and each provider's client credentials — in the
// broker's format, for a secrets file (secrets.NewFile) or a Secrets
// Manager account on moto (awsstack), so that a test states only its
// values and the format has one definition.
package testsecrets

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

// Prefix is the prefix of the secrets' names, the functions' default
// (SECRETS_PREFIX unset).
const Prefix = "oauthbroker/"

// KeyID is the id of the one signing key in the keys secret.
const KeyID = "k1"

// Client is a provider's client credentials as the broker reads them.
type Client struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

// Set is one deployment's secrets.
type Set struct {
	// SigningKey is the material of the signing key KeyID, the keys
	// secret's current key; "" means no keys secret.
	SigningKey string
	// Clients are the client credentials of each provider, by name.
	Clients map[string]Client
}

// Values returns each secret's value (JSON) by the name the broker asks
// for. What is secret in them is registered with logcheck: no test may
// print it.
func (s Set) Values() map[string]string {
	out := map[string]string{}
	if s.SigningKey != "" {
		out[Prefix+"keys"] = mustJSON(map[string]string{"current_kid": KeyID, KeyID: s.SigningKey})
		logcheck.Register(s.SigningKey)
	}
	for name, c := range s.Clients {
		out[secrets.ClientCredentialsName(Prefix, name)] = mustJSON(c)
		logcheck.Register(c.Secret)
	}
	return out
}

// File writes the set as a secrets file in a temporary directory of t and
// returns its path, for secrets.NewFile.
func (s Set) File(t testing.TB) string {
	t.Helper()
	raw := map[string]json.RawMessage{}
	for name, v := range s.Values() {
		raw[name] = json.RawMessage(v)
	}
	p := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(p, []byte(mustJSON(raw)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Keyset returns the signing keyset of the keys secret, to sign connect
// links as the app does.
func (s Set) Keyset(t testing.TB) *signing.Keyset {
	t.Helper()
	ks, err := testkeys.Keyset(KeyID, map[string][]byte{KeyID: []byte(s.SigningKey)})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// mustJSON marshals v, which (strings and maps of them) always marshals.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
