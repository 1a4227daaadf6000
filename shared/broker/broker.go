// Package broker holds the use cases of oauthbroker on top of the provider
// catalog, the store and the secrets:
//
//   - Connect (authorize) verifies the app's signed link and starts a flow;
//   - Callback completes it and stores the connection — or, with
//     Config.Confirm, keeps the grant pending until Confirm (confirm.go);
//   - Token hands out a usable access token, renewing it first if needed;
//   - Delete deletes a connection and revokes its grant;
//   - the refresh sweep (Sweep) renews what is due, with leases and
//     the dispatcher of package dispatch (dispatch.go: one lane per
//     provider, its rate budget and pauses), and revokes the grants
//     reconnects replaced (retired.go);
//   - lifecycle events (events.go) and refresh metrics (metrics.go).
//
// It speaks the domain, not HTTP nor AWS: a failed flow is an *Error with
// a Kind and a Code, a connect hands out a Binding rather than a cookie, and
// Token and Callback report a Connection rather than the stored record.
// The adapters — package httpapi for API Gateway, package schedule for
// the refresh schedule — turn those into responses. The functions and the
// local server wire it to DynamoDB or the embedded store, to Secrets
// Manager or a local file.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/dispatch"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// DefaultStateTTL is how long a connect flow may take (S1 allows ≤ 15 min).
const DefaultStateTTL = 10 * time.Minute

// Config is the broker's configuration.
type Config struct {
	// BaseURL is the public URL of the API (no trailing slash); the
	// redirect_uri is BaseURL + "/callback/" + provider. It comes from
	// configuration only, never from request headers (S18).
	BaseURL string
	// SecretsPrefix prefixes secret names ("oauthbroker/").
	SecretsPrefix string
	// ReturnTo lists the origins a browser may be sent back to.
	ReturnTo returnto.Allowlist
	// StateTTL is the lifetime of a connect flow; DefaultStateTTL if zero.
	StateTTL time.Duration
	// Confirm makes every authorization_code connect wait for the app's
	// confirmation (confirm.go, S24): the callback keeps the new grant
	// pending and Confirm makes it the connection's. Off, the callback
	// stores it at once (CONFIRM_CONNECTIONS=off).
	Confirm bool
}

// Broker runs the flows. All fields are required except Log, Now and
// Refresh. A Broker must not be copied after first use.
type Broker struct {
	Config  Config
	Catalog *provider.Catalog
	Store   store.Store
	// Secrets reads client credentials and the signing keyset; wrap it in
	// a secrets.Cache.
	Secrets secrets.Source
	// ProviderClient speaks the providers' token and revocation endpoints
	// (package provider's wire client).
	ProviderClient *provider.Client
	Log            *slog.Logger
	// Now is the record clock: due times, expiries and lease times are
	// taken from it (package clock); nil means time.Now.
	Now func() time.Time
	// Refresh tunes the refresh sweep and on-demand refreshes.
	Refresh RefreshOptions
	// Events receives connection lifecycle events (created, recovered,
	// needs_reauth, failing, deleted); nil publishes none.
	Events lifecycle.Publisher

	lastKeyReload atomic.Int64 // unix nanoseconds of the last forced keyset re-read

	gates dispatch.Gates // provider name → its sending discipline (dispatch.go)
}

// now is the record clock (see clock).
func (b *Broker) now() time.Time { return b.clock().Now() }

// Logger returns the broker's logger (slog.Default when Log is nil).
func (b *Broker) Logger() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}

func (b *Broker) stateTTL() time.Duration {
	if b.Config.StateTTL > 0 {
		return b.Config.StateTTL
	}
	return DefaultStateTTL
}

// RedirectURI is the callback URL registered at provider.
func (b *Broker) RedirectURI(provider string) string {
	return b.Config.BaseURL + "/callback/" + provider
}

// KeysSecret names the secret holding the signing keyset.
func (b *Broker) KeysSecret() string { return b.Config.SecretsPrefix + "keys" }

func (b *Broker) keyset(ctx context.Context) (*signing.Keyset, error) {
	raw, err := b.Secrets.Secret(ctx, b.KeysSecret())
	if err != nil {
		return nil, fmt.Errorf("reading signing keys: %w", err)
	}
	return signing.ParseKeyset(raw)
}

// KeyReloadEvery bounds forced re-reads of the signing keyset: a link or
// state naming an unknown key id triggers at most one per interval, so
// random key ids cannot turn into a flood of Secrets Manager calls.
const KeyReloadEvery = 30 * time.Second

// verifySigned runs verify (a link's or a state's check) under ks and,
// when it fails for an unknown key id, once more under the keyset
// reloadKeyset re-reads; it returns the keyset the last check ran under.
func (b *Broker) verifySigned(ctx context.Context, ks *signing.Keyset, verify func(*signing.Keyset) error) (*signing.Keyset, error) {
	err := verify(ks)
	if errors.Is(err, signing.ErrUnknownKey) {
		if fresh, ok := b.reloadKeyset(ctx); ok {
			return fresh, verify(fresh)
		}
	}
	return ks, err
}

