package broker

import (
	"context"
	"errors"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/dispatch"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
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

// revokeRetired is the sweep's work on a retired grant, or on a pending
// grant that expired unconfirmed (confirm.go: it is revoked wherever the
// entry has a revocation endpoint): lease it, revoke it at the provider,
// drop it. call is released unused when the provider is not called.
func (b *Broker) revokeRetired(ctx context.Context, k store.Key, call *dispatch.Permit) result {
	clk := b.clock()
	now := clk.Now()
	log := b.Logger().With("provider", k.Provider, "connection_id", k.ConnectionID)
	what := "replaced grant"
	if k.Pending != "" {
		what = "unconfirmed grant"
	}
	p, ok := b.Catalog.Get(k.Provider)
	switch {
	case !ok:
		log.InfoContext(ctx, what+" dropped unrevoked", "reason", "the provider left the catalog")
		return b.dropRetired(ctx, k, result{outcome: outcomeSkipped})
	case k.Pending != "" && p.RevocationURL == "":
		log.InfoContext(ctx, what+" dropped unrevoked", "reason", "the catalog entry has no revocation_url")
		return b.dropRetired(ctx, k, result{outcome: outcomeSkipped})
	case k.Pending == "" && !p.RevokeOnReconnect:
		// The entry stopped asking for revocation.
		log.InfoContext(ctx, what+" dropped unrevoked", "reason", "the catalog entry does not revoke on reconnect")
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
		log.WarnContext(ctx, what+" not revoked", "reason", "credentials do not open")
		return b.dropRetired(ctx, k, result{outcome: outcomeRevokeFailed, err: err})
	case err != nil:
		log.WarnContext(ctx, what+" not leased", "cause", err.Error())
		return result{outcome: outcomeSkipped}
	}
	if k.Pending != "" && !g.InUse {
		// A provider may hand a re-authorization the refresh token the
		// connection already holds: then the unconfirmed grant is the
		// connection's own, and revoking it would end the connection.
		cur, err := b.Store.GetConnection(ctx, k.Provider, k.ConnectionID)
		switch {
		case err == nil:
			g.MarkInUse(store.Successor(cur.AccessToken, cur.RefreshToken))
		case !errors.Is(err, store.ErrNotFound):
			// Not knowing is not revoking: the lease brings it back.
			log.WarnContext(ctx, what+" not revoked; retrying later", "reason", "the connection could not be read", "cause", err.Error())
			return result{outcome: outcomeSkipped}
		}
	}
	if g.InUse {
		// The connection holds the same token again (see
		// store.RetiredGrant.InUse): revoking it would end the connection.
		log.InfoContext(ctx, what+" dropped unrevoked", "reason", "the connection holds the same token")
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
		log.InfoContext(ctx, what+" revoked at the provider", "token_type_hint", hint, "attempt", g.Attempts)
		r.outcome = outcomeRevoked
		return b.dropRetired(ctx, k, r)
	case g.Attempts >= retiredAttempts || pe != nil && !pe.Temporary():
		log.WarnContext(ctx, what+" not revoked; giving up", "attempt", g.Attempts, "cause", causeString(err))
		r.outcome = outcomeRevokeFailed
		return b.dropRetired(ctx, k, r)
	default:
		log.WarnContext(ctx, what+" not revoked; retrying later", "attempt", g.Attempts, "next_attempt", now.Add(retiredRetry), "cause", causeString(err))
		r.outcome = outcomeRevokeFailed
		return r
	}
}

// dropRetired drops the retired grant k, keeping r's outcome; a drop that
// fails leaves it to come due again when its lease ends. Dropping an
// unconfirmed grant publishes abandoned, once: a failed drop publishes
// nothing and is tried again.
func (b *Broker) dropRetired(ctx context.Context, k store.Key, r result) result {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if err := b.Store.DropRetired(dctx, k); err != nil {
		b.Logger().WarnContext(ctx, "retired grant not dropped", "provider", k.Provider, "connection_id", k.ConnectionID, "cause", err.Error())
		return r
	}
	if k.Pending != "" {
		b.publish(ctx, lifecycle.Abandoned, store.Connection{Provider: k.Provider, ConnectionID: k.ConnectionID})
	}
	return r
}
