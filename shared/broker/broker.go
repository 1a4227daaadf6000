// Package broker holds the use cases of oauthbroker — Connect, Callback and
// RefreshDue — on top of the provider catalog, the store and the secrets.
// It imports no AWS SDK: the functions and the local server wire it to
// DynamoDB or the embedded store, to Secrets Manager or a local file.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
	Wire    *provider.Client
	Log     *slog.Logger
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

// reloadKeyset re-reads the keyset past the cache, when a value names a key
// id the cached keyset does not know: the app may have rotated keys and
// signed with the new one minutes before this instance's cache expires.
func (b *Broker) reloadKeyset(ctx context.Context) (*signing.Keyset, bool) {
	inv, ok := b.Secrets.(interface{ Invalidate(name string) })
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

// Error is a flow that ends without success. Message is safe to show to
// the browser; Code is the fixed error code for the app when the browser
// is sent back (Location set); Cause is the fixed reason for the logs.
type Error struct {
	Status  int
	Message string
	// Code is one of the Code* constants.
	Code string
	// Cause is one of the Cause* constants, set where the refusal is
	// decided and logged with the refusal.
	Cause Cause
	// Location, when set, is where the browser goes instead of an error
	// page: the app's return URL with ?error=Code.
	Location string
	// Err is the error behind Cause, if any, logged as its detail; it
	// never holds a credential.
	Err error
	// JSON marks an error for a program rather than a browser (a
	// client_credentials connect without a return address): it is
	// answered {"error": Code} instead of a page.
	JSON bool
}

func (e *Error) Error() string {
	s := e.Code + " (" + string(e.Cause) + "): " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Error codes sent to the app in ?error= (a fixed set: nothing a provider
// or browser sends is echoed, S10).
const (
	CodeAccessDenied        = "access_denied"
	CodeInvalidScope        = "invalid_scope"
	CodeProviderError       = "provider_error"
	CodeProviderUnavailable = "provider_unavailable"
	CodeServerError         = "server_error"
	// CodeConnectionConflict: the connection id already holds a
	// connection made with another grant; delete it or use another id.
	CodeConnectionConflict = "connection_conflict"
	// Codes for error pages (no redirect possible).
	CodeBadRequest  = "bad_request"
	CodeForbidden   = "forbidden"
	CodeNotFound    = "not_found"
	CodeUnavailable = "unavailable"
)

func fail(status int, code string, cause Cause, msg string, err error) *Error {
	return &Error{Status: status, Code: code, Cause: cause, Message: msg, Err: err}
}

func unavailable(err error) *Error {
	return fail(http.StatusServiceUnavailable, CodeUnavailable, CauseInternal, "The service is temporarily unavailable. Please try again.", err)
}

// isNotFound reports a missing secret or record.
func isNotFound(err error) bool {
	return errors.Is(err, secrets.ErrNotFound) || errors.Is(err, store.ErrNotFound)
}
