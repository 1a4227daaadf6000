// Package store defines what oauthbroker keeps between requests — pending
// authorization states and connections — and the Store port that holds them.
//
// Two implementations exist: store/dynamo (DynamoDB, used in AWS) and
// store/embedded (a single local file, used by `make dev`). Both pass the
// conformance suite in internal/testsupport/storetest. The store knows nothing about
// providers or OAuth wire formats: it keeps records and enforces the
// conditional writes that make the flows safe (single-use states, optimistic
// concurrency on connections).
package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"
)

// Errors returned by every Store implementation.
var (
	// ErrNotFound means no record matched (for a state: absent, already
	// consumed, expired, or bound to another browser).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict means a conditional write lost: the record changed since it
	// was read (its version moved on) or it already exists.
	ErrConflict = errors.New("store: conflict")
)

// Status is the lifecycle status of a connection.
type Status string

// Connection statuses.
const (
	// StatusConnected means the tokens are believed valid.
	StatusConnected Status = "connected"
	// StatusNeedsReauth means the provider refused the grant (invalid_grant):
	// the customer must connect again; the broker stops refreshing.
	StatusNeedsReauth Status = "needs_reauth"
	// StatusFailing means refreshes failed repeatedly for transient reasons.
	StatusFailing Status = "failing"
	// StatusPending is the status of a grant that waits for the app's
	// confirmation (PendingGrant); no stored connection has it.
	StatusPending Status = "pending"
)

// StateRecord is the server-side half of a pending authorization: created by
// authorize, consumed exactly once by callback. It lives at most a few
// minutes; ExpiresAt is enforced by code, the TTL attribute only cleans up.
type StateRecord struct {
	// ID identifies the record: the hex SHA-256 of the state's random nonce,
	// so a leaked table does not reveal usable states.
	ID           string
	Provider     string
	ConnectionID string
	ReturnTo     string
	Scopes       []string
	// PKCEVerifier is the RFC 7636 code_verifier, empty when PKCE is off.
	PKCEVerifier string
	// Grant is the grant the flow uses: "authorization_code" or
	// "client_credentials".
	Grant string
	// Params are the connection parameters from the signed link (with
	// the catalog's defaults filled in).
	Params map[string]string
	// BindingHash is the hex SHA-256 of the browser-binding cookie value,
	// or Unbound for a flow without a browser to bind (client_credentials).
	BindingHash string
	ExpiresAt   time.Time
}

// LinkUse is the first use of a signed connect link, recorded by its
// nonce so that the link works from one browser only: the one that used
// it first may use it again (the customer went back and clicked again)
// until it expires; any other is refused.
type LinkUse struct {
	// ID is the hex SHA-256 of the link's nonce.
	ID string
	// BindingHash is the hex SHA-256 of the secret the first browser keeps
	// for the link.
	BindingHash string
	// ExpiresAt is the link's expiry; the record is not needed after it.
	ExpiresAt time.Time
}

// PendingGrant is a grant a callback obtained that the app has not yet
// confirmed: its tokens are kept apart from the connection, which goes on
// serving whatever it held, until the app confirms the grant (TakePending)
// or it expires and the refresh schedule revokes it (LeaseRetired,
// DropRetired: an unconfirmed grant is retired as a replaced one is).
type PendingGrant struct {
	// Key names the connection it is for; Key.Pending is the hex SHA-256
	// of its confirmation code, the only form in which a store keeps it.
	Key Key
	// Connection is what confirming stores as the connection's current
	// grant: tokens, grant, scope, metadata, parameters, NextRefresh.
	// Its Version, lease and failure fields are not kept.
	Connection Connection
	// ExpiresAt is when the confirmation code stops working; the grant is
	// then due for revocation.
	ExpiresAt time.Time
}

// Unbound is the BindingHash of a state not bound to a browser cookie. A
// cookie's hash is 64 hex digits, so it never equals Unbound.
const Unbound = "unbound"

