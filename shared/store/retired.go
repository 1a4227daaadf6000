package store

import (
	"errors"
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
	// RetiredAt is when the reconnect replaced it.
	RetiredAt time.Time
}

// ErrNotRetired wraps the error of a ReplaceConnection that saved the
// connection but could not keep the credentials it replaced, whose grant
// then stays alive at the provider.
var ErrNotRetired = errors.New("store: replaced credentials not retired")

// RetiredTTL is how long a retired grant's record may outlive its
// revocation attempts: stores that expire records by themselves (a
// DynamoDB TTL) remove it by then whatever happened.
const RetiredTTL = 7 * 24 * time.Hour
