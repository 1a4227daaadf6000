// Package testkeys makes the keys tests seal and sign with: random local
// keys that live only as long as the test process, and signing keysets
// built from key material in code. Production reads its keys from KMS,
// a key file or a secret; tests need none of those.
package testkeys

import (
	"crypto/rand"
	"encoding/json"

	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

// Local returns a local key with random key material.
func Local() *envelope.LocalKey {
	key := make([]byte, envelope.DataKeySize)
	rand.Read(key)
	k, err := envelope.NewLocalKey(key)
	if err != nil {
		panic(err) // unreachable: the key has the right size
	}
	return k
}

// Sealer returns a sealer under a fresh Local key, for tests that are not
// about KMS and need no KMS server.
func Sealer() *envelope.Sealer { return envelope.NewSealer(Local(), 0) }

// Keyset returns a signing keyset with the given keys, current signing,
// through signing.ParseKeyset: the secret's own format.
func Keyset(current string, keys map[string][]byte) (*signing.Keyset, error) {
	raw := map[string]string{"current_kid": current}
	for kid, material := range keys {
		raw[kid] = string(material)
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	return signing.ParseKeyset(b)
}
