package broker

import (
	"time"

	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Connection is a connection as the broker reports it to its adapters:
// what the app may be told or handed, never the refresh token nor the
// bookkeeping of the refresh schedule (leases, failures, versions).
type Connection struct {
	Provider     string
	ConnectionID string
	Status       store.Status
	// AccessToken is the token the app uses; it is only ever handed out on
	// the app's own token route, never told to a browser.
	AccessToken string
	TokenType   string
	// ExpiresAt is zero when the token does not expire.
	ExpiresAt time.Time
	// Scope is the scope the provider granted (space-separated).
	Scope string
	// Metadata holds non-secret provider fields returned with the token.
	Metadata map[string]string
}

// viewOf is the broker's view of a stored connection.
func viewOf(c store.Connection) Connection {
	return Connection{
		Provider:     c.Provider,
		ConnectionID: c.ConnectionID,
		Status:       c.Status,
		AccessToken:  c.AccessToken,
		TokenType:    c.TokenType,
		ExpiresAt:    c.ExpiresAt,
		Scope:        c.Scope,
		Metadata:     c.Metadata,
	}
}

// ErrNotFound is the error of Token and Delete for a connection that does
// not exist (it is the store's store.ErrNotFound).
var ErrNotFound = store.ErrNotFound

// CheckConnection reports whether providerName and connectionID are well
// formed (store.CheckKey): the adapters refuse others before anything is
// read.
func CheckConnection(providerName, connectionID string) error {
	return store.CheckKey(providerName, connectionID)
}
