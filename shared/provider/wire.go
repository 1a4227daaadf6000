package provider

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/secrets"
)

// The token request is written by hand rather than with
// oauth2.Config.Exchange because two of the three encodings providers use
// (a JSON body, a GET with query parameters) are outside RFC 6749 and
// x/oauth2; one code path for all three keeps response checks (RFC 6749
// §5.1, RFC 9700 §2.x) and error hygiene identical for every provider.

// MaxResponseBytes caps a token endpoint response (S13).
const MaxResponseBytes = 1 << 20

// UserAgent names the product on every outbound request.
const UserAgent = "oauthbroker/1 (+https://github.com/oauthbroker/oauthbroker)"

// Token is a validated token response.
type Token struct {
	AccessToken  string
	RefreshToken string // empty when the response had none
	TokenType    string
	// ExpiresAt is zero when the token does not expire.
	ExpiresAt time.Time
	// Lifetime is the lifetime the expiry was computed from (zero when
	// the token does not expire).
	Lifetime time.Duration
	// Scope is the granted scope as the provider stated it, or "" when it
	// did not say (RFC 6749 §5.1: then it equals the requested scope).
	Scope    string
	Metadata map[string]string
}

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
	// Reason is a short fixed description.
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

// DefaultHTTPTimeout bounds one provider call of NewHTTPClient's client,
// from dialling to the last byte of the answer.
const DefaultHTTPTimeout = 10 * time.Second

// NewHTTPClient returns the one client used for provider calls (S13):
// TLS verified (1.2 or later), no redirects followed (Go would re-send a POST
// body, with the client secret, on 307/308), bounded connect and overall
// time.
func NewHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: DefaultHTTPTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConnsPerHost:   32, // a sweep runs up to REFRESH_WORKERS calls to one provider
			IdleConnTimeout:       60 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Client performs token requests as the catalog describes them.
type Client struct {
	// HTTP is the client for provider calls; NewHTTPClient if nil.
	HTTP *http.Client
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Timeout is the longest one provider call may take: the HTTP client's
// overall timeout, or DefaultHTTPTimeout if it sets none (the context is
// then its only bound, and a caller planning a deadline assumes the
// default).
func (c *Client) Timeout() time.Duration {
	if c.HTTP != nil && c.HTTP.Timeout > 0 {
		return c.HTTP.Timeout
	}
	return DefaultHTTPTimeout
}

// Exchange redeems an authorization code (RFC 6749 §4.1.3) with the
// identical redirect_uri and, when PKCE was used, the verifier.
func (c *Client) Exchange(ctx context.Context, p *Provider, creds secrets.ClientCredentials, code, redirectURI, verifier string) (*Token, error) {
	v := url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {redirectURI}}
	if verifier != "" {
		v.Set("code_verifier", verifier)
	}
	return c.do(ctx, p, creds, v)
}

// Refresh redeems a refresh token (RFC 6749 §6). When the answer's access
// token fails the syntax check (FailureTokenSyntax) but it carries a
// well-formed refresh token, that refresh token comes back alone beside
// the error: a rotating provider has already retired the one sent.
func (c *Client) Refresh(ctx context.Context, p *Provider, creds secrets.ClientCredentials, refreshToken string) (*Token, error) {
	return c.do(ctx, p, creds, url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {refreshToken}})
}

// ClientCredentials mints a token with the client credentials grant
// (RFC 6749 §4.4).
func (c *Client) ClientCredentials(ctx context.Context, p *Provider, creds secrets.ClientCredentials, scopes []string) (*Token, error) {
	v := url.Values{"grant_type": {GrantClientCredentials}}
	if len(scopes) > 0 {
		v.Set("scope", strings.Join(scopes, p.ScopeSeparator))
	}
	return c.do(ctx, p, creds, v)
}

