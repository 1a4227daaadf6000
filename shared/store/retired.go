package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"time"
)

// A retired grant is the grant a reconnect replaced, kept only until the
// provider has revoked it (RFC 7009). The callback that replaces a
// connection may not open its credentials (S20: only the refresh and token
// functions may), so it cannot revoke them itself. Instead the store moves
// them, sealed as they were stored and bound to the same connection, onto a
// record of their own; ListDue lists that record with the due connections
// (Key.Retired set), and the refresh schedule, which may open it, revokes
// the grant and drops the record.

// RetiredGrant is a retired grant as LeaseRetired opens it.
type RetiredGrant struct {
	// Key names the connection the grant belonged to; Key.Retired names
	// the retired grant itself.
	Key Key
	// Params are the replaced connection's parameters: the grant lives at
	// the endpoint they resolve to, which a reconnect may have changed.
	Params map[string]string
	// AccessToken and RefreshToken are the replaced connection's tokens.
	AccessToken  string
	RefreshToken string
	// Attempts counts the leases taken on it so far, this one included.
	Attempts int
	// InUse reports that the connection which replaced it holds one of
	// its tokens: a provider that issued the same token again (a
	// re-authorization keeping its refresh token, a client_credentials
	// token cached by the provider), or a retried write that replaced the
	// connection's own new tokens. Revoking it would end the connection.
	InUse bool
	// RetiredAt is when the reconnect replaced it.
	RetiredAt time.Time
}

// Successor returns what a store keeps of the tokens that replaced a
// retired grant, to tell LeaseRetired's InUse: their SHA-256 digests
// (hex), which open nothing.
func Successor(accessToken, refreshToken string) []string {
	var out []string
	for _, t := range []string{accessToken, refreshToken} {
		if t != "" {
			sum := sha256.Sum256([]byte(t))
			out = append(out, hex.EncodeToString(sum[:]))
		}
	}
	return out
}

// MarkInUse sets g.InUse: whether one of g's tokens has its digest in
// successor, the Successor kept with the retired grant. Stores call it
// once they have opened g's tokens.
func (g *RetiredGrant) MarkInUse(successor []string) {
	g.InUse = false
	for _, d := range Successor(g.AccessToken, g.RefreshToken) {
		g.InUse = g.InUse || slices.Contains(successor, d)
	}
}

// ErrNotRetired wraps the error of a ReplaceConnection that saved the
// connection but could not keep the credentials it replaced, whose grant
// then stays alive at the provider.
var ErrNotRetired = errors.New("store: replaced credentials not retired")

// RetiredTTL is how long a retired grant's record may outlive its
// revocation attempts: stores that expire records by themselves (a
// DynamoDB TTL) remove it by then whatever happened.
const RetiredTTL = 7 * 24 * time.Hour
