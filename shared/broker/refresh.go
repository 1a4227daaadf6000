package broker

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/dispatch"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Refresh defaults, used where RefreshOptions leaves a field zero.
const (
	// DefaultRefreshWorkers bounds the connections a sweep renews at once.
	DefaultRefreshWorkers = 8
	// DefaultRefreshBatch is how many due connections one sweep lists.
	DefaultRefreshBatch = 1000
	// DefaultLeasePeriod is how long a refresher holds a connection's lease.
	DefaultLeasePeriod = time.Minute
	// MinLeasePeriod leaves room for one provider call and the save.
	MinLeasePeriod = 30 * time.Second
	// DefaultFailingAfter consecutive transient failures mark a connection
	// failing (it is still retried).
	DefaultFailingAfter = 5
)

const (
	// startReserve: a sweep starts a connection only while this much time
	// is left before the invocation's deadline — its lease, one whole
	// provider call (a request leaves only if it fits, dispatch.Permit)
	// and the save of its result.
	startReserve = 5*time.Second + provider.DefaultHTTPTimeout + invocationReserve
	// saveTimeout bounds one write of a result; it runs even if the
	// invocation's context ends, because a rotated refresh token exists
	// nowhere else.
	saveTimeout = 5 * time.Second
	// saveReserve is the part of a lease kept for saving the result (two
	// tries) and clock skew between refreshers: the provider call must
	// end this long before the lease does.
	saveReserve = 2*saveTimeout + 5*time.Second
	// invocationReserve is the part of an invocation kept for saving the
	// result and answering after an on-demand provider call.
	invocationReserve = 2*saveTimeout + time.Second
)

// RefreshOptions tune the refresh. The zero value takes every default.
type RefreshOptions struct {
	// Workers bounds the connections a sweep renews at once (each: the
	// lease, the provider call, the save).
	Workers int
	// Batch is how many due connections one sweep lists; the rest wait
	// for the next tick.
	Batch int
	// LeasePeriod is how long a refresher holds a connection; a refresher
	// that dies costs this long. At least MinLeasePeriod.
	LeasePeriod time.Duration
	// FailingAfter consecutive transient failures mark a connection failing.
	FailingAfter int
}

func (b *Broker) refreshOptions() RefreshOptions {
	o := b.Refresh
	if o.Workers <= 0 {
		o.Workers = DefaultRefreshWorkers
	}
	if o.Batch <= 0 {
		o.Batch = DefaultRefreshBatch
	}
	if o.LeasePeriod <= 0 {
		o.LeasePeriod = DefaultLeasePeriod
	}
	o.LeasePeriod = max(o.LeasePeriod, MinLeasePeriod)
	if o.FailingAfter <= 0 {
		o.FailingAfter = DefaultFailingAfter
	}
	return o
}

// RefreshSummary counts what one sweep did (the refresh function's
// answer, package schedule).
type RefreshSummary struct {
	// Due is how many due connections (and retired grants) the sweep listed.
	// Refreshed counts renewed connections.
	Due       int `json:"due"`
	Refreshed int `json:"refreshed"`
	// NeedsReauth counts connections the provider refused for good.
	NeedsReauth int `json:"needs_reauth"`
	// Failed counts transient failures, rescheduled with backoff.
	Failed int `json:"failed"`
	// Skipped counts connections another refresher held or had renewed.
	Skipped int `json:"skipped"`
	// Deferred counts connections left due for the next tick: the deadline
	// came near, their provider's budget or Retry-After held them back, or
	// the invocation ended during their provider call.
	Deferred int `json:"deferred"`
	// Superseded counts results discarded because the connection changed
	// under the lease (a customer reconnected meanwhile).
	Superseded int `json:"superseded"`
	// Lost counts provider results that could not be saved (logged as
	// errors): with a rotating provider, such a connection needs re-auth.
	Lost int `json:"lost"`
	// Revoked counts grants replaced by a reconnect and revoked at the
	// provider (revoke_on_reconnect); RevokeFailed, such revocations that
	// failed (tried again later, or given up: logged).
	Revoked      int `json:"revoked"`
	RevokeFailed int `json:"revoke_failed"`
}

