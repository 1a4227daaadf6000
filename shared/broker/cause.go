package broker

import (
	"errors"

	"github.com/oauthbroker/oauthbroker/shared/signing"
)

// Cause names why a connect or callback did not succeed, for the log line
// that reports it ("connect rejected", "callback rejected"): one of the
// constants below, decided where the refusal is decided, so that an
// operator can count and alert on refusals by reason. It is fixed text: it
// never holds request data (a state, code, cookie or link signature) nor a
// provider's words. Neither the browser nor the app sees it; the app gets
// Error.Code.
type Cause string

// Causes of both flows.
const (
	// CauseQueryMalformed: the query string does not parse strictly
	// (a bad escape, a semicolon, a repeated parameter: S11). KindMalformed.
	CauseQueryMalformed Cause = "query_malformed"
	// CauseUnknownProvider: the path names no provider in the catalog. KindNotFound.
	CauseUnknownProvider Cause = "unknown_provider"
	// CauseUnknownKey: the link or state names a key id the keyset does
	// not hold, even after a fresh read (S3). KindForbidden.
	CauseUnknownKey Cause = "unknown_key"
	// CauseBadSignature: the link or state was not signed by this
	// keyset for this provider (tampered, or minted for another
	// provider: S5, S9). KindForbidden.
	CauseBadSignature Cause = "bad_signature"
	// CauseReturnToNotAllowed: the return address is not in
	// RETURN_ORIGINS — at connect, or at the callback when the origin was
	// removed while the flow ran (S15). KindForbidden.
	CauseReturnToNotAllowed Cause = "return_to_not_allowed"
	// CauseParamsInvalid: the connection parameters do not fit the
	// catalog entry — a link's (KindForbidden), or at the callback a flow's whose
	// entry changed while it ran (server_error to the app).
	CauseParamsInvalid Cause = "params_invalid"
	// CauseInternal: the broker could not go on — the keyset, client
	// credentials or the store could not be read or written; the log
	// line's detail says which. KindUnavailable (server_error to the app).
	CauseInternal Cause = "internal"
)

// Causes of a connect (authorize) refusal, all KindForbidden.
const (
	// CauseLinkMalformed: a field of the link is missing or ill-formed
	// (exp not in its one decimal spelling, a newline, an invalid
	// connection id or parameter name).
	CauseLinkMalformed Cause = "link_malformed"
	// CauseLinkExpired: the link's exp has passed.
	CauseLinkExpired Cause = "link_expired"
	// CauseExpTooFar: the link's exp is more than signing.MaxLinkLifetime
	// ahead: the app's signer is wrong, not the customer slow.
	CauseExpTooFar Cause = "exp_too_far"
	// CauseGrantNotOffered: the link asks for a grant the provider does
	// not offer (or none the broker knows).
	CauseGrantNotOffered Cause = "grant_not_offered"
	// CauseReturnToMissing: an authorization_code link without return_to.
	CauseReturnToMissing Cause = "return_to_missing"
	// CauseScopeInvalid: a scope has characters RFC 6749 §3.3 excludes.
	CauseScopeInvalid Cause = "scope_invalid"
	// CauseLinkUsed: the link was already used from another browser
	// (S23): leaked, or forwarded.
	CauseLinkUsed Cause = "link_used"
)

// Causes of a callback refusal before the code is redeemed (S4).
const (
	// CauseStateMissing: the callback has no state (S3). KindMalformed.
	CauseStateMissing Cause = "state_missing"
	// CauseStateMalformed: the state is not of the broker's form. KindForbidden.
	CauseStateMalformed Cause = "state_malformed"
	// CauseStateExpired: the state, or its record, has expired (S1). KindForbidden.
	CauseStateExpired Cause = "state_expired"
	// CauseStateReplayed: the browser sent a binding cookie but no record
	// matches state and cookie: the state was already used (S1), or it
	// belongs to another browser (S2) — a conditional delete cannot tell
	// the two apart. KindForbidden.
	CauseStateReplayed Cause = "state_replayed"
	// CauseCookieMissing: the browser sent no binding cookie and no
	// unbound (client_credentials) record matches: the flow was started
	// in another browser, or the cookie was lost (S2, S3). KindForbidden.
	CauseCookieMissing Cause = "cookie_missing"
	// CauseStateUnbound: an unbound record for a flow that is not
	// client_credentials (defence in depth). KindForbidden.
	CauseStateUnbound Cause = "state_unbound"
	// CauseProviderMismatch: the record belongs to another provider
	// (defence in depth: the signature covers the provider, S9). KindForbidden.
	CauseProviderMismatch Cause = "provider_mismatch"
	// CauseIssMismatch: iss is present and not the catalog's issuer, or
	// empty (RFC 9207, S8). KindForbidden.
	CauseIssMismatch Cause = "iss_mismatch"
	// CauseIssMissing: the catalog requires iss and the callback has
	// none (S8). KindForbidden.
	CauseIssMissing Cause = "iss_missing"
)

// Causes of a callback that fails after the state is consumed: the app is
// told with ?error= (Error.ReturnURL), or a program as data (Error.Program).
const (
	// CauseAuthorizationError: the provider answered the authorization
	// request with an error (RFC 6749 §4.1.2.1), mapped to Error.Code
	// (S10).
	CauseAuthorizationError Cause = "authorization_error"
	// CauseGrantMismatch: the callback does not fit the flow's grant (a
	// code for a client_credentials flow, none for a code flow).
	CauseGrantMismatch Cause = "grant_mismatch"
	// CauseTokenRequestFailed: the token request failed or its answer
	// was refused (S14); the detail is the *provider.Error.
	CauseTokenRequestFailed Cause = "token_request_failed"
	// CauseConnectionConflict: the connection id holds a connection made
	// with another grant.
	CauseConnectionConflict Cause = "connection_conflict"
)

// linkCause names why signing.VerifyLink refused a connect link.
func linkCause(err error) Cause {
	other := CauseLinkMalformed
	if errors.Is(err, signing.ErrTooFarAhead) {
		other = CauseExpTooFar
	}
	return verifyCause(err, CauseLinkExpired, other)
}

// stateCause names why signing.VerifyState refused a state.
func stateCause(err error) Cause {
	return verifyCause(err, CauseStateExpired, CauseStateMalformed)
}

// verifyCause names why signing refused a link or a state: its key, its
// signature, its expiry (expired), or else other.
func verifyCause(err error, expired, other Cause) Cause {
	switch {
	case errors.Is(err, signing.ErrUnknownKey):
		return CauseUnknownKey
	case errors.Is(err, signing.ErrBadSignature):
		return CauseBadSignature
	case errors.Is(err, signing.ErrExpired):
		return expired
	}
	return other
}