// reloadKeyset re-reads the keyset past the cache, when a value names a key
// id the cached keyset does not know: the app may have rotated keys and
// signed with the new one minutes before this instance's cache expires.
func (b *Broker) reloadKeyset(ctx context.Context) (*signing.Keyset, bool) {
	inv, ok := b.Secrets.(secrets.Invalidator)
	last := b.lastKeyReload.Load()
	now := time.Now().UnixNano() // real time: a rate of Secrets Manager reads, not a record
	if !ok || now-last < int64(KeyReloadEvery) || !b.lastKeyReload.CompareAndSwap(last, now) {
		return nil, false
	}
	inv.Invalidate(b.KeysSecret())
	ks, err := b.keyset(ctx)
	return ks, err == nil
}

func (b *Broker) credentials(ctx context.Context, p *provider.Provider) (secrets.ClientCredentials, error) {
	return secrets.LoadClientCredentials(ctx, b.Secrets, b.Config.SecretsPrefix, p.Name)
}

// Error is a connect or callback that ends without success. Message is
// safe to show to the browser; Code is the fixed error code for the app;
// Cause is the fixed reason for the logs. Kind says what went wrong in the
// broker's words, and the adapter answers it: package httpapi maps each
// kind to an HTTP status, a page, a redirect or a JSON body.
type Error struct {
	Kind    Kind
	Message string
	Code    Code
	// Cause is one of the Cause* constants, set where the refusal is
	// decided and logged with the refusal.
	Cause Cause
	// ReturnURL, when set, is where the flow ends instead of on an error
	// page: the app's return URL with ?error=Code and the connection id.
	ReturnURL string
	// Err is the error behind Cause, if any, logged as its detail; it
	// never holds a credential.
	Err error
	// Program marks a failure told to a program rather than a browser (a
	// client_credentials connect without a return address): it gets Code
	// as data instead of a page.
	Program bool
}

func (e *Error) Error() string {
	s := string(e.Code) + " (" + string(e.Cause) + "): " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Kind is what went wrong in a connect or callback, in the broker's words.
// Each kind is answered by its own HTTP status (package httpapi holds the
// one table), so a new kind needs a status there.
type Kind string

// Error kinds.
const (
	// KindNotFound: the request names no provider in the catalog.
	KindNotFound Kind = "not_found"
	// KindMalformed: the request is incomplete, malformed, or does not
	// fit its flow (a code for a client_credentials flow, none for a
	// code flow).
	KindMalformed Kind = "malformed"
	// KindForbidden: the request is refused — a link or state that is not
	// valid, expired, replayed or from another browser, a return address
	// not allowed, an unexpected issuer.
	KindForbidden Kind = "forbidden"
	// KindUnavailable: the broker could not go on — the keyset, client
	// credentials or the store could not be read or written, or the
	// provider's entry no longer fits the flow.
	KindUnavailable Kind = "unavailable"
	// KindAuthorizationFailed: no authorization came about: the provider
	// answered the authorization request with an error, or the token
	// request could not be made from the entry.
	KindAuthorizationFailed Kind = "authorization_failed"
	// KindProviderRefused: the provider's token endpoint refused the
	// request or answered what the broker does not accept (S14).
	KindProviderRefused Kind = "provider_refused"
	// KindProviderUnavailable: the provider's token endpoint is down,
	// slow or throttling: worth trying again later.
	KindProviderUnavailable Kind = "provider_unavailable"
	// KindConflict: the connection id already holds a connection made
	// with another grant.
	KindConflict Kind = "conflict"
)

// Code is an error code the app is sent in ?error= (or a program as data):
// a fixed set, since nothing a provider or browser sends is echoed (S10).
type Code string

// Error codes.
const (
	CodeAccessDenied        Code = "access_denied"
	CodeInvalidScope        Code = "invalid_scope"
	CodeProviderError       Code = "provider_error"
	CodeProviderUnavailable Code = "provider_unavailable"
	CodeServerError         Code = "server_error"
	// CodeConnectionConflict: the connection id already holds a
	// connection made with another grant; delete it or use another id.
	CodeConnectionConflict Code = "connection_conflict"
	// Codes for error pages (no redirect possible).
	CodeBadRequest  Code = "bad_request"
	CodeForbidden   Code = "forbidden"
	CodeNotFound    Code = "not_found"
	CodeUnavailable Code = "unavailable"
)

func fail(kind Kind, code Code, cause Cause, msg string, err error) *Error {
	return &Error{Kind: kind, Code: code, Cause: cause, Message: msg, Err: err}
}

// UnavailableMessage is what a browser is told when the broker cannot go on.
const UnavailableMessage = "The service is temporarily unavailable. Please try again."

// Unavailable is the failure of a flow the broker could not go on with
// for err (a store, keyset or secrets failure).
func Unavailable(err error) *Error {
	return fail(KindUnavailable, CodeUnavailable, CauseInternal, UnavailableMessage, err)
}

// isNotFound reports a missing secret or record.
func isNotFound(err error) bool {
	return errors.Is(err, secrets.ErrNotFound) || errors.Is(err, store.ErrNotFound)
}