func (s *RefreshSummary) count(o outcome) {
	switch o {
	case outcomeRefreshed:
		s.Refreshed++
	case outcomeNeedsReauth:
		s.NeedsReauth++
	case outcomeFailed:
		s.Failed++
	case outcomeSuperseded:
		s.Superseded++
	case outcomeLost:
		s.Lost++
	case outcomeInterrupted:
		s.Deferred++
	case outcomeRevoked:
		s.Revoked++
	case outcomeRevokeFailed:
		s.RevokeFailed++
	default:
		s.Skipped++
	}
}

// maxListings bounds the listings of one sweep (see Sweep).
const maxListings = 4

// nearDeadline reports whether ctx's deadline leaves less than startReserve.
func (b *Broker) nearDeadline(ctx context.Context) bool {
	left, ok := b.clock().Left(ctx)
	return ok && left < startReserve
}

// Sweep renews the connections whose refresh is due: up to Batch of
// them, earliest first, with at most Workers provider calls at once, each
// provider within its rate budget and Retry-After. It stops starting work
// when the context's deadline comes near; what is left stays due for the
// next tick. Every connection is leased before its provider is called, so
// running sweeps twice at once, or again after a partial run (a duplicated
// EventBridge delivery, a Lambda retry), is harmless.
func (b *Broker) Sweep(ctx context.Context) (RefreshSummary, error) {
	opt := b.refreshOptions()
	var (
		sum  RefreshSummary
		mu   sync.Mutex
		skip []string
	)
	m := newRefreshMetrics()
	// A provider that is paused or pacing its budget keeps its due
	// connections at the front of the index; when a full batch is done,
	// the sweep lists again past such providers, so one backlogged
	// provider never starves the others.
	for range maxListings {
		keys, err := b.Store.ListDue(ctx, b.now(), opt.Batch, skip...)
		if err != nil {
			if sum.Due > 0 {
				break // keep what this sweep did; the next tick lists again
			}
			return RefreshSummary{}, fmt.Errorf("refresh: listing due connections: %w", err)
		}
		sum.Due += len(keys)
		rep := dispatch.Run(ctx, b.dispatchConfig(opt), keys, keyProvider, func(ctx context.Context, k store.Key, call *dispatch.Permit) dispatch.Outcome {
			r := b.sweepOne(ctx, k, call)
			if r.outcome == outcomeHeldBack {
				return dispatch.HeldBack
			}
			mu.Lock()
			defer mu.Unlock()
			sum.count(r.outcome)
			m.add(k.Provider, r)
			return dispatch.Done
		})
		sum.Deferred += rep.Deferred
		held := rep.Held
		if len(keys) < opt.Batch || ctx.Err() != nil || b.nearDeadline(ctx) {
			break
		}
		// A full batch: more may be due. List again, past the providers
		// that held connections back or are paused now.
		now := b.now()
		for _, k := range keys {
			if !slices.Contains(held, k.Provider) && !b.gate(k.Provider).Ready(now) {
				held = append(held, k.Provider)
			}
		}
		for _, p := range held {
			if !slices.Contains(skip, p) {
				skip = append(skip, p)
			}
		}
	}
	m.flush(ctx, b.Logger(), b.now())
	level := slog.LevelInfo
	if sum.Due == 0 {
		level = slog.LevelDebug // an idle tick is not news
	}
	b.Logger().Log(ctx, level, "refresh sweep", "due", sum.Due, "refreshed", sum.Refreshed, "needs_reauth", sum.NeedsReauth,
		"failed", sum.Failed, "skipped", sum.Skipped, "deferred", sum.Deferred, "superseded", sum.Superseded, "lost", sum.Lost,
		"revoked", sum.Revoked, "revoke_failed", sum.RevokeFailed)
	return sum, nil
}

type outcome string

// Refresh outcomes, as logged and counted in metrics.
const (
	outcomeRefreshed   outcome = "refreshed"
	outcomeNeedsReauth outcome = "needs_reauth"
	outcomeFailed      outcome = "failed"
	outcomeSkipped     outcome = "skipped"
	outcomeSuperseded  outcome = "superseded"
	outcomeLost        outcome = "lost"
	// outcomeInterrupted: the invocation ended during the provider call,
	// or the call could not start; the connection is released, due again,
	// with no failure counted.
	outcomeInterrupted outcome = "interrupted"
	// outcomeHeldBack: the provider was paused before the connection was
	// leased; nothing was written (counted as deferred).
	outcomeHeldBack outcome = "held_back"
	// outcomeRevoked and outcomeRevokeFailed: a retired grant (what a
	// reconnect replaced) was revoked at the provider, or was not.
	outcomeRevoked      outcome = "revoked"
	outcomeRevokeFailed outcome = "revoke_failed"
)

