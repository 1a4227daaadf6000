package broker

import (
	"context"
	"errors"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/dispatch"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Revoking what a reconnect replaced.
//
// When a customer connects an id that is already connected, the grant the
// connection held stays alive at the provider until it expires, if ever:
// one more live credential for nothing. Where the catalog entry sets
// revoke_on_reconnect, the callback keeps the replaced credentials as a
// retired grant (store.RetiredGrant; it may not open them itself), and the
// refresh sweep, which lists retired grants with the due connections,
// revokes each at the provider (RFC 7009) and drops it. Best effort: the
// reconnect never waits for it or fails because of it; a provider that
// fails is asked again retiredRetry later, for retiredAttempts leases in
// all. A token the replacing connection holds again is never revoked.
const (
	// retiredRetry is how long a retired grant is leased for one
	// revocation, and so when a failed one is tried again.
	retiredRetry = 15 * time.Minute
	// retiredAttempts bounds the revocation attempts of one retired grant
	// (about two hours at retiredRetry).
	retiredAttempts = 8
)

// revokeRetired is the sweep's work on a retired grant: lease it, revoke
// it at the provider, drop it. call is released unused when the provider
// is not called.
func (b *Broker) revokeRetired(ctx context.Context, k store.Key, call *dispatch.Permit) result {
	clk := b.clock()
	now := clk.Now()
	log := b.Logger().With("provider", k.Provider, "connection_id", k.ConnectionID)
	p, ok := b.Catalog.Get(k.Provider)
	if !ok || !p.RevokeOnReconnect {
		// The entry left the catalog or stopped asking for revocation.
		log.InfoContext(ctx, "replaced grant dropped unrevoked", "reason", "the catalog entry does not revoke on reconnect")
		return b.dropRetired(ctx, k, result{outcome: outcomeSkipped})
	}
	if b.gate(k.Provider).Paused(now) {
		return result{outcome: outcomeHeldBack}
	}
	g, err := b.Store.LeaseRetired(ctx, k, now, now.Add(retiredRetry))
	switch {
	case errors.Is(err, store.ErrConflict):
		return result{outcome: outcomeSkipped} // another sweep has it, or it is done
	case errors.Is(err, envelope.ErrOpen):
		log.WarnContext(ctx, "replaced grant not revoked", "reason", "credentials do not open")
		return b.dropRetired(ctx, k, result{outcome: outcomeRevokeFailed, err: err})
	case err != nil:
		log.WarnContext(ctx, "replaced grant not leased", "cause", err.Error())
		return result{outcome: outcomeSkipped}
	}
	if g.InUse {
		// The connection holds the same token again (see
		// store.RetiredGrant.InUse): revoking it would end the connection.
		log.InfoContext(ctx, "replaced grant dropped unrevoked", "reason", "the connection holds the same token")
		return b.dropRetired(ctx, k, result{outcome: outcomeSkipped})
	}
	token, hint := g.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = g.AccessToken, "access_token"
	}
	if err := call.Acquire(ctx); err != nil {
		// Not sent (the provider paused meanwhile, or too little time):
		// the lease brings it back retiredRetry from now.
		return result{outcome: outcomeInterrupted, err: err}
	}
	start := clk.Start()
	rctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	err = b.revokeAt(rctx, p, store.Connection{Provider: k.Provider, ConnectionID: k.ConnectionID, Params: g.Params}, token, hint)
	cancel()
	call.Done()
	r := result{latency: clk.Since(start), err: err}
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Status == 429 {
		// A 429 is about the client, so it pauses refreshes too; other
		// failures of the revocation endpoint say nothing of the token
		// endpoint and leave the circuit breaker alone.
		b.observe(p.Name, pe)
	}
	switch {
	case err == nil:
		log.InfoContext(ctx, "replaced grant revoked at the provider", "token_type_hint", hint, "attempt", g.Attempts)
		r.outcome = outcomeRevoked
		return b.dropRetired(ctx, k, r)
	case g.Attempts >= retiredAttempts || pe != nil && !pe.Temporary():
		log.WarnContext(ctx, "replaced grant not revoked; giving up", "attempt", g.Attempts, "cause", causeString(err))
		r.outcome = outcomeRevokeFailed
		return b.dropRetired(ctx, k, r)
	default:
		log.WarnContext(ctx, "replaced grant not revoked; retrying later", "attempt", g.Attempts, "next_attempt", now.Add(retiredRetry), "cause", causeString(err))
		r.outcome = outcomeRevokeFailed
		return r
	}
}

// dropRetired drops the retired grant k, keeping r's outcome; a drop that
// fails leaves it to come due again when its lease ends.
func (b *Broker) dropRetired(ctx context.Context, k store.Key, r result) result {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if err := b.Store.DropRetired(dctx, k); err != nil {
		b.Logger().WarnContext(ctx, "retired grant not dropped", "provider", k.Provider, "connection_id", k.ConnectionID, "cause", err.Error())
	}
	return r
}
