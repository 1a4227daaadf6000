package broker

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// CallbackRequest is what the browser brought back from the provider.
type CallbackRequest struct {
	Provider string
	// Query holds the callback parameters, one value each (the caller
	// rejects duplicates, S11).
	Query url.Values
	// Binding returns the binding secret the browser brought for the flow
	// whose state record id is flow (Binding.Flow), if any.
	Binding func(flow string) (string, bool)
}

// CallbackResult sends the browser back to the app.
type CallbackResult struct {
	// Location is the app's return URL with connection_id and status. It
	// is empty after a client_credentials connect whose link named no
	// return address: the caller is a program, told what was stored
	// (never its tokens).
	Location string
	// ClearBinding is the flow whose binding the browser should drop
	// ("" when none is known): the state it guarded is used up.
	ClearBinding string
	// Connection is the saved connection, nil on failure.
	Connection *Connection
}

// Callback completes a flow. Everything about the state — signature,
// expiry, provider, browser binding, single use — is checked before the
// code is redeemed (S1–S5, S9, RFC 9700 §4.4); a provider ?error= is
// mapped to a fixed code (S10); the token response is checked (S14); the
// browser goes back to the return URL recorded server side (S5, S15) with
// neither code nor state nor token in it (S16).
//
// A failure before the state is consumed returns an *Error with no
// ReturnURL (an error page). After it, failures go back to the app with
// ?error= (Error.ReturnURL), or — for a client_credentials connect without
// a return address — are told to the program as data (Error.Program).
func (b *Broker) Callback(ctx context.Context, req CallbackRequest) (CallbackResult, error) {
	p, ok := b.Catalog.Get(req.Provider)
	if !ok {
		return CallbackResult{}, fail(KindNotFound, CodeNotFound, CauseUnknownProvider, "Unknown provider.", nil)
	}
	stateValue := req.Query.Get("state")
	if stateValue == "" {
		return CallbackResult{}, fail(KindMalformed, CodeBadRequest, CauseStateMissing, "The sign-in response is incomplete. Please start again from the application.", nil)
	}
	ks, err := b.keyset(ctx)
	if err != nil {
		return CallbackResult{}, Unavailable(err)
	}
	now := b.now()
	var id string
	_, err = b.verifySigned(ctx, ks, func(ks *signing.Keyset) (err error) {
		id, err = signing.VerifyState(ks, p.Name, stateValue, now)
		return err
	})
	if errors.Is(err, signing.ErrExpired) {
		return CallbackResult{}, fail(KindForbidden, CodeForbidden, CauseStateExpired, "This sign-in took too long and has expired. Please start again from the application.", err)
	} else if err != nil {
		return CallbackResult{}, fail(KindForbidden, CodeForbidden, stateCause(err), "This sign-in response is not valid. Please start again from the application.", err)
	}
	// A browser flow is bound to its cookie (S2); a client_credentials
	// flow has no browser to bind and was recorded Unbound. Without the
	// cookie only an Unbound record can be taken, so a missing cookie
	// still fails closed for every authorization_code flow (S3).
	bindingHash := store.Unbound
	if binding, ok := req.Binding(id); ok && binding != "" {
		bindingHash = signing.Hash(binding)
	}
	rec, err := b.Store.TakeState(ctx, id, bindingHash)
	if errors.Is(err, store.ErrNotFound) {
		cause, msg := CauseStateReplayed, "This sign-in response was already used or belongs to another browser. Please start again from the application."
		if bindingHash == store.Unbound {
			cause, msg = CauseCookieMissing, "This sign-in was started in another browser or its cookie is missing, or it was already used. Please start again from the application."
		}
		return CallbackResult{}, fail(KindForbidden, CodeForbidden, cause, msg, err)
	} else if err != nil {
		return CallbackResult{}, Unavailable(err)
	}
	res := CallbackResult{}
	if rec.BindingHash != store.Unbound {
		res.ClearBinding = id
	} else if rec.Grant != provider.GrantClientCredentials {
		// Defence in depth: only client_credentials states are unbound.
		return res, fail(KindForbidden, CodeForbidden, CauseStateUnbound, "This sign-in response is not valid. Please start again from the application.", nil)
	}
	if rec.Provider != p.Name {
		return res, fail(KindForbidden, CodeForbidden, CauseProviderMismatch, "This sign-in response is not valid. Please start again from the application.", nil)
	}
	if !now.Before(rec.ExpiresAt) {
		return res, fail(KindForbidden, CodeForbidden, CauseStateExpired, "This sign-in response is not valid. Please start again from the application.", nil)
	}
	var back *url.URL
	if rec.ReturnTo != "" {
		if back, err = b.Config.ReturnTo.Check(rec.ReturnTo); err != nil { // RETURN_ORIGINS changed while the flow ran
			return res, fail(KindForbidden, CodeForbidden, CauseReturnToNotAllowed, "The application's return address is no longer allowed.", err)
		}
	}
	redirectErr := func(kind Kind, code Code, cause Cause, err error) (CallbackResult, error) {
		e := fail(kind, code, cause, "", err)
		if back != nil {
			e.ReturnURL = returnto.With(back, url.Values{"error": {string(code)}, "connection_id": {rec.ConnectionID}})
		} else {
			e.Program = true
		}
		b.Logger().WarnContext(ctx, "callback failed", "provider", p.Name, "connection_id", rec.ConnectionID, "error", string(code), "cause", string(cause), "detail", causeString(err))
		return res, e
	}
	ep, err := p.Resolve(rec.Params)
	if err != nil { // the catalog's pattern changed while the flow ran
		return redirectErr(KindUnavailable, CodeServerError, CauseParamsInvalid, err)
	}

	// RFC 9207 / S8: a mismatched issuer means the response came from
	// another authorization server (mix-up attack). A present but empty
	// iss is a mismatch too (§2.4: compare whenever the parameter is present).
	if iss, sent := req.Query.Get("iss"), req.Query.Has("iss"); p.Issuer != "" && (sent && iss != p.Issuer || !sent && p.RequireIssuer) {
		cause := CauseIssMismatch
		if !sent {
			cause = CauseIssMissing
		}
		return res, fail(KindForbidden, CodeForbidden, cause, "This sign-in response came from an unexpected issuer.", nil)
	}
	if perr := req.Query.Get("error"); perr != "" {
		return redirectErr(KindAuthorizationFailed, mapProviderError(perr), CauseAuthorizationError, nil)
	}
	creds, err := b.credentials(ctx, p)
	if err != nil {
		return redirectErr(KindUnavailable, CodeServerError, CauseInternal, err)
	}
	xctx, cancel := leaveTimeToAnswer(ctx)
	defer cancel()
	var tok *provider.Token
	code := req.Query.Get("code")
	switch {
	case rec.Grant == provider.GrantClientCredentials && code == "" && p.Supports(rec.Grant):
		// client_credentials: authorize sent the caller here directly.
		tok, err = b.ProviderClient.ClientCredentials(xctx, ep, creds, rec.Scopes)
	case rec.Grant != provider.GrantAuthorizationCode || code == "" || !p.Supports(rec.Grant):
		return redirectErr(KindMalformed, CodeProviderError, CauseGrantMismatch, errors.New("callback does not fit the flow's grant"))
	default:
		tok, err = b.ProviderClient.Exchange(xctx, ep, creds, code, b.RedirectURI(p.Name), rec.PKCEVerifier)
	}
	if err != nil {
		kind, code, cause := tokenFailure(err)
		return redirectErr(kind, code, cause, err)
	}
	fresh := grantOf(p, rec, tok)
	if b.Config.Confirm && rec.Grant == provider.GrantAuthorizationCode && back != nil {
		// S24: the grant waits apart until the app confirms that the
		// signed-in user owns this connection id; the connection goes on
		// serving whatever it held.
		code, err := b.holdPending(ctx, p, fresh)
		if errors.Is(err, errGrantConflict) {
			return redirectErr(KindConflict, CodeConnectionConflict, CauseConnectionConflict, err)
		} else if err != nil {
			return redirectErr(KindUnavailable, CodeServerError, CauseInternal, err)
		}
		b.Logger().InfoContext(ctx, "connected, pending confirmation", "provider", p.Name, "connection_id", fresh.ConnectionID, "expires", !fresh.ExpiresAt.IsZero())
		view := viewOf(fresh)
		view.Status, view.AccessToken = StatusPending, ""
		res.Connection = &view
		// A browser flow always has a return address (Connect refuses one
		// without; the condition above only keeps a nil one from panicking).
		res.Location = returnto.With(back, url.Values{"connection_id": {fresh.ConnectionID}, "status": {string(StatusPending)}, ParamConfirmation: {code}})
		return res, nil
	}
	conn, err := b.promote(ctx, p, fresh)
	if errors.Is(err, errGrantConflict) {
		return redirectErr(KindConflict, CodeConnectionConflict, CauseConnectionConflict, err)
	} else if err != nil {
		return redirectErr(KindUnavailable, CodeServerError, CauseInternal, err)
	}
	b.Logger().InfoContext(ctx, "connected", "provider", p.Name, "connection_id", conn.ConnectionID, "version", conn.Version, "expires", !conn.ExpiresAt.IsZero())
	view := viewOf(conn)
	res.Connection = &view
	if back != nil {
		res.Location = returnto.With(back, url.Values{"connection_id": {conn.ConnectionID}, "status": {string(conn.Status)}})
	}
	return res, nil
}