// FailureClass names why a renewal failed. It is stored on the connection
// as the string store.Connection.FailureClass; storedClass and markFailed
// are the only conversions.
type FailureClass string

// Failure classes.
const (
	// ClassInvalidGrant: the provider refused the refresh token: the
	// customer revoked access, or the grant expired. needs_reauth.
	ClassInvalidGrant FailureClass = "invalid_grant"
	// ClassInvalidGrantAfterNoAnswer: the provider refused the refresh
	// token on the attempt right after one that got no answer (ClassTimeout
	// or ClassNoAnswer). The provider may have honoured that request and
	// rotated the token in an answer the broker never saw, so this is
	// perhaps no revocation at all (docs/refresh.md, "The window that
	// remains"). needs_reauth all the same: the token is dead.
	ClassInvalidGrantAfterNoAnswer FailureClass = "invalid_grant_after_no_answer"
	// ClassInvalidClient: the provider refused the client credentials
	// even after a fresh read of the secret. needs_reauth.
	ClassInvalidClient FailureClass = "invalid_client"
	// ClassRateLimited: 429; retried after Retry-After.
	ClassRateLimited FailureClass = "rate_limited"
	// ClassUnavailable: 5xx or a network error; retried with backoff.
	ClassUnavailable FailureClass = "unavailable"
	// ClassTimeout: the request was sent and no answer came in time (the
	// outcome is unknown); retried with backoff.
	ClassTimeout FailureClass = "timeout"
	// ClassNoAnswer: the request was sent and the connection ended before
	// the whole answer came (the outcome is unknown); retried with backoff.
	ClassNoAnswer FailureClass = "no_answer"
	// ClassBadResponse: HTML, garbage or an unusable token response;
	// retried with backoff.
	ClassBadResponse FailureClass = "bad_response"
	// ClassRejected: another OAuth error (invalid_request, invalid_scope,
	// unsupported_grant_type); retried with backoff, since it is usually a
	// catalog or provider-side mistake the operator can fix.
	ClassRejected FailureClass = "rejected"
	// ClassCannotRenew: the provider entry and the stored tokens give no
	// way to renew (no refresh token, or an entry without the
	// refresh_token grant, as Omnisend's): only a new connect can replace
	// the token. needs_reauth, and the provider is not called.
	ClassCannotRenew FailureClass = "cannot_renew"
	// ClassCatalog: the catalog no longer fits the connection (its provider
	// left the catalog, or its parameters no longer match the entry). An
	// operator's change, not the customer's doing: the tokens are kept and
	// retried with backoff, so restoring the entry recovers the connection.
	ClassCatalog FailureClass = "catalog"
	// ClassInternal: the broker could not make the request (the client
	// secret unreadable).
	ClassInternal FailureClass = "internal"
)

// result is what one refresh attempt came to.
type result struct {
	outcome outcome
	class   FailureClass
	// conn is the connection as saved (valid for refreshed, needs_reauth
	// and failed).
	conn       store.Connection
	retryAfter time.Duration
	latency    time.Duration
	err        error
}

// sweepOne is the sweep's work on one due connection: take its lease
// (which is also the read), then renew it. call is released unused when
// the provider is not called.
func (b *Broker) sweepOne(ctx context.Context, k store.Key, call *dispatch.Permit) result {
	if k.Apart() {
		return b.revokeRetired(ctx, k, call)
	}
	clk := b.clock()
	now := clk.Now()
	if b.gate(k.Provider).Paused(now) {
		// Paused (a 429 or failures) since this key was dispatched: leave
		// it untouched for a later sweep rather than lease and release it.
		return result{outcome: outcomeHeldBack}
	}
	owner := newLeaseOwner()
	leaseStart := clk.Start()
	c, err := b.Store.Lease(ctx, k, store.LeaseRequest{Owner: owner, Now: now, Until: now.Add(b.refreshOptions().LeasePeriod), Due: true})
	if err != nil {
		if !errors.Is(err, store.ErrConflict) {
			b.Logger().WarnContext(ctx, "refresh skipped", "provider", k.Provider, "connection_id", k.ConnectionID, "reason", "lease failed", "cause", err.Error())
		}
		return result{outcome: outcomeSkipped} // held by another, or renewed since the index was read
	}
	p, ok := b.Catalog.Get(c.Provider)
	if !ok {
		// The provider left the catalog (an operator's change, perhaps for
		// one deploy): keep the tokens and keep retrying with backoff, so
		// restoring the entry recovers the connection.
		before := c
		r := result{err: catalogFailure("provider not in catalog")}
		b.recordFailure(&c, &r, now)
		b.finish(ctx, before, &c, owner, "schedule", &r)
		return r
	}
	return b.renewLeased(ctx, p, c, owner, "schedule", leaseStart, call)
}

