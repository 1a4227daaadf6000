package broker

import (
	"context"
	"errors"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// revokeTimeout bounds the revocation call after a connection is deleted.
const revokeTimeout = 5 * time.Second

// Delete deletes a connection and, where the catalog declares a
// revocation_url, asks the provider to revoke its grant (RFC 7009): the
// refresh token, which ends the grant, else the access token. The deletion
// stands whatever the provider answers — a provider that is down must not
// keep a customer's disconnect from taking effect — and a failed
// revocation is logged without the token. A refresher holding the
// connection's lease cannot write it back.
//
// The connection is read (and its credentials opened) before it is
// deleted: if they cannot be opened for now (KMS throttled or
// unreachable), nothing is deleted and the error is returned, so a retry
// still revokes. Credentials that will never open (envelope.ErrOpen) do
// not block the deletion.
//
// Errors: ErrNotFound for an unknown connection.
func (b *Broker) Delete(ctx context.Context, providerName, connectionID string) error {
	before, err := b.Store.GetConnection(ctx, providerName, connectionID)
	readable := err == nil
	if err != nil && !errors.Is(err, envelope.ErrOpen) {
		return err
	}
	c, err := b.Store.DeleteConnection(ctx, providerName, connectionID)
	if err != nil {
		if c.Provider == "" {
			return err // not deleted
		}
		c = before // deleted, but what came back did not open: use what was just read
	}
	b.publish(ctx, lifecycle.Deleted, c)
	if !readable {
		b.Logger().WarnContext(ctx, "connection deleted without revocation", "provider", providerName, "connection_id", connectionID, "reason", "credentials do not open")
		return nil
	}
	b.revoke(context.WithoutCancel(ctx), c)
	return nil
}

// revoke asks c's provider to revoke c's grant, logging the outcome.
func (b *Broker) revoke(ctx context.Context, c store.Connection) {
	p, ok := b.Catalog.Get(c.Provider)
	if !ok || p.RevocationURL == "" {
		return
	}
	token, hint := c.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = c.AccessToken, "access_token"
	}
	if token == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	log := b.Logger().With("provider", c.Provider, "connection_id", c.ConnectionID)
	if err := b.revokeAt(ctx, p, c, token, hint); err != nil {
		log.WarnContext(ctx, "revocation failed", "cause", causeString(err))
		return
	}
	log.InfoContext(ctx, "grant revoked at the provider", "token_type_hint", hint)
}

// revokeAt sends one revocation request for token to p.
func (b *Broker) revokeAt(ctx context.Context, p *provider.Provider, c store.Connection, token, hint string) error {
	ep, err := p.Resolve(c.Params)
	if err != nil {
		return catalogFailure("connection parameters no longer match the catalog")
	}
	creds, err := b.credentials(ctx, p)
	if err != nil {
		return internalFailure("client credentials unreadable: " + err.Error())
	}
	return b.ProviderClient.Revoke(ctx, ep, creds, token, hint)
}
