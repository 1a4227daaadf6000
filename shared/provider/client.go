package provider

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/secrets"
)

// MaxResponseBytes caps a token endpoint response (S13).
const MaxResponseBytes = 1 << 20

// UserAgent names the product on every outbound request.
const UserAgent = "oauthbroker/1 (+https://github.com/oauthbroker/oauthbroker)"

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
func (c *Client) Exchange(ctx context.Context, e *Endpoint, creds secrets.ClientCredentials, code, redirectURI, verifier string) (*Token, error) {
	v := url.Values{"grant_type": {GrantAuthorizationCode}, "code": {code}, "redirect_uri": {redirectURI}}
	if verifier != "" {
		v.Set("code_verifier", verifier)
	}
	return c.token(ctx, e, creds, v)
}

// Refresh redeems a refresh token (RFC 6749 §6). When the answer's access
// token fails the syntax check (FailureTokenSyntax) but it carries a
// well-formed refresh token, that refresh token comes back alone beside
// the error: a rotating provider has already retired the one sent.
func (c *Client) Refresh(ctx context.Context, e *Endpoint, creds secrets.ClientCredentials, refreshToken string) (*Token, error) {
	return c.token(ctx, e, creds, url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {refreshToken}})
}

// ClientCredentials mints a token with the client credentials grant
// (RFC 6749 §4.4).
func (c *Client) ClientCredentials(ctx context.Context, e *Endpoint, creds secrets.ClientCredentials, scopes []string) (*Token, error) {
	v := url.Values{"grant_type": {GrantClientCredentials}}
	if len(scopes) > 0 {
		v.Set("scope", strings.Join(scopes, e.Provider.ScopeSeparator))
	}
	return c.token(ctx, e, creds, v)
}

// Revoke asks the provider to revoke token (RFC 7009 §2.1), a refresh
// token or an access token as hint says, authenticating as for token
// requests. A provider without a revocation_url is not called. RFC 7009
// answers 200 even for a token it does not know; anything else is an
// *Error.
func (c *Client) Revoke(ctx context.Context, e *Endpoint, creds secrets.ClientCredentials, token, hint string) error {
	if e.RevocationURL == "" {
		return nil
	}
	// RFC 7009 §2.1: always a form POST, whatever the token requests use.
	req, err := e.newRequest(ctx, e.RevocationURL, TokenRequestForm, url.Values{"token": {token}, "token_type_hint": {hint}}, creds)
	if err != nil {
		return &Error{Failure: FailureRequest, Reason: "cannot build revocation request"}
	}
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	if resp.StatusCode != http.StatusOK {
		return statusError(resp, body, c.now())
	}
	return nil
}

// token sends a token request with parameters v and parses its answer.
func (c *Client) token(ctx context.Context, e *Endpoint, creds secrets.ClientCredentials, v url.Values) (*Token, error) {
	p := e.Provider
	for k, val := range p.TokenParams {
		v.Set(k, val)
	}
	req, err := e.newRequest(ctx, e.TokenURL, p.TokenRequest, v, creds)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	sent := c.now()
	resp, err := c.send(ctx, req)
	if err != nil {
		return nil, err
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

// send sends req on the client's HTTP client. A failure is an *Error
// that records whether the whole request had left (Error.Unanswered).
func (c *Client) send(ctx context.Context, req *http.Request) (*http.Response, error) {
	hc := c.HTTP
	if hc == nil {
		hc = NewHTTPClient()
	}
	// wrote records that the whole request left: a failure after that
	// leaves the outcome unknown.
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
	resp, err := hc.Do(req)
	if err != nil {
		// Never wrap err: a *url.Error carries the URL, which for GET token
		// requests holds the client secret and the code.
		return nil, transportError(ctx, err, wrote.Load())
	}
	return resp, nil
}