// renewLeased calls the provider for c, whose lease owner holds, and
// saves the outcome in the write that releases the lease.
//
// Rotating refresh tokens make a race destructive: if two refreshers send
// the same refresh token, the provider honours one and answers the other
// invalid_grant, and writing the loser's view would kill the connection
// (RFC 9700 §4.14, S21). The lease makes the holder the only caller, and
// its provider call ends saveReserve before the lease does, so the result
// is written while the lease still holds. A holder that dies costs one
// lease period, never the connection.
//
// leaseStart is the real time (clock.Start) just before the lease was
// requested: the lease cannot end before leaseStart + LeasePeriod, so the
// provider call is cut off saveReserve before that.
func (b *Broker) renewLeased(ctx context.Context, p *provider.Provider, c store.Connection, owner, trigger string, leaseStart time.Time, call *dispatch.Permit) result {
	opt := b.refreshOptions()
	clk := b.clock()
	start := clk.Start()
	now := clk.Now()
	before := c
	callCtx, cancel := context.WithDeadline(ctx, callDeadline(ctx, leaseStart.Add(opt.LeasePeriod-saveReserve)))
	defer cancel()
	tok, err := b.renew(callCtx, p, &c, call)
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Failure == provider.FailureClient {
		// The operator may have rotated the client secret: read it past
		// the cache once before giving up on the connection.
		if inv, ok := b.Secrets.(secrets.Invalidator); ok {
			inv.Invalidate(secrets.ClientCredentialsName(b.Config.SecretsPrefix, p.Name))
			tok, err = b.renew(callCtx, p, &c, nil)
		}
	}
	r := result{latency: clk.Since(start), err: err}
	pe = nil
	var be *brokerError
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
		c.Status, c.FailureCount, c.FailureClass, c.LastError = store.StatusConnected, 0, "", ""
		c.NextRefresh = nextRefresh(p, &c, tok.Lifetime)
		r.outcome = outcomeRefreshed
	case errors.As(err, &be) && be.class == ClassCannotRenew, errors.As(err, &pe) && (pe.Failure == provider.FailureGrant || pe.Failure == provider.FailureClient):
		switch {
		case be != nil && be.class == ClassCannotRenew:
			r.class = ClassCannotRenew
		case pe.Failure == provider.FailureClient:
			r.class = ClassInvalidClient
			b.gate(p.Name).Pause(clk.Now().Add(clientPause))
		case storedClass(before) == ClassTimeout || storedClass(before) == ClassNoAnswer:
			r.class = ClassInvalidGrantAfterNoAnswer
		default:
			r.class = ClassInvalidGrant
		}
		c.Status, c.NextRefresh = store.StatusNeedsReauth, time.Time{}
		markFailed(&c, r.class, err)
		r.outcome = outcomeNeedsReauth
	case ctx.Err() != nil, errors.Is(err, dispatch.ErrNotSent):
		// The invocation itself ended, or the request never went out (not
		// the provider's doing): release the connection, due again at
		// once, without counting a failure.
		c.NextRefresh = now
		r.outcome = outcomeInterrupted
	default:
		if tok != nil && tok.RefreshToken != "" {
			// The answer was refused for its access token, but it rotated
			// the refresh token: keep the new one, or the next attempt
			// replays a retired token and loses the connection.
			c.RefreshToken = tok.RefreshToken
		}
		b.recordFailure(&c, &r, now)
	}
	b.finish(ctx, before, &c, owner, trigger, &r)
	return r
}

// callDeadline is when a provider call must end: leaseEnd (the lease's
// end less the save reserve), or earlier if the invocation itself ends
// sooner, so the result is still saved before Lambda stops the function.
func callDeadline(ctx context.Context, leaseEnd time.Time) time.Time {
	if dl, ok := ctx.Deadline(); ok && dl.Add(-invocationReserve).Before(leaseEnd) {
		return dl.Add(-invocationReserve)
	}
	return leaseEnd
}