// Connection is one customer account at one provider, with its tokens.
type Connection struct {
	Provider     string
	ConnectionID string
	Status       Status

	AccessToken  string
	RefreshToken string
	TokenType    string
	// ExpiresAt is zero when the token does not expire.
	ExpiresAt time.Time
	// Scope is the scope the provider actually granted (space-separated as
	// received, or as requested when the provider did not say).
	Scope string
	// Metadata holds non-secret provider fields returned with the token,
	// such as a provider-side user id.
	Metadata map[string]string
	// Grant is how the connection was made: "authorization_code" (renewed
	// with its refresh token) or "client_credentials" (re-minted).
	Grant string
	// Params are the connection parameters its provider entry declares
	// (GetResponse 360's customer domain), used for every token request.
	Params map[string]string

	// NextRefresh is when the refresh schedule should next renew the tokens
	// (after a failure: the next attempt); zero means never (no expiry, or
	// the connection needs re-authorization). Only connections with a
	// NextRefresh appear in ListDue.
	NextRefresh time.Time
	// FailureCount counts consecutive failed refreshes; FailureClass is the
	// class of the last one (such as "rate_limited" or "invalid_grant") and
	// LastError a short credential-free description of it. A success
	// clears all three.
	FailureCount int
	FailureClass string
	LastError    string

	// Lease is the refresh lease, held while one refresher renews the
	// tokens; zero when free. Only Lease sets it and only SaveLeased
	// (or a plain SaveConnection, which supersedes it) clears it.
	Lease Lease

	// Version increases by one on every write (optimistic concurrency).
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Store is the persistence port.
type Store interface {
	// PutState records a new pending authorization. It fails with
	// ErrConflict if a record with the same ID exists.
	PutState(ctx context.Context, s StateRecord) error
	// TakeState atomically deletes and returns the state record with the
	// given ID if, and only if, its BindingHash equals bindingHash. Anything
	// else — absent, already taken, other binding — returns ErrNotFound and
	// leaves the store unchanged. Two concurrent takes of one ID: exactly one
	// succeeds. Expiry is checked by the caller.
	TakeState(ctx context.Context, id, bindingHash string) (StateRecord, error)
	// UseLink records u, a use of a connect link: if the link was never
	// used, or was used by the same browser (the same BindingHash), it
	// succeeds; a use by another browser returns ErrConflict and changes
	// nothing. Two concurrent first uses from different browsers: exactly
	// one succeeds. Expiry is checked by the caller.
	UseLink(ctx context.Context, u LinkUse) error

	// PutPending records a pending grant, listed by ListDue (Key.Pending
	// set) once it expires. ErrConflict if one with its key exists.
	PutPending(ctx context.Context, g PendingGrant) error
	// TakePending atomically deletes and returns the pending grant k names,
	// its credentials opened, if it exists and has not expired at now (nor
	// been leased for revocation). Anything else returns ErrNotFound and
	// changes nothing; of two concurrent takes, exactly one succeeds.
	TakePending(ctx context.Context, k Key, now time.Time) (PendingGrant, error)

	// GetConnection returns a connection or ErrNotFound. A connection whose
	// sealed credentials do not open comes back without them, with an error
	// wrapping envelope.ErrOpen: the caller may still overwrite it.
	GetConnection(ctx context.Context, provider, connectionID string) (Connection, error)
	// PeekConnection returns a connection without its credentials
	// (AccessToken and RefreshToken empty), which it never opens: for a
	// caller that needs only the version, grant or status, and so needs no
	// right to open them (the callback, which replaces connections).
	// ErrNotFound if there is none.
	PeekConnection(ctx context.Context, provider, connectionID string) (Connection, error)
	// SaveConnection writes c if the stored version still equals c.Version
	// (0 meaning "must not exist yet"), storing it with Version+1 and
	// returning the saved connection. A lost race returns ErrConflict.
	// c.Lease is ignored: the saved connection holds no lease, so a plain
	// save (a customer reconnecting) supersedes a refresher's lease, whose
	// SaveLeased then fails.
	SaveConnection(ctx context.Context, c Connection) (Connection, error)
	// Lease takes the refresh lease of a connection for req.Owner until
	// req.Until, in one conditional write that bumps the version, and
	// returns the connection as stored after it. It succeeds only if the
	// connection exists, its lease is free or expired (Until before
	// req.Now), and the request's own conditions hold (see LeaseRequest);
	// otherwise it returns ErrConflict and changes nothing.
	Lease(ctx context.Context, k Key, req LeaseRequest) (Connection, error)
	// SaveLeased writes c like SaveConnection, but only while the stored
	// lease is still owner's and the version is still c.Version, and
	// releases the lease in the same write. Anything else — the lease
	// expired and was taken by another, or a plain save superseded it —
	// returns ErrConflict and changes nothing.
	SaveLeased(ctx context.Context, c Connection, owner string) (Connection, error)
	// DeleteConnection deletes a connection, whatever its version or lease,
	// and returns it as it was; ErrNotFound if there is none. A refresher
	// holding its lease then fails to save (ErrConflict), so the deleted
	// connection stays deleted.
	DeleteConnection(ctx context.Context, provider, connectionID string) (Connection, error)
	// ReplaceConnection is SaveConnection for a reconnect whose replaced
	// grant is to be revoked (see RetiredGrant): it writes c as
	// SaveConnection does, c.Version naming the version it replaces, and
	// keeps the credentials that write replaced — sealed as they were
	// stored, never opened here — as a retired grant of the connection,
	// due at once. A replaced connection without credentials retires
	// nothing. If c was saved but its replaced credentials could not be
	// kept, it returns the saved connection and an error wrapping
	// ErrNotRetired.
	ReplaceConnection(ctx context.Context, c Connection) (Connection, error)
	// LeaseRetired takes the retired grant k names (a key from ListDue),
	// or the expired pending grant (Key.Pending set), for its revocation: if it is due at now, it moves its due time to
	// until (when it comes due again unless dropped), counts the attempt
	// and returns the grant with its credentials opened and InUse set. ErrConflict if
	// it is not due, already dropped or gone. Credentials that do not open
	// come back empty with an error wrapping envelope.ErrOpen.
	LeaseRetired(ctx context.Context, k Key, now, until time.Time) (RetiredGrant, error)
	// DropRetired erases a retired (or expired pending) grant's
	// credentials and takes it off ListDue: its revocation is done or
	// given up. Dropping a grant
	// already dropped or gone is not an error.
	DropRetired(ctx context.Context, k Key) error
	// ListDue returns the keys of up to limit connections whose NextRefresh
	// is at or before now, of retired grants due at now (Key.Retired set)
	// and of pending grants expired at now (Key.Pending set), earliest due
	// first. It reads an index, so the caller re-reads
	// each connection before acting on it.
	// Connections of the providers named in skip are left out (a sweep
	// lists past providers it cannot call now).
	ListDue(ctx context.Context, now time.Time, limit int, skip ...string) ([]Key, error)
}

// Lease is a refresher's exclusive right to renew one connection's tokens.
type Lease struct {
	// Owner identifies one lease taking (unique per attempt, not per
	// process), so an expired holder can never mistake a later lease for
	// its own.
	Owner string
	// Until is when the lease expires; holders finish their work well
	// before it.
	Until time.Time
}

// Free reports whether the lease may be taken at now: never taken,
// released, or expired.
func (l Lease) Free(now time.Time) bool {
	return l.Owner == "" || l.Until.Unix() < now.Unix()
}

// LeaseRequest describes one attempt to take a connection's lease.
type LeaseRequest struct {
	Owner string
	// Now is the taker's clock: a lease whose Until is before Now (in whole
	// seconds) has expired.
	Now   time.Time
	Until time.Time
	// Due, for the refresh schedule, takes the lease only if the
	// connection's NextRefresh is set and not after Now, and moves NextRefresh
	// to Until: the connection leaves the due index while leased and comes
	// back to it by itself if the holder dies.
	Due bool
	// Version, when not 0, takes the lease only if the stored version still
	// equals it: an on-demand reader acting on what it read.
	Version int64
}

// Check rejects a lease request that no Store takes: k must name a
// connection (not a retired grant) and the request an owner and an Until
// after Now.
func (r LeaseRequest) Check(k Key) error {
	if err := CheckKey(k.Provider, k.ConnectionID); err != nil {
		return err
	}
	if r.Owner == "" || !r.Until.After(r.Now) || k.Retired != "" || k.Pending != "" {
		return errors.New("want a connection's key, an owner and Until after Now")
	}
	return nil
}

// CheckKey rejects connection keys a store cannot hold unambiguously: an
// empty part, or a "#" in the provider name (DynamoDB's partition key is
// conn#<provider>#<connection_id>). Provider names in the catalog and
// signed connection IDs never contain one.
func CheckKey(provider, connectionID string) error {
	switch {
	case provider == "" || connectionID == "":
		return errors.New("store: empty provider or connection ID")
	case strings.Contains(provider, "#"):
		return errors.New(`store: provider name contains "#"`)
	}
	return nil
}

// Key names one connection, or with Retired one retired grant of it, or
// with Pending one pending grant for it.
type Key struct {
	Provider     string
	ConnectionID string
	// Retired, when set, identifies a retired grant of the connection (see
	// RetiredGrant) rather than the connection itself.
	Retired string
	// Pending, when set, identifies a pending grant for the connection
	// (see PendingGrant): the hex SHA-256 of its confirmation code.
	Pending string
}

// Apart reports whether k names a grant kept apart from its connection
// (retired or pending) rather than the connection itself.
func (k Key) Apart() bool { return k.Retired != "" || k.Pending != "" }

// CheckApart rejects a key that names no retired or pending grant (or
// both at once), one definition for every Store.
func (k Key) CheckApart() error {
	if err := CheckKey(k.Provider, k.ConnectionID); err != nil {
		return err
	}
	if k.Retired == "" == (k.Pending == "") {
		return errors.New("store: key names no retired or pending grant")
	}
	return nil
}

// CheckPending rejects a key that names no pending grant.
func (k Key) CheckPending() error {
	if err := k.CheckApart(); err != nil || k.Pending == "" {
		return errors.New("store: key names no pending grant")
	}
	return nil
}

// DueKey is a key that ListDue may return, with the time it fell due.
type DueKey struct {
	Key Key
	At  time.Time
}

// FirstDue is ListDue's order, one definition for every Store: the keys of
// up to limit entries, earliest due first, ties by provider, connection and
// retired grant, so that a sweep's page is the same however the store
// gathered it. It sorts due in place.
func FirstDue(due []DueKey, limit int) []Key {
	slices.SortFunc(due, func(a, b DueKey) int {
		return cmp.Or(
			a.At.Compare(b.At),
			strings.Compare(a.Key.Provider, b.Key.Provider),
			strings.Compare(a.Key.ConnectionID, b.Key.ConnectionID),
			strings.Compare(a.Key.Retired, b.Key.Retired),
			strings.Compare(a.Key.Pending, b.Key.Pending),
		)
	})
	keys := make([]Key, 0, min(limit, len(due)))
	for _, d := range due[:min(limit, len(due))] {
		keys = append(keys, d.Key)
	}
	return keys
}
