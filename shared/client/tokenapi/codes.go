package tokenapi

import "net/http"

// Error is the body of every error answer of the routes: {"error": code}.
type Error struct {
	Code Code `json:"error"`
}

// Code is an error code of the routes.
type Code string

// The error codes. Each is always answered with the same status
// (Code.Status); the two about the provider carry Retry-After
// (Code.HasRetryAfter).
const (
	// CodeInvalidRequest (400): a provider, connection id, method or query
	// parameter the routes do not accept.
	CodeInvalidRequest Code = "invalid_request"
	// CodeForbidden (403): the request reached the function without the
	// IAM identity API Gateway's AWS_IAM authorization attaches; the
	// route is misconfigured, and nothing was read.
	CodeForbidden Code = "forbidden"
	// CodeNotFound (404): no such connection.
	CodeNotFound Code = "not_found"
	// CodeReauthRequired (409): the customer must connect again: the
	// provider refused the refresh token, or a forced refresh was asked of
	// a connection that cannot refresh.
	CodeReauthRequired Code = "reauth_required"
	// CodeConfirmationInvalid (410): no pending grant of this connection
	// has this confirmation code: it is wrong, was used already, or has
	// expired (the grant is then revoked). The customer must connect
	// again.
	CodeConfirmationInvalid Code = "confirmation_invalid"
	// CodeConnectionConflict (422): the connection id holds a connection
	// made with another grant, which a confirmation does not replace.
	CodeConnectionConflict Code = "connection_conflict"
	// CodeInternal (500): the broker failed on its side.
	CodeInternal Code = "internal"
	// CodeProviderError (502, Retry-After): the provider refused the
	// refresh request or answered nonsense; usually an operator's problem,
	// retried by the schedule after Retry-After.
	CodeProviderError Code = "provider_error"
	// CodeProviderUnavailable (503, Retry-After): the provider is down,
	// rate-limiting or slow, or another refresher holds the connection;
	// ask again after Retry-After.
	CodeProviderUnavailable Code = "provider_unavailable"
)

// CodeUnauthorized (401) is make dev's answer, not the routes': the local
// server takes a dev-only key in place of API Gateway's IAM authorization
// and refuses a request without it with this code. It is outside the
// contract (Codes, Status), since deployed routes never answer it.
const CodeUnauthorized Code = "unauthorized"

// codes is the contract: each code's status and whether its answers
// carry Retry-After.
var codes = []struct {
	code       Code
	status     int
	retryAfter bool
}{
	{CodeInvalidRequest, http.StatusBadRequest, false},
	{CodeForbidden, http.StatusForbidden, false},
	{CodeNotFound, http.StatusNotFound, false},
	{CodeReauthRequired, http.StatusConflict, false},
	{CodeConfirmationInvalid, http.StatusGone, false},
	{CodeConnectionConflict, http.StatusUnprocessableEntity, false},
	{CodeInternal, http.StatusInternalServerError, false},
	{CodeProviderError, http.StatusBadGateway, true},
	{CodeProviderUnavailable, http.StatusServiceUnavailable, true},
}

// Codes returns every error code of the contract.
func Codes() []Code {
	out := make([]Code, len(codes))
	for i, c := range codes {
		out[i] = c.code
	}
	return out
}

// Status is the HTTP status the code is answered with, or 0 if c is not a
// code of the contract.
func (c Code) Status() int {
	for _, e := range codes {
		if e.code == c {
			return e.status
		}
	}
	return 0
}

// HasRetryAfter reports whether answers with the code carry a Retry-After
// header (FormatRetryAfter).
func (c Code) HasRetryAfter() bool {
	for _, e := range codes {
		if e.code == c {
			return e.retryAfter
		}
	}
	return false
}