// recordFailure marks c with the transient failure r.err: class, attempt
// count, description and the next attempt (backoff, or Retry-After if
// later); failing after FailingAfter in a row. Nothing else changes.
func (b *Broker) recordFailure(c *store.Connection, r *result, now time.Time) {
	r.class = failureClass(r.err)
	var pe *provider.Error
	if errors.As(r.err, &pe) {
		r.retryAfter = pe.RetryAfter
	}
	markFailed(c, r.class, r.err)
	if c.FailureCount >= b.refreshOptions().FailingAfter {
		c.Status = store.StatusFailing
	}
	c.NextRefresh = now.Add(max(r.retryAfter, backoff(c.FailureCount)))
	r.outcome = outcomeFailed
}

// finish saves c with its outcome r, releasing owner's lease, records what
// the save came to in r, logs the outcome and announces the status change
// from before (the connection as the refresh found it), if any.
func (b *Broker) finish(ctx context.Context, before store.Connection, c *store.Connection, owner, trigger string, r *result) {
	saved, serr := b.saveResult(ctx, *c, owner)
	switch {
	case serr == nil:
		r.conn = saved
	case errors.Is(serr, store.ErrConflict):
		// A plain save (a reconnect) replaced the connection under the
		// lease: its tokens are newer than ours.
		r.outcome, r.err = outcomeSuperseded, serr
	case r.outcome == outcomeRefreshed:
		r.outcome, r.err = outcomeLost, serr
	default:
		// Nothing new to keep: the lease expires and a later attempt
		// retries.
		r.outcome, r.err = outcomeSkipped, serr
	}
	b.logOutcome(ctx, *c, trigger, *r)
	b.publishTransition(ctx, before, *r)
}

// renew asks the provider for a new token: the refresh_token grant, or a
// fresh client_credentials token for a connection made with that grant.
// call (nil on demand) is acquired just before the request goes out.
func (b *Broker) renew(ctx context.Context, p *provider.Provider, c *store.Connection, call *dispatch.Permit) (*provider.Token, error) {
	grant := renewGrant(p, c)
	if grant == "" {
		return nil, renewError(p, c)
	}
	ep, err := p.Resolve(c.Params)
	if err != nil {
		// An operator's catalog change, not the customer's doing: keep the
		// tokens and retry with backoff, so fixing the catalog recovers it.
		return nil, catalogFailure("connection parameters no longer match the catalog")
	}
	creds, err := b.credentials(ctx, p)
	if err != nil {
		return nil, internalFailure("client credentials unreadable: " + err.Error())
	}
	if err := call.Acquire(ctx); err != nil {
		return nil, err
	}
	if call == nil && !b.clock().Fits(ctx, 0, b.ProviderClient.Timeout()) {
		// On demand, or the retry after invalid_client: the same rule as
		// Acquire's, a call that could be cut off by the deadline is not
		// sent.
		return nil, dispatch.ErrNotSent
	}
	defer call.Done()
	var tok *provider.Token
	if grant == provider.GrantClientCredentials {
		tok, err = b.ProviderClient.ClientCredentials(ctx, ep, creds, strings.Fields(c.Scope))
	} else {
		tok, err = b.ProviderClient.Refresh(ctx, ep, creds, c.RefreshToken)
	}
	var pe *provider.Error
	if errors.As(err, &pe) || err == nil {
		b.observe(p.Name, pe)
	}
	return tok, err
}

// brokerError is a refresh that failed before the provider had a say:
// the broker's own fault (ClassInternal), a catalog that no longer fits
// the connection (ClassCatalog) or a connection that cannot renew
// (ClassCannotRenew). Its reason is fixed text, free of credentials.
type brokerError struct {
	class  FailureClass
	reason string
}

func (e *brokerError) Error() string { return e.reason }

func internalFailure(reason string) error    { return &brokerError{ClassInternal, reason} }
func catalogFailure(reason string) error     { return &brokerError{ClassCatalog, reason} }
func cannotRenewFailure(reason string) error { return &brokerError{ClassCannotRenew, reason} }

// cannotRenew says why c, for which renewGrant found no grant, cannot be
// renewed: the stored tokens and p's grant types decide it, so the answer
// is the same on every attempt and the provider is not asked.
func cannotRenew(p *provider.Provider, c *store.Connection) error {
	switch {
	case c.Grant == provider.GrantClientCredentials:
		return cannotRenewFailure("provider entry does not allow the client_credentials grant")
	case c.RefreshToken == "":
		return cannotRenewFailure("connection has no refresh token")
	case !p.Supports(provider.GrantRefreshToken):
		return cannotRenewFailure("provider entry does not allow the refresh_token grant")
	}
	return cannotRenewFailure("connection has no way to renew its token")
}

