package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/client/tokenapi"
)

// Code is the error code of an *Error: one of the token route's codes,
// which its contract (package tokenapi) defines together with the status
// each is answered with, or one of the codes below for answers that carry
// none of them.
type Code = tokenapi.Code

// The token route's codes.
const (
	CodeInvalidRequest      = tokenapi.CodeInvalidRequest      // 400: a bad provider, connection id or parameter
	CodeForbidden           = tokenapi.CodeForbidden           // 403: also API Gateway's: unsigned, wrongly signed or not allowed by IAM
	CodeNotFound            = tokenapi.CodeNotFound            // 404: unknown connection (ErrNotFound)
	CodeReauthRequired      = tokenapi.CodeReauthRequired      // 409: the customer must connect again (ErrReauthRequired)
	CodeConfirmationInvalid = tokenapi.CodeConfirmationInvalid // 410: Confirm's code is wrong, used or expired (ErrConfirmationInvalid)
	CodeConnectionConflict  = tokenapi.CodeConnectionConflict  // 422: Confirm: the connection holds a grant of another kind
	CodeInternal            = tokenapi.CodeInternal            // 500
	CodeProviderError       = tokenapi.CodeProviderError       // 502: the provider refused the refresh; RetryAfter set
	CodeProviderUnavailable = tokenapi.CodeProviderUnavailable // 503: try again after RetryAfter
)

// Codes of answers without one of the route's codes.
const (
	CodeUnauthorized      = tokenapi.CodeUnauthorized // 401: make dev's key is missing or wrong
	CodeThrottled    Code = "throttled"               // 429 from API Gateway: route throttling
	CodeUnexpected   Code = "unexpected_response"     // any other answer
)

// ErrNotFound matches (errors.Is) an *Error for an unknown connection.
var ErrNotFound = errors.New("oauthbroker client: connection not found")

// ErrReauthRequired matches (errors.Is) an *Error for a connection whose
// customer has to connect again: the provider refused its refresh token,
// or a forced refresh was asked of a connection that cannot refresh.
var ErrReauthRequired = errors.New("oauthbroker client: the customer must reconnect")

// ErrConfirmationInvalid matches (errors.Is) an *Error for a confirmation
// code that is wrong, was used already or has expired: the customer must
// connect again.
var ErrConfirmationInvalid = errors.New("oauthbroker client: confirmation code invalid, used or expired")

// Error is an answer of the token route other than success. It never holds
// a token or a credential.
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Code is the route's error code (CodeNotFound, CodeReauthRequired,
	// CodeProviderUnavailable, ...), or CodeForbidden, CodeThrottled or
	// CodeUnexpected for an answer of API Gateway without one.
	Code Code
	// RetryAfter is the wait the answer asked for, 0 if none: the
	// Retry-After of a code that carries it (CodeProviderError,
	// CodeProviderUnavailable), or of any 503 or 429.
	RetryAfter time.Duration
	// Message is the first line of API Gateway's {"message":…} for answers
	// without a code ("Forbidden", "Signature expired: …"), if any.
	Message string
}

// Error describes the answer: status, code, and the wait if any.
func (e *Error) Error() string {
	s := fmt.Sprintf("oauthbroker client: token route answered %d %s", e.StatusCode, e.Code)
	if e.Message != "" {
		s += fmt.Sprintf(" (%q)", e.Message)
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(", retry after %s", e.RetryAfter)
	}
	return s
}

// Is makes errors.Is(err, ErrNotFound) and errors.Is(err,
// ErrReauthRequired) match the corresponding codes.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == CodeNotFound
	case ErrReauthRequired:
		return e.Code == CodeReauthRequired
	case ErrConfirmationInvalid:
		return e.Code == CodeConfirmationInvalid
	}
	return false
}
