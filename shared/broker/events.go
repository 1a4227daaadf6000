package broker

import (
	"context"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// publishTimeout bounds one lifecycle event's delivery.
const publishTimeout = 2 * time.Second

// publish announces a lifecycle event of c to b.Events. Events are best
// effort: a failure is logged, never returned, so an EventBridge outage
// cannot fail a connect, a refresh or a delete (the app can always read
// the connection's status).
func (b *Broker) publish(ctx context.Context, t lifecycle.Type, c store.Connection) {
	if b.Events == nil {
		return
	}
	e := lifecycle.Event{Type: t, Provider: c.Provider, ConnectionID: c.ConnectionID, Status: string(c.Status), Time: b.now(), FailureClass: c.FailureClass}
	switch t {
	case lifecycle.Deleted:
		e.Status = "deleted"
	case lifecycle.Abandoned:
		e.Status = "abandoned"
	}
	// Bounded, and not by the caller's cancellation: an event is not worth
	// a browser's answer or a refresh result.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if err := b.Events.Publish(pctx, e); err != nil {
		b.Logger().WarnContext(ctx, "lifecycle event not published", "event", string(t), "provider", c.Provider, "connection_id", c.ConnectionID, "cause", err.Error())
	}
}

// publishTransition announces what a refresh outcome changed: a recovery
// after failures, a move to needs_reauth, or a move to failing. before is
// the connection as the refresh found it; r.conn is what was saved.
func (b *Broker) publishTransition(ctx context.Context, before store.Connection, r result) {
	after := r.conn
	switch {
	case r.outcome == outcomeRefreshed && (before.FailureCount > 0 || before.Status != store.StatusConnected):
		b.publish(ctx, lifecycle.Recovered, after)
	case r.outcome == outcomeNeedsReauth && before.Status != store.StatusNeedsReauth:
		b.publish(ctx, lifecycle.NeedsReauth, after)
	case r.outcome == outcomeFailed && after.Status == store.StatusFailing && before.Status != store.StatusFailing:
		b.publish(ctx, lifecycle.Failing, after)
	}
}