// mapProviderError maps an RFC 6749 §4.1.2.1 error to the fixed set the
// app sees; the provider's own text is never passed on.
func mapProviderError(code string) Code {
	switch code {
	case "access_denied":
		return CodeAccessDenied
	case "invalid_scope":
		return CodeInvalidScope
	case "temporarily_unavailable", "server_error":
		return CodeProviderUnavailable
	default:
		return CodeProviderError
	}
}

// tokenFailure names a failed token request's kind, app error code and
// cause.
func tokenFailure(err error) (Kind, Code, Cause) {
	var pe *provider.Error
	isProvider := errors.As(err, &pe)
	switch {
	case isProvider && pe.Temporary():
		return KindProviderUnavailable, CodeProviderUnavailable, CauseTokenRequestFailed
	case isNotFound(err):
		return KindUnavailable, CodeServerError, CauseInternal
	case isProvider:
		return KindProviderRefused, CodeProviderError, CauseTokenRequestFailed
	}
	// No provider answer to blame: the request could not be made.
	return KindAuthorizationFailed, CodeProviderError, CauseTokenRequestFailed
}

// errGrantConflict: the connection id already holds a connection made with
// another grant.
var errGrantConflict = errors.New("connection exists with another grant")

// grantOf is the connection a fresh token makes for the flow rec: its
// tokens, scope (as granted, or as asked when the provider did not say),
// grant, parameters and first NextRefresh; its key and nothing else.
func grantOf(p *provider.Provider, rec store.StateRecord, tok *provider.Token) store.Connection {
	c := store.Connection{Provider: p.Name, ConnectionID: rec.ConnectionID, Status: store.StatusConnected}
	c.AccessToken, c.RefreshToken, c.TokenType = tok.AccessToken, tok.RefreshToken, tok.TokenType
	c.ExpiresAt = tok.ExpiresAt
	c.Scope = tok.Scope
	if c.Scope == "" {
		c.Scope = strings.Join(rec.Scopes, " ")
	}
	c.Metadata = tok.Metadata
	c.Grant, c.Params = rec.Grant, rec.Params
	c.NextRefresh = nextRefresh(p, &c, tok.Lifetime)
	return c
}