// renewError is why renew cannot renew c: a connection that was put on
// the schedule (so its entry allowed renewal when it was saved) and has
// lost that since is an operator's change, retried (ClassCatalog) so
// restoring the entry recovers it; one that never could is final.
func renewError(p *provider.Provider, c *store.Connection) error {
	if !c.NextRefresh.IsZero() && c.RefreshToken != "" {
		return catalogFailure("provider entry no longer allows renewing this connection")
	}
	return cannotRenew(p, c)
}

// failureClass names the class of a transient failure.
func failureClass(err error) FailureClass {
	var pe *provider.Error
	var be *brokerError
	switch {
	case errors.As(err, &be):
		return be.class
	case !errors.As(err, &pe):
		return ClassInternal
	case pe.Status == 429:
		return ClassRateLimited
	case pe.Failure == provider.FailureUnavailable && pe.Unanswered && pe.Transport == provider.TransportTimeout:
		return ClassTimeout
	case pe.Failure == provider.FailureUnavailable && pe.Unanswered:
		return ClassNoAnswer
	case pe.Failure == provider.FailureUnavailable:
		return ClassUnavailable
	case pe.Failure == provider.FailureRequest:
		return ClassRejected
	default:
		return ClassBadResponse
	}
}

// storedClass is the failure class stored on c.
func storedClass(c store.Connection) FailureClass { return FailureClass(c.FailureClass) }

// markFailed counts one more failure on c, of class, described by err
// (whose message is free of credentials).
func markFailed(c *store.Connection, class FailureClass, err error) {
	c.FailureCount++
	c.FailureClass, c.LastError = string(class), err.Error()
}

// saveResult writes the outcome on the leased version and releases the
// lease, even when ctx has ended, and tries once more after a failure
// other than ErrConflict.
func (b *Broker) saveResult(ctx context.Context, c store.Connection, owner string) (store.Connection, error) {
	var err error
	for range 2 {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
		var saved store.Connection
		saved, err = b.Store.SaveLeased(sctx, c, owner)
		cancel()
		if err == nil || errors.Is(err, store.ErrConflict) {
			return saved, err
		}
	}
	return store.Connection{}, err
}

// logOutcome writes the one log line of a refresh outcome: provider,
// connection, outcome, class and latency — never a token.
func (b *Broker) logOutcome(ctx context.Context, c store.Connection, trigger string, r result) {
	level := slog.LevelInfo
	switch r.outcome {
	case outcomeLost:
		level = slog.LevelError
	case outcomeFailed, outcomeNeedsReauth, outcomeSuperseded, outcomeInterrupted:
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("provider", c.Provider), slog.String("connection_id", c.ConnectionID),
		slog.String("outcome", string(r.outcome)), slog.String("trigger", trigger),
		slog.Int64("latency_ms", r.latency.Milliseconds()),
	}
	if r.class != "" {
		attrs = append(attrs, slog.String("class", string(r.class)), slog.Int("attempt", c.FailureCount))
	}
	if r.outcome == outcomeFailed {
		attrs = append(attrs, slog.Time("next_attempt", c.NextRefresh))
	}
	if r.err != nil {
		attrs = append(attrs, slog.String("cause", r.err.Error())) // provider and store errors carry no credential
	}
	b.Logger().LogAttrs(ctx, level, "refresh", attrs...)
}

// backoff is exponential from one minute, capped at an hour, with jitter.
func backoff(attempt int) time.Duration {
	d := time.Minute << min(max(attempt, 1)-1, 6)
	d = min(d, time.Hour)
	return d/2 + rand.N(d/2+1)
}

// leaseOwners makes lease owner ids: a random id per process and a counter,
// so every lease taking has its own.
var leaseOwners struct {
	once   sync.Once
	prefix string
	n      atomic.Uint64
}

func newLeaseOwner() string {
	leaseOwners.once.Do(func() {
		var buf [8]byte
		_, _ = crand.Read(buf[:])
		leaseOwners.prefix = hex.EncodeToString(buf[:])
	})
	return leaseOwners.prefix + "-" + strconv.FormatUint(leaseOwners.n.Add(1), 10)
}
