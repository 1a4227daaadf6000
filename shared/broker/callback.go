package broker

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

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
	// Cookie returns the value of the named request cookie.
	Cookie func(name string) (string, bool)
}

// CallbackResult sends the browser back to the app.
type CallbackResult struct {
	// Location is the app's return URL with connection_id and status, or
	// with error=<code>.
	Location string
	// ClearCookie names the binding cookie to delete ("" when unknown).
	ClearCookie string
	// Connection is the saved connection, nil on error redirects.
	Connection *store.Connection
}

// Callback completes a flow. Everything about the state — signature,
// expiry, provider, browser binding, single use — is checked before the
// code is redeemed (S1–S5, S9, RFC 9700 §4.4); a provider ?error= is
// mapped to a fixed code (S10); the token response is checked (S14); the
// browser goes back to the return URL recorded server side (S5, S15) with
// neither code nor state nor token in it (S16).
//
// A failure before the state is consumed returns an *Error with no
// Location (an error page). After it, failures redirect to the app with
// ?error=.
func (b *Broker) Callback(ctx context.Context, req CallbackRequest) (CallbackResult, error) {
	p, ok := b.Catalog.Get(req.Provider)
	if !ok {
		return CallbackResult{}, fail(http.StatusNotFound, CodeNotFound, "Unknown provider.", nil)
	}
	stateValue := req.Query.Get("state")
	if stateValue == "" {
		return CallbackResult{}, fail(http.StatusBadRequest, CodeBadRequest, "The sign-in response is incomplete. Please start again from the application.", nil)
	}
	ks, err := b.keyset(ctx)
	if err != nil {
		return CallbackResult{}, unavailable(err)
	}
	now := b.now()
	id, err := signing.VerifyState(ks, p.Name, stateValue, now)
	if errors.Is(err, signing.ErrUnknownKey) {
		if fresh, ok := b.reloadKeyset(ctx); ok {
			id, err = signing.VerifyState(fresh, p.Name, stateValue, now)
		}
	}
	if errors.Is(err, signing.ErrExpired) {
		return CallbackResult{}, fail(http.StatusForbidden, CodeForbidden, "This sign-in took too long and has expired. Please start again from the application.", err)
	} else if err != nil {
		return CallbackResult{}, fail(http.StatusForbidden, CodeForbidden, "This sign-in response is not valid. Please start again from the application.", err)
	}
	cookieName := BindingCookieName(id)
	binding, ok := req.Cookie(cookieName)
	if !ok || binding == "" {
		return CallbackResult{}, fail(http.StatusForbidden, CodeForbidden, "This sign-in was started in another browser or its cookie is missing. Please start again from the application.", nil)
	}
	rec, err := b.Store.TakeState(ctx, id, signing.Hash(binding))
	if errors.Is(err, store.ErrNotFound) {
		e := fail(http.StatusForbidden, CodeForbidden, "This sign-in response was already used or belongs to another browser. Please start again from the application.", err)
		return CallbackResult{}, e
	} else if err != nil {
		return CallbackResult{}, unavailable(err)
	}
	if rec.Provider != p.Name || !now.Before(rec.ExpiresAt) {
		return CallbackResult{ClearCookie: cookieName}, fail(http.StatusForbidden, CodeForbidden, "This sign-in response is not valid. Please start again from the application.", nil)
	}
	back, err := b.Config.ReturnTo.Check(rec.ReturnTo)
	if err != nil { // RETURN_ORIGINS changed while the flow ran
		return CallbackResult{ClearCookie: cookieName}, fail(http.StatusForbidden, CodeForbidden, "The application's return address is no longer allowed.", err)
	}
	res := CallbackResult{ClearCookie: cookieName}
	redirectErr := func(code string, cause error) (CallbackResult, error) {
		e := fail(http.StatusFound, code, "", cause)
		e.Location = returnto.With(back, url.Values{"error": {code}, "connection_id": {rec.ConnectionID}})
		b.log().WarnContext(ctx, "callback failed", "provider", p.Name, "connection_id", rec.ConnectionID, "error", code, "cause", causeString(cause))
		return res, e
	}

	// RFC 9207 / S8: a mismatched issuer means the response came from
	// another authorization server (mix-up attack).
	if iss := req.Query.Get("iss"); p.Issuer != "" && (iss != "" && iss != p.Issuer || iss == "" && p.RequireIssuer) {
		return res, fail(http.StatusForbidden, CodeForbidden, "This sign-in response came from an unexpected issuer.", nil)
	}
	if perr := req.Query.Get("error"); perr != "" {
		return redirectErr(mapProviderError(perr), nil)
	}
	creds, err := b.credentials(ctx, p)
	if err != nil {
		return redirectErr(CodeServerError, err)
	}
	xctx, cancel := leaveTimeToAnswer(ctx)
	defer cancel()
	var tok *provider.Token
	code := req.Query.Get("code")
	switch {
	case !p.Supports(provider.GrantAuthorizationCode) && code == "":
		// client_credentials: authorize sent the browser here directly.
		tok, err = b.Wire.ClientCredentials(xctx, p, creds, rec.Scopes)
	case code == "" || !p.Supports(provider.GrantAuthorizationCode):
		return redirectErr(CodeProviderError, errors.New("callback without code"))
	default:
		tok, err = b.Wire.Exchange(xctx, p, creds, code, b.RedirectURI(p.Name), rec.PKCEVerifier)
	}
	if err != nil {
		e := tokenFailure(err)
		return redirectErr(e.Code, err)
	}
	conn, err := b.storeToken(ctx, p, rec.ConnectionID, rec.Scopes, tok)
	if err != nil {
		return redirectErr(CodeServerError, err)
	}
	b.log().InfoContext(ctx, "connected", "provider", p.Name, "connection_id", conn.ConnectionID, "version", conn.Version, "expires", !conn.ExpiresAt.IsZero())
	res.Connection = &conn
	res.Location = returnto.With(back, url.Values{"connection_id": {conn.ConnectionID}, "status": {string(conn.Status)}})
	return res, nil
}

