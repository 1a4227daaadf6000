package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Refresh tuning.
const (
	// RefreshBatch is how many due connections one sweep takes.
	RefreshBatch = 500
	// RefreshWorkers bounds concurrent provider calls in a sweep.
	RefreshWorkers = 4
	// FailingAfter consecutive transient failures mark a connection failing
	// (it is still retried).
	FailingAfter = 5
	// ClaimPeriod is how long a claim outlives the claimer's own deadline
	// (or, without a deadline, how long it lasts).
	ClaimPeriod = 2 * time.Minute
	// startReserve: a connection is started only while this much time is
	// left before the deadline — one provider call (NewHTTPClient gives up
	// after 10 s) and the save of its result.
	startReserve = 20 * time.Second
	// saveTimeout bounds the write of a result; it runs even if the
	// invocation's context ends, because a rotated refresh token exists
	// nowhere else.
	saveTimeout = 5 * time.Second
)

// ScheduleEvent is the refresh schedule's input (events/refresh.json).
type ScheduleEvent struct {
	Source string `json:"source"`
	Action string `json:"action"`
}

// RefreshSummary counts what one sweep did.
type RefreshSummary struct {
	Due         int `json:"due"`
	Refreshed   int `json:"refreshed"`
	NeedsReauth int `json:"needs_reauth"`
	Failed      int `json:"failed"`
	Skipped     int `json:"skipped"`
	// Lost counts provider results that could not be saved (logged as
	// errors): with a rotating provider, such a connection needs re-auth.
	Lost int `json:"lost"`
}

// HandleSchedule is the refresh function's handler.
func (b *Broker) HandleSchedule(ctx context.Context, raw json.RawMessage) (RefreshSummary, error) {
	var ev ScheduleEvent
	if err := json.Unmarshal(raw, &ev); err != nil || ev.Action != "refresh-due" {
		return RefreshSummary{}, errors.New(`refresh: want the schedule event {"action":"refresh-due"}`)
	}
	return b.RefreshDue(ctx)
}

// RefreshDue renews every connection whose refresh is due, with bounded
// concurrency, stopping before the context's deadline; what is left stays
// due for the next tick. Running it twice at once, or again after a
// partial run, is harmless: a connection is claimed before it is renewed.
func (b *Broker) RefreshDue(ctx context.Context) (RefreshSummary, error) {
	keys, err := b.Store.ListDue(ctx, b.now(), RefreshBatch)
	if err != nil {
		return RefreshSummary{}, fmt.Errorf("refresh: listing due connections: %w", err)
	}
	var (
		mu  sync.Mutex
		sum = RefreshSummary{Due: len(keys)}
		wg  sync.WaitGroup
		sem = make(chan struct{}, RefreshWorkers)
	)
	deadline, hasDeadline := ctx.Deadline()
	for _, k := range keys {
		if ctx.Err() != nil || hasDeadline && time.Until(deadline) < startReserve {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			outcome := b.refreshOne(ctx, k)
			mu.Lock()
			defer mu.Unlock()
			switch outcome {
			case outcomeRefreshed:
				sum.Refreshed++
			case outcomeNeedsReauth:
				sum.NeedsReauth++
			case outcomeFailed:
				sum.Failed++
			case outcomeLost:
				sum.Lost++
			default:
				sum.Skipped++
			}
		}()
	}
	wg.Wait()
	level := slog.LevelInfo
	if sum.Due == 0 {
		level = slog.LevelDebug // an idle tick is not news
	}
	b.log().Log(ctx, level, "refresh sweep", "due", sum.Due, "refreshed", sum.Refreshed, "needs_reauth", sum.NeedsReauth, "failed", sum.Failed, "skipped", sum.Skipped, "lost", sum.Lost)
	return sum, nil
}

type outcome string

const (
	outcomeRefreshed   outcome = "refreshed"
	outcomeNeedsReauth outcome = "needs_reauth"
	outcomeFailed      outcome = "failed"
	outcomeSkipped     outcome = "skipped"
	outcomeLost        outcome = "lost"
)

