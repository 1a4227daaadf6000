package client

import (
	"errors"
	"fmt"
	"time"
)

// Error codes of an *Error. The token route's own codes are those of its
// contract; the others describe answers that carry none.
const (
	CodeInvalidRequest      = "invalid_request"      // 400: a bad provider, connection id or parameter
	CodeNotFound            = "not_found"            // 404: unknown connection (ErrNotFound)
	CodeReauthRequired      = "reauth_required"      // 409: the customer must connect again (ErrReauthRequired)
	CodeProviderUnavailable = "provider_unavailable" // 503: try again after RetryAfter
	CodeInternal            = "internal"             // 500
	CodeUnauthorized        = "unauthorized"         // 401: make dev's key is missing or wrong
	CodeForbidden           = "forbidden"            // 403 from API Gateway: unsigned, wrongly signed or not allowed by IAM
	CodeThrottled           = "throttled"            // 429 from API Gateway: route throttling
	CodeUnexpected          = "unexpected_response"  // any other answer
)

// ErrNotFound matches (errors.Is) an *Error for an unknown connection.
var ErrNotFound = errors.New("oauthbroker client: connection not found")

// ErrReauthRequired matches (errors.Is) an *Error for a connection whose
// customer has to connect again: the provider refused its refresh token,
// or a forced refresh was asked of a connection that cannot refresh.
var ErrReauthRequired = errors.New("oauthbroker client: the customer must reconnect")

// Error is an answer of the token route other than success. It never holds
// a token or a credential.
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Code is the route's error code ("not_found", "reauth_required",
	// "provider_unavailable", ...), or CodeForbidden, CodeThrottled or
	// CodeUnexpected for answers without one.
	Code string
	// RetryAfter is the wait the answer asked for (Retry-After on 503 and
	// 429), 0 if none.
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
	}
	return false
}