// mapProviderError maps an RFC 6749 §4.1.2.1 error to the fixed set the
// app sees; the provider's own text is never passed on.
func mapProviderError(code string) string {
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

// tokenFailure maps a failed token request to an app error code.
func tokenFailure(err error) *Error {
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Temporary() {
		return fail(http.StatusBadGateway, CodeProviderUnavailable, "The provider is unavailable.", err)
	}
	if isNotFound(err) {
		return fail(http.StatusServiceUnavailable, CodeServerError, "The provider is not configured.", err)
	}
	return fail(http.StatusBadGateway, CodeProviderError, "The provider refused the request.", err)
}

// storeToken saves a freshly granted token as the connection's current
// one (a new grant replaces whatever the connection held), retrying a lost
// optimistic-concurrency race with a re-read.
func (b *Broker) storeToken(ctx context.Context, p *provider.Provider, connectionID string, requested []string, tok *provider.Token) (store.Connection, error) {
	var err error
	for range 3 {
		var c store.Connection
		c, err = b.Store.GetConnection(ctx, p.Name, connectionID)
		if errors.Is(err, store.ErrNotFound) {
			c = store.Connection{Provider: p.Name, ConnectionID: connectionID}
		} else if err != nil {
			return store.Connection{}, err
		}
		c.AccessToken, c.RefreshToken, c.TokenType = tok.AccessToken, tok.RefreshToken, tok.TokenType
		c.ExpiresAt = tok.ExpiresAt
		c.Scope = tok.Scope
		if c.Scope == "" {
			c.Scope = strings.Join(requested, " ")
		}
		c.Metadata = tok.Metadata
		c.Status, c.FailureCount, c.LastError = store.StatusConnected, 0, ""
		c.RefreshDue = refreshDue(p, &c, tok.Lifetime)
		var saved store.Connection
		saved, err = b.Store.SaveConnection(ctx, c)
		if !errors.Is(err, store.ErrConflict) {
			return saved, err
		}
	}
	return store.Connection{}, err
}

// refreshDue is when the schedule should renew c's token: a margin before
// expiry, or never when the token does not expire or cannot be renewed.
func refreshDue(p *provider.Provider, c *store.Connection, lifetime time.Duration) time.Time {
	canRenew := c.RefreshToken != "" && p.Supports(provider.GrantRefreshToken) || p.Supports(provider.GrantClientCredentials) && !p.Supports(provider.GrantAuthorizationCode)
	if c.ExpiresAt.IsZero() || !canRenew {
		return time.Time{}
	}
	return c.ExpiresAt.Add(-p.RefreshMargin(lifetime))
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
