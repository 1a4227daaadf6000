package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/client/tokenapi"
)

// Failure classifies a failed token request.
type Failure string

// Failure classes.
const (
	// FailureGrant: the grant (code or refresh token) is invalid, expired or
	// revoked (invalid_grant). Only the customer can fix it by reconnecting.
	FailureGrant Failure = "invalid_grant"
	// FailureClient: the provider rejected our client credentials.
	FailureClient Failure = "invalid_client"
	// FailureRequest: the provider rejected the request for another
	// reason (invalid_request, invalid_scope, unsupported_grant_type, ...).
	FailureRequest Failure = "rejected"
	// FailureUnavailable: 429, 5xx, a timeout or a network error; retry.
	FailureUnavailable Failure = "unavailable"
	// FailureResponse: the provider answered something that is not a valid
	// token response (HTML, garbage, a redirect, a token_type we cannot use).
	FailureResponse Failure = "bad_response"
	// FailureTokenSyntax: the provider issued an access or refresh token
	// that is not RFC 6749 Appendix A syntax (see validTokenValue). It is
	// a provider fault that waiting does not cure, so it is not
	// Temporary: a connect fails with provider_error. Nothing is stored.
	FailureTokenSyntax Failure = "bad_token"
)

// Transport says why a request got no whole answer.
type Transport uint8

// Transport failures.
const (
	// TransportAnswered: an answer came (the failure is in it), or no
	// request was sent.
	TransportAnswered Transport = iota
	// TransportNetwork: the connection could not be made, or broke.
	TransportNetwork
	// TransportTimeout: a deadline passed before the whole answer came,
	// the HTTP client's or the context's.
	TransportTimeout
	// TransportCancelled: the context was cancelled.
	TransportCancelled
)

// Error is a failed token request. Its message never contains a URL,
// credential or response body, so it is safe to log.
type Error struct {
	Failure Failure
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Code is the provider's RFC 6749 §5.2 error code, when it sent one
	// made of safe characters.
	Code string
	// RetryAfter is the provider's Retry-After, if any.
	RetryAfter time.Duration
	// Transport says why no whole answer came (FailureUnavailable only).
	Transport Transport
	// Reason is a short fixed description, for people: decide on Failure
	// and Transport.
	Reason string
	// Unanswered: the request was sent in full but no whole answer came
	// back (a timeout or a connection cut after sending). The provider may
	// have acted on it — with a rotating refresh token, rotated it — so
	// the outcome is unknown rather than failed.
	Unanswered bool
	err        error // context errors only
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token request failed (%s", e.Failure)
	if e.Status != 0 {
		fmt.Fprintf(&b, ", HTTP %d", e.Status)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, ", error=%s", e.Code)
	}
	b.WriteString("): ")
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns the context error behind a cancelled request, if any.
func (e *Error) Unwrap() error { return e.err }

// Temporary reports whether retrying later may succeed.
func (e *Error) Temporary() bool {
	return e.Failure == FailureUnavailable || e.Failure == FailureResponse
}

// transportError classifies a request that got no whole answer; sent says
// whether the request had left in full.
func transportError(ctx context.Context, err error, sent bool) *Error {
	e := &Error{Failure: FailureUnavailable, Transport: TransportNetwork, Reason: "network error", Unanswered: sent}
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		e.Reason, e.err, e.Transport = "request cancelled or timed out", ctx.Err(), TransportCancelled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			e.Transport = TransportTimeout
		}
	case errors.As(err, &ne) && ne.Timeout():
		e.Reason, e.Transport = "timeout", TransportTimeout
	}
	return e
}

// statusError classifies a non-2xx response (RFC 6749 §5.2).
func statusError(resp *http.Response, body []byte, now time.Time) *Error {
	e := &Error{Status: resp.StatusCode, Code: oauthErrorCode(resp.Header.Get("Content-Type"), body)}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		e.Failure, e.Reason = FailureUnavailable, "provider unavailable or rate limiting"
		e.RetryAfter = tokenapi.ParseRetryAfter(resp.Header.Get("Retry-After"), now)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		e.Failure, e.Reason = FailureResponse, "token endpoint answered with a redirect (not followed)"
	case e.Code == "invalid_grant":
		e.Failure, e.Reason = FailureGrant, "grant invalid, expired or revoked"
	case e.Code == "invalid_client" || e.Code == "unauthorized_client" || resp.StatusCode == http.StatusUnauthorized:
		e.Failure, e.Reason = FailureClient, "client authentication failed"
	case e.Code != "":
		e.Failure, e.Reason = FailureRequest, "provider rejected the request"
	default:
		e.Failure, e.Reason = FailureResponse, "error response without an OAuth error code"
	}
	return e
}

// oauthErrorCode extracts the §5.2 "error" member, keeping it only when it
// is a short code of safe characters (it is logged and put in URLs).
func oauthErrorCode(contentType string, body []byte) string {
	var code string
	if isJSON(contentType, body) {
		var e struct {
			Error any `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil {
			code, _ = e.Error.(string)
		}
	} else if v, err := url.ParseQuery(string(body)); err == nil {
		code = v.Get("error")
	}
	if len(code) == 0 || len(code) > 64 {
		return ""
	}
	for _, r := range code {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return ""
		}
	}
	return code
}
