package broker

import (
	"context"
	"errors"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/client/tokenapi"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Grants the app confirms (S24).
//
// A signed connect link says which connection id a grant is for, not who
// grants it: a user of the app who forwards the link minted for their own
// connection can have a victim approve it, and without more the victim's
// account would be stored under the attacker's connection id. So, with
// Config.Confirm, the callback of an authorization_code connect does not
// store the grant: it keeps it apart as a pending grant (store.PendingGrant)
// and sends the browser back with a one-time confirmation code. The app's
// return page checks its own session — is the signed-in user the owner of
// this connection id? — and only then its backend calls Confirm with the
// code, which makes the grant the connection's. The connection serves
// whatever it held until then. A grant not confirmed within PendingTTL
// comes due in the refresh sweep, which revokes it at the provider (where
// the entry has a revocation_url), drops it and publishes abandoned.
//
// client_credentials connects have no customer consent to misplace and
// are stored at once.

// PendingTTL is how long a confirmation code works.
const PendingTTL = 10 * time.Minute

// ParamConfirmation is the return URL's parameter that carries the
// confirmation code (tokenapi.ParamConfirmation).
const ParamConfirmation = tokenapi.ParamConfirmation

// StatusPending is the status the return URL and Callback report for a
// grant that waits for confirmation.
const StatusPending = store.StatusPending

// Errors of Confirm.
var (
	// ErrConfirmationInvalid: no pending grant of the connection has the
	// code — wrong, used already, or expired.
	ErrConfirmationInvalid = errors.New("broker: confirmation code invalid, used or expired")
	// ErrConnectionConflict: the connection holds a grant of another kind,
	// which the pending one may not replace.
	ErrConnectionConflict = errGrantConflict
)

// confirmationBytes is the confirmation code's randomness: 256 bits.
const confirmationBytes = 32

// holdPending keeps fresh apart as a pending grant and returns its
// confirmation code, of which the store keeps only the hash. A connection
// id that holds a grant of another kind is refused now rather than at
// the confirmation.
func (b *Broker) holdPending(ctx context.Context, p *provider.Provider, fresh store.Connection) (string, error) {
	c, err := b.Store.PeekConnection(ctx, p.Name, fresh.ConnectionID)
	switch {
	case err == nil && c.Grant != fresh.Grant:
		return "", errGrantConflict
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return "", err
	}
	code, err := signing.RandomString(confirmationBytes)
	if err != nil {
		return "", err
	}
	k := store.Key{Provider: p.Name, ConnectionID: fresh.ConnectionID, Pending: signing.Hash(code)}
	if err := b.Store.PutPending(ctx, store.PendingGrant{Key: k, Connection: fresh, ExpiresAt: b.now().Add(PendingTTL)}); err != nil {
		return "", err
	}
	return code, nil
}

// Confirm makes the pending grant whose confirmation code is code the
// connection's current grant, replacing (and, where the entry revokes on
// reconnect, revoking) whatever it held, publishes created, and returns
// the connection. The app calls it only after checking that its
// signed-in user owns connectionID. A code works once and for
// PendingTTL; of two concurrent confirmations one promotes the grant.
//
// Errors: ErrNotFound (no such provider); ErrConfirmationInvalid;
// ErrConnectionConflict; others are the store's.
func (b *Broker) Confirm(ctx context.Context, providerName, connectionID, code string) (Connection, error) {
	p, ok := b.Catalog.Get(providerName)
	if !ok {
		return Connection{}, ErrNotFound
	}
	if len(code) < 43 || len(code) > 128 {
		return Connection{}, ErrConfirmationInvalid
	}
	k := store.Key{Provider: p.Name, ConnectionID: connectionID, Pending: signing.Hash(code)}
	g, err := b.Store.TakePending(ctx, k, b.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Connection{}, ErrConfirmationInvalid
	case errors.Is(err, envelope.ErrOpen):
		// Taken, but its tokens do not open: nothing to promote or revoke.
		return Connection{}, err
	case err != nil:
		return Connection{}, err
	}
	saved, err := b.promote(ctx, p, g.Connection)
	if err != nil {
		// Put it back: a retry of the confirmation finds it, and if none
		// comes it expires and is revoked like any unconfirmed grant.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
		if perr := b.Store.PutPending(pctx, g); perr != nil {
			b.Logger().WarnContext(ctx, "confirmed grant not saved nor kept; it stays alive at the provider", "provider", p.Name, "connection_id", connectionID, "cause", perr.Error())
		}
		cancel()
		return Connection{}, err
	}
	b.Logger().InfoContext(ctx, "connection confirmed", "provider", p.Name, "connection_id", connectionID, "version", saved.Version)
	view := viewOf(saved)
	view.AccessToken = ""
	return view, nil
}