// refreshOne renews one connection.
//
// Rotating refresh tokens make a race destructive: if two refreshers send
// the same refresh token, the provider honours one and answers the other
// invalid_grant, and writing the loser's view would kill the connection
// (RFC 9700 §4.14, S21). So a refresher first claims the connection — a
// write conditional on the version it read that moves RefreshDue one
// ClaimPeriod ahead — and only the winner of that write calls the
// provider; its result is written conditional on the claimed version. A
// refresher that crashes after claiming costs one ClaimPeriod, never the
// connection. The claim lasts past the invocation's deadline, so no claim
// expires while its holder may still be working.
func (b *Broker) refreshOne(ctx context.Context, k store.Key) outcome {
	now := b.now()
	start := time.Now()
	log := b.log().With("provider", k.Provider, "connection_id", k.ConnectionID)
	c, err := b.Store.GetConnection(ctx, k.Provider, k.ConnectionID)
	if err != nil {
		log.WarnContext(ctx, "refresh skipped", "reason", "read failed", "cause", err.Error())
		return outcomeSkipped
	}
	if c.RefreshDue.IsZero() || c.RefreshDue.After(now) {
		return outcomeSkipped // renewed or rescheduled since the index was read
	}
	p, ok := b.Catalog.Get(c.Provider)
	if !ok {
		// The provider left the catalog: stop scheduling, keep the tokens.
		c.RefreshDue, c.LastError = time.Time{}, "provider not in catalog"
		b.save(ctx, log, c)
		return outcomeSkipped
	}
	c.RefreshDue = now.Add(ClaimPeriod)
	if d, ok := ctx.Deadline(); ok {
		c.RefreshDue = now.Add(time.Until(d) + ClaimPeriod)
	}
	if c, err = b.Store.SaveConnection(ctx, c); err != nil {
		if !errors.Is(err, store.ErrConflict) {
			log.WarnContext(ctx, "refresh skipped", "reason", "claim failed", "cause", err.Error())
		}
		return outcomeSkipped // another refresher holds it
	}
	tok, err := b.renew(ctx, p, &c)
	var pe *provider.Error
	switch {
	case err == nil:
		if tok.RefreshToken == "" {
			tok.RefreshToken = c.RefreshToken // RFC 6749 §6: keep the old one
		}
		c.AccessToken, c.RefreshToken, c.TokenType, c.ExpiresAt = tok.AccessToken, tok.RefreshToken, tok.TokenType, tok.ExpiresAt
		if tok.Scope != "" {
			c.Scope = tok.Scope
		}
		for k, v := range tok.Metadata {
			if c.Metadata == nil {
				c.Metadata = map[string]string{}
			}
			c.Metadata[k] = v
		}
		c.Status, c.FailureCount, c.LastError = store.StatusConnected, 0, ""
		c.RefreshDue = refreshDue(p, &c, tok.Lifetime)
		if !b.saveResult(ctx, log, c) {
			return outcomeLost
		}
		log.InfoContext(ctx, "refreshed", "outcome", outcomeRefreshed, "latency_ms", time.Since(start).Milliseconds())
		return outcomeRefreshed
	case errors.As(err, &pe) && pe.Failure == provider.FailureGrant:
		c.Status, c.RefreshDue, c.LastError = store.StatusNeedsReauth, time.Time{}, pe.Error()
		if !b.saveResult(ctx, log, c) {
			return outcomeSkipped // the claim expires and the next sweep tries again
		}
		log.WarnContext(ctx, "refresh refused", "outcome", outcomeNeedsReauth, "latency_ms", time.Since(start).Milliseconds())
		return outcomeNeedsReauth
	default:
		c.FailureCount++
		c.LastError = err.Error()
		if c.FailureCount >= FailingAfter {
			c.Status = store.StatusFailing
		}
		var wait time.Duration
		if pe != nil {
			wait = pe.RetryAfter
		}
		c.RefreshDue = now.Add(max(wait, backoff(c.FailureCount)))
		if !b.saveResult(ctx, log, c) {
			return outcomeSkipped // the claim expires and the next sweep tries again
		}
		log.WarnContext(ctx, "refresh failed", "outcome", outcomeFailed, "attempt", c.FailureCount, "cause", err.Error(), "latency_ms", time.Since(start).Milliseconds())
		return outcomeFailed
	}
}

// renew asks the provider for a new token: the refresh_token grant, or a
// fresh client_credentials token for a connection made with that grant.
func (b *Broker) renew(ctx context.Context, p *provider.Provider, c *store.Connection) (*provider.Token, error) {
	grant := renewGrant(p, c)
	if grant == "" {
		return nil, &provider.Error{Failure: provider.FailureGrant, Reason: "connection has no way to renew its token"}
	}
	rp, _, err := p.Resolve(c.Params)
	if err != nil {
		// An operator's catalog change, not the customer's doing: keep the
		// tokens and retry with backoff, so fixing the catalog recovers it.
		return nil, &provider.Error{Failure: provider.FailureRequest, Reason: "connection parameters no longer match the catalog"}
	}
	creds, err := b.credentials(ctx, p)
	if err != nil {
		return nil, err
	}
	if grant == provider.GrantClientCredentials {
		return b.Wire.ClientCredentials(ctx, rp, creds, strings.Fields(c.Scope))
	}
	return b.Wire.Refresh(ctx, rp, creds, c.RefreshToken)
}

func (b *Broker) save(ctx context.Context, log *slog.Logger, c store.Connection) bool {
	if _, err := b.Store.SaveConnection(ctx, c); err != nil {
		log.WarnContext(ctx, "refresh result not saved", "cause", err.Error())
		return false
	}
	return true
}

// saveResult writes the outcome of a provider call on the claimed version,
// even when ctx has ended, and tries once more after a failure other than
// a lost race.
func (b *Broker) saveResult(ctx context.Context, log *slog.Logger, c store.Connection) bool {
	var err error
	for range 2 {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
		_, err = b.Store.SaveConnection(sctx, c)
		cancel()
		if err == nil {
			return true
		}
		if errors.Is(err, store.ErrConflict) {
			break
		}
	}
	log.ErrorContext(ctx, "refresh result lost", "cause", err.Error())
	return false
}

// backoff is exponential from one minute, capped at an hour, with jitter.
func backoff(attempt int) time.Duration {
	d := time.Minute << min(attempt-1, 6)
	d = min(d, time.Hour)
	return d/2 + rand.N(d/2+1)
}