// Revoke asks the provider to revoke token (RFC 7009 §2.1), a refresh
// token or an access token as hint says, authenticating as for token
// requests. A provider without a revocation_url is not called. RFC 7009
// answers 200 even for a token it does not know; anything else is an
// *Error.
func (c *Client) Revoke(ctx context.Context, p *Provider, creds secrets.ClientCredentials, token, hint string) error {
	if p.RevocationURL == "" {
		return nil
	}
	if p.NeedsParams() {
		return &Error{Failure: FailureRequest, Reason: "provider entry used without its connection parameters (Resolve)"}
	}
	v := url.Values{"token": {token}, "token_type_hint": {hint}}
	if p.ClientAuth == ClientAuthBody {
		v.Set("client_id", creds.ClientID)
		v.Set("client_secret", creds.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.RevocationURL, strings.NewReader(v.Encode()))
	if err != nil {
		return &Error{Failure: FailureRequest, Reason: "cannot build revocation request"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p.ClientAuth == ClientAuthBasic {
		req.SetBasicAuth(url.QueryEscape(creds.ClientID), url.QueryEscape(creds.ClientSecret))
	}
	for k, val := range p.TokenHeaders {
		req.Header.Set(k, val)
	}
	req.Header.Set("User-Agent", UserAgent)
	hc := c.HTTP
	if hc == nil {
		hc = NewHTTPClient()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return transportError(ctx, err, false)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	if resp.StatusCode != http.StatusOK {
		return statusError(resp, body, c.now())
	}
	return nil
}

func (c *Client) do(ctx context.Context, p *Provider, creds secrets.ClientCredentials, v url.Values) (*Token, error) {
	if p.NeedsParams() {
		return nil, &Error{Failure: FailureRequest, Reason: "provider entry used without its connection parameters (Resolve)"}
	}
	for k, val := range p.TokenParams {
		v.Set(k, val)
	}
	if p.ClientAuth == ClientAuthBody {
		v.Set("client_id", creds.ClientID)
		v.Set("client_secret", creds.ClientSecret)
	}
	req, err := newTokenRequest(ctx, p, v)
	if err != nil {
		return nil, err
	}
	if p.ClientAuth == ClientAuthBasic {
		// RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(creds.ClientID), url.QueryEscape(creds.ClientSecret))
	}
	for k, val := range p.TokenHeaders {
		req.Header.Set(k, val)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", UserAgent)

	hc := c.HTTP
	if hc == nil {
		hc = NewHTTPClient()
	}
	// wrote records that the whole request left: a failure after that
	// leaves the outcome unknown (Error.Unanswered).
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		// Sticky: the transport may retry a request on a new connection,
		// and a failed retry does not unsend the first copy.
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	}))
	sent := c.now()
	resp, err := hc.Do(req)
	if err != nil {
		// Never wrap err: a *url.Error carries the URL, which for GET token
		// requests holds the client secret and the code.
		return nil, transportError(ctx, err, wrote.Load())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, transportError(ctx, err, true)
	}
	if len(body) > MaxResponseBytes {
		return nil, &Error{Failure: FailureResponse, Status: resp.StatusCode, Reason: "response larger than 1 MiB"}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, statusError(resp, body, c.now())
	}
	return parseToken(p, resp.Header.Get("Content-Type"), body, sent)
}

func newTokenRequest(ctx context.Context, p *Provider, v url.Values) (*http.Request, error) {
	switch p.TokenRequest {
	case TokenRequestQuery:
		u, err := url.Parse(p.TokenURL)
		if err != nil {
			return nil, errors.New("token_url does not parse")
		}
		q := u.Query()
		for k, vals := range v {
			q[k] = vals
		}
		u.RawQuery = q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, errors.New("cannot build token request")
		}
		return req, nil
	case TokenRequestJSON:
		obj := make(map[string]string, len(v))
		for k := range v {
			obj[k] = v.Get(k)
		}
		b, _ := json.Marshal(obj)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.TokenURL, bytes.NewReader(b))
		if err != nil {
			return nil, errors.New("cannot build token request")
		}
		req.Header.Set("Content-Type", "application/json")
		return req, nil
	default:
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.TokenURL, strings.NewReader(v.Encode()))
		if err != nil {
			return nil, errors.New("cannot build token request")
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req, nil
	}
}

