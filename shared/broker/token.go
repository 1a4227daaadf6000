package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/store"
)

// On-demand refresh tuning.
const (
	// ReaderWait is how long a reader that finds another refresher at work
	// waits for its result before giving up.
	ReaderWait = 5 * time.Second
	// ExpirySlack: a token with less than this left is renewed before it is
	// handed out, even if its refresh is not yet due.
	ExpirySlack = 30 * time.Second
)

// ErrReauthRequired means the connection needs the customer to connect
// again (status needs_reauth): the provider refused its grant, or it has
// no way to renew an expired token.
var ErrReauthRequired = errors.New("broker: connection needs re-authorization")

// RefreshError is an on-demand refresh that failed for now; the stored
// connection is intact and marked (see store.Connection.FailureClass).
type RefreshError struct {
	// Class is the failure class (Class* constants), or "busy" when another
	// refresher held the connection for longer than ReaderWait.
	Class FailureClass
	// RetryAfter is how long to wait before asking again.
	RetryAfter time.Duration
	// Err is the cause, free of credentials.
	Err error
}

func (e *RefreshError) Error() string {
	return fmt.Sprintf("refresh failed (%s): %v", e.Class, e.Err)
}

func (e *RefreshError) Unwrap() error { return e.Err }

// ClassBusy: another refresher held the connection past ReaderWait.
const ClassBusy FailureClass = "busy"

// Token returns a connection with an access token the app can use now.
// If the token is expired, about to expire or due for refresh — or force
// is set (the app just got a 401 with it) — it renews it first, under the
// same per-connection lease as the schedule: a reader that finds the lease
// taken, or loses the race to take it, waits briefly and re-reads; it
// never refreshes in parallel. Forced reads that overlap share one
// refresh: any token other than the one the reader first saw satisfies it.
//
// Errors: ErrNotFound; ErrReauthRequired (with the connection);
// *RefreshError when the provider could not renew a token that is no
// longer usable (a still-valid token is returned instead unless forced).
func (b *Broker) Token(ctx context.Context, providerName, connectionID string, force bool) (Connection, error) {
	c, err := b.usableConnection(ctx, providerName, connectionID, force)
	return viewOf(c), err
}

// usableConnection is Token on the stored connection.
func (b *Broker) usableConnection(ctx context.Context, providerName, connectionID string, force bool) (store.Connection, error) {
	k := store.Key{Provider: providerName, ConnectionID: connectionID}
	var seen string // the token a forced read wants replaced
	clk := b.clock()
	giveUp := clk.Start().Add(ReaderWait) // real: a wait, measured against ctx's deadline
	if dl, ok := ctx.Deadline(); ok && dl.Add(-invocationReserve).Before(giveUp) {
		giveUp = dl.Add(-invocationReserve) // answer "busy" while there is time to
	}
	pause := 20 * time.Millisecond
	for {
		c, err := b.Store.GetConnection(ctx, k.Provider, k.ConnectionID)
		if err != nil {
			return store.Connection{}, err
		}
		if c.Status == store.StatusNeedsReauth {
			return c, ErrReauthRequired
		}
		p, ok := b.Catalog.Get(c.Provider)
		if !ok {
			return c, &RefreshError{Class: ClassCatalog, Err: errors.New("provider not in catalog")}
		}
		now := clk.Now()
		if force && seen == "" {
			seen = c.AccessToken
		}
		if !(force && c.AccessToken == seen) && !needsRenewal(&c, now) {
			return c, nil
		}
		if left, ok := clk.Left(ctx); ok && left < invocationReserve+b.ProviderClient.Timeout()+time.Second {
			// Too little of the invocation left to call the provider and
			// save what it answers: say so rather than be cut off mid-way.
			if !force && usable(&c, now) {
				return c, nil
			}
			return c, &RefreshError{Class: ClassBusy, RetryAfter: time.Second, Err: errors.New("too little time left in the invocation to renew")}
		}
		if c.Lease.Free(now) {
			owner := newLeaseOwner()
			leaseStart := clk.Start()
			leased, err := b.Store.Lease(ctx, k, store.LeaseRequest{Owner: owner, Now: now, Until: now.Add(b.refreshOptions().LeasePeriod), Version: c.Version})
			switch {
			case err == nil:
				r := b.renewLeased(ctx, p, leased, owner, "on_demand", leaseStart, nil)
				m := newRefreshMetrics()
				m.add(p.Name, r)
				m.flush(ctx, b.Logger(), now)
				switch r.outcome {
				case outcomeRefreshed:
					return r.conn, nil
				case outcomeNeedsReauth:
					return r.conn, ErrReauthRequired
				case outcomeFailed:
					if !force && usable(&r.conn, now) {
						return r.conn, nil
					}
					// Ask again when the connection's own next attempt is due
					// (backoff or the provider's Retry-After, whichever is later).
					wait := max(r.retryAfter, r.conn.NextRefresh.Sub(clk.Now()), time.Second)
					return r.conn, &RefreshError{Class: r.class, RetryAfter: wait, Err: r.err}
				case outcomeSuperseded:
					continue // reconnected meanwhile: read the new tokens
				case outcomeInterrupted:
					// The call could not go out in time: nothing changed.
					return r.conn, &RefreshError{Class: ClassBusy, RetryAfter: time.Second, Err: r.err}
				default:
					return c, &RefreshError{Class: ClassInternal, RetryAfter: time.Second, Err: r.err}
				}
			case !errors.Is(err, store.ErrConflict):
				return c, err
			}
		}
		// Another refresher holds the lease or wrote since the read.
		if clk.Until(giveUp) < 0 {
			if !force && usable(&c, now) {
				return c, nil
			}
			return c, &RefreshError{Class: ClassBusy, RetryAfter: time.Second, Err: errors.New("another refresher holds the connection")}
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(pause): // real time: a wait between re-reads
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}

// needsRenewal reports whether a reader should renew c's token before
// handing it out: its refresh is due, or it expires within ExpirySlack.
func needsRenewal(c *store.Connection, now time.Time) bool {
	if c.ExpiresAt.IsZero() {
		return false
	}
	return !c.NextRefresh.IsZero() && !c.NextRefresh.After(now) || c.ExpiresAt.Sub(now) < ExpirySlack
}

// usable reports whether c's token can still be handed out.
func usable(c *store.Connection, now time.Time) bool {
	return c.ExpiresAt.IsZero() || c.ExpiresAt.Sub(now) > 5*time.Second
}