// promote saves fresh, a grant just obtained (grantOf), as the
// connection's current one (reconnecting replaces whatever the connection
// held), retrying a lost optimistic-concurrency race with a re-read, and
// publishes created. It refuses to turn a connection into one of another
// grant: a client_credentials token (the app's own account) must never
// silently replace a customer's authorization, nor the reverse.
func (b *Broker) promote(ctx context.Context, p *provider.Provider, fresh store.Connection) (store.Connection, error) {
	var err error
	for attempt := range 3 {
		// Only the version, grant and creation time of a connection being
		// replaced matter here: read it without its credentials, which the
		// callback (internet-facing) has no right to open. Credentials that
		// would not open (damaged, or sealed under a key that is gone) are
		// replaced by the fresh grant, the only repair there is.
		var c store.Connection
		c, err = b.Store.PeekConnection(ctx, p.Name, fresh.ConnectionID)
		if errors.Is(err, store.ErrNotFound) {
			c = store.Connection{}
		} else if err != nil {
			return store.Connection{}, err
		} else if c.Grant != fresh.Grant {
			return store.Connection{}, errGrantConflict
		}
		next := fresh
		next.Status, next.FailureCount, next.FailureClass, next.LastError = store.StatusConnected, 0, "", ""
		next.Version, next.CreatedAt = c.Version, c.CreatedAt
		var saved store.Connection
		if next.Version != 0 && p.RevokeOnReconnect && attempt == 0 {
			// A reconnect: the replaced grant is revoked by the refresh
			// schedule (retired.go), which may open its credentials. Only
			// on the first attempt: after a conflict, what is stored may
			// be this very write (a retried PutItem whose answer was lost
			// fails its own condition), and retiring it would revoke the
			// new grant. A grant replaced in a lost race stays alive.
			saved, err = b.Store.ReplaceConnection(ctx, next)
			if errors.Is(err, store.ErrNotRetired) {
				b.Logger().WarnContext(ctx, "reconnected; the replaced grant stays alive at the provider", "provider", p.Name, "connection_id", next.ConnectionID, "cause", err.Error())
				err = nil
			}
		} else {
			saved, err = b.Store.SaveConnection(ctx, next)
		}
		if err == nil {
			b.publish(ctx, lifecycle.Created, saved) // a first connect or a reconnect
		}
		if !errors.Is(err, store.ErrConflict) {
			return saved, err
		}
	}
	return store.Connection{}, err
}