// transportError classifies a request that got no whole answer; sent says
// whether the request had left in full.
func transportError(ctx context.Context, err error, sent bool) *Error {
	e := &Error{Failure: FailureUnavailable, Reason: "network error", Unanswered: sent}
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		e.Reason, e.err = "request cancelled or timed out", ctx.Err()
	case errors.As(err, &ne) && ne.Timeout():
		e.Reason = "timeout"
	}
	return e
}

// statusError classifies a non-2xx response (RFC 6749 §5.2).
func statusError(resp *http.Response, body []byte, now time.Time) *Error {
	e := &Error{Status: resp.StatusCode, Code: oauthErrorCode(resp.Header.Get("Content-Type"), body)}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		e.Failure, e.Reason = FailureUnavailable, "provider unavailable or rate limiting"
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
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

func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return time.Duration(min(s, 86400)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

func isJSON(contentType string, body []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		return true
	}
	// Some providers send JSON as text/plain or text/javascript.
	t := bytes.TrimSpace(body)
	return (mt == "" || strings.HasPrefix(mt, "text/plain") || mt == "text/javascript") && len(t) > 0 && t[0] == '{'
}

// parseToken validates a 2xx token response body (RFC 6749 §5.1, S14) for
// provider p; sent is when the request was sent, the base of expires_in.
func parseToken(p *Provider, contentType string, body []byte, sent time.Time) (*Token, error) {
	bad := func(reason string) (*Token, error) {
		return nil, &Error{Failure: FailureResponse, Status: 200, Reason: reason}
	}
	fields := map[string]any{}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case isJSON(contentType, body):
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&fields); err != nil {
			return bad("token response is not a JSON object")
		}
	case mt == "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return bad("token response is not form-encoded")
		}
		for k := range v {
			fields[k] = v.Get(k)
		}
	default:
		return bad("token response has an unexpected content type")
	}
	if code, _ := fields["error"].(string); code != "" {
		// Some providers answer 200 with an error object.
		e := &Error{Failure: FailureRequest, Status: 200, Code: oauthErrorCode("application/json", []byte(`{"error":`+strconv.Quote(code)+`}`)), Reason: "provider rejected the request"}
		if e.Code == "invalid_grant" {
			e.Failure, e.Reason = FailureGrant, "grant invalid, expired or revoked"
		}
		return nil, e
	}
	t := &Token{}
	var ok bool
	if t.AccessToken, ok = fields["access_token"].(string); !ok || t.AccessToken == "" {
		return bad("token response has no access_token")
	}
	if v, present := fields["refresh_token"]; present && v != nil {
		if t.RefreshToken, ok = v.(string); !ok {
			return bad("refresh_token is not a string")
		}
	}
	// Never stored nor handed out unless well formed; the value itself
	// stays out of the error.
	if !validTokenValue(t.AccessToken) {
		e := &Error{Failure: FailureTokenSyntax, Status: 200, Reason: "access_token has characters outside RFC 6749 Appendix A (VSCHAR)"}
		if t.RefreshToken != "" && validTokenValue(t.RefreshToken) {
			// A rotating provider retired the refresh token it was sent
			// when it issued this one: hand back the well-formed new one
			// alone (it is never given to apps), so the connection is not
			// lost over an access token nobody will see.
			return &Token{RefreshToken: t.RefreshToken}, e
		}
		return nil, e
	}
	if t.RefreshToken != "" && !validTokenValue(t.RefreshToken) {
		return nil, &Error{Failure: FailureTokenSyntax, Status: 200, Reason: "refresh_token has characters outside RFC 6749 Appendix A (VSCHAR)"}
	}
	switch tt := fields["token_type"].(type) {
	case string:
		if !strings.EqualFold(tt, "bearer") {
			return bad("token_type is not bearer")
		}
		t.TokenType = "Bearer"
	case nil:
		if !p.TokenTypeOptional {
			return bad("token response has no token_type")
		}
		t.TokenType = "Bearer"
	default:
		return bad("token_type is not a string")
	}
	switch s := fields["scope"].(type) {
	case string:
		t.Scope = s
	case []any: // some providers send a list
		parts := make([]string, 0, len(s))
		for _, x := range s {
			if str, ok := x.(string); ok {
				parts = append(parts, str)
			}
		}
		t.Scope = strings.Join(parts, " ")
	}
	lifetime, err := expiresIn(p, fields["expires_in"])
	if err != nil {
		return bad(err.Error())
	}
	if lifetime > 0 {
		t.Lifetime = lifetime
		t.ExpiresAt = issuedAt(p, fields, sent).Add(lifetime).Truncate(time.Second)
	}
	for _, f := range p.MetadataFields {
		switch v := fields[f].(type) {
		case string:
			t.setMeta(f, v)
		case json.Number:
			t.setMeta(f, v.String())
		case bool:
			t.setMeta(f, strconv.FormatBool(v))
		}
	}
	return t, nil
}