// nextRefresh is when the schedule should renew c's token: a margin before
// expiry, or never when the token does not expire or cannot be renewed.
func nextRefresh(p *provider.Provider, c *store.Connection, lifetime time.Duration) time.Time {
	if c.ExpiresAt.IsZero() || renewGrant(p, c) == "" {
		return time.Time{}
	}
	// Jitter takes up to a fifth off the margin, so tokens minted together
	// (a bulk import, a provider outage's recovery) do not all come due in
	// the same sweep; the margin never exceeds half the lifetime.
	m := p.RefreshMargin(lifetime)
	return c.ExpiresAt.Add(-m + rand.N(m/5+1))
}

// renewGrant is how c's token is renewed: "refresh_token",
// "client_credentials" (re-minted), or "" when it cannot be.
func renewGrant(p *provider.Provider, c *store.Connection) string {
	switch {
	case c.Grant == provider.GrantClientCredentials && p.Supports(c.Grant):
		return provider.GrantClientCredentials
	case c.Grant == provider.GrantAuthorizationCode && c.RefreshToken != "" && p.Supports(provider.GrantRefreshToken):
		return provider.GrantRefreshToken
	}
	return ""
}

// causeString renders an error for logs; callers only pass errors whose
// messages hold no credential (provider.Error, store and secrets errors).
func causeString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// answerReserve is kept free before the invocation's deadline so that a
// slow provider still leaves time to send the browser back with an error
// instead of the function timing out (which API Gateway shows as a 500).
const answerReserve = time.Second

func leaveTimeToAnswer(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, d.Add(-answerReserve))
	}
	return context.WithCancel(ctx)
}