// validTokenValue reports whether v may be stored and handed to apps as an
// access or refresh token: one or more VSCHAR (%x20-7E, printable ASCII),
// the syntax RFC 6749 Appendix A.12 (access-token) and A.17
// (refresh-token) give the values a token endpoint returns.
//
// The narrower RFC 6750 §2.1 b64token (letters, digits, "-._~+/", then
// only trailing "=") is the syntax of one way to present a token, the
// Authorization header, not of what a token endpoint may issue, and
// providers' tokens do stray outside it (Salesforce's access tokens carry
// "!", Facebook's app tokens "|"): enforcing it would lock such providers
// out while adding no protection. What must never pass is what VSCHAR
// already excludes: CR and LF (they would split the app's Authorization
// header or a line of its logs), other control characters, DEL and
// non-ASCII (no header carries them unchanged). A space passes, as in
// VSCHAR: it cannot split a header line. The usual shapes (JWTs, base64
// with "+/=", hex, "-._~", prefixed ids) pass either rule.
func validTokenValue(v string) bool {
	if v == "" {
		return false
	}
	for i := range len(v) {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// issuedAt is the base of expires_in: the provider's own issue time
// (Expiry.IssuedAtField) when it is within IssuedAtSkew of sent — never
// later than sent, so a fast provider clock cannot lengthen a lifetime —
// and otherwise sent. A response delayed in transit or a provider clock
// running behind then shortens the lifetime instead of outliving the
// token; an absurd value (Outstand's own example says 2015) is ignored.
func issuedAt(p *Provider, fields map[string]any, sent time.Time) time.Time {
	if p.Expiry.IssuedAtField == "" {
		return sent
	}
	var s string
	switch x := fields[p.Expiry.IssuedAtField].(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	default:
		return sent
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return sent
	}
	at := time.Unix(secs, 0)
	if at.Before(sent.Add(-IssuedAtSkew)) || at.After(sent) {
		return sent
	}
	return at
}

func (t *Token) setMeta(k, v string) {
	if t.Metadata == nil {
		t.Metadata = map[string]string{}
	}
	t.Metadata[k] = v
}

// expiresIn reads expires_in (a number, or a numeric string as some
// providers send) and applies the catalog's rules: absent or 0 → the
// default; absurdly long → no expiry; negative or fractional garbage →
// error. It never overflows a time.Duration.
func expiresIn(p *Provider, v any) (time.Duration, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return time.Duration(p.Expiry.DefaultSeconds) * time.Second, nil
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, errors.New("expires_in is not a number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != f {
		return 0, errors.New("expires_in is not a number")
	}
	switch {
	case f < 0:
		return 0, errors.New("expires_in is negative")
	case f == 0:
		return time.Duration(p.Expiry.DefaultSeconds) * time.Second, nil
	case f > p.MaxLifetime().Seconds():
		return 0, nil // "never expires" (Omnisend's 9223372036)
	}
	return time.Duration(math.Ceil(f)) * time.Second, nil // 0.5 s is a lifetime, not "never"
}
