package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/oauthbroker/oauthbroker/shared/client/tokenapi"
)

const (
	// signingService is the SigV4 service name of API Gateway.
	signingService = "execute-api"
	// emptyPayloadHash is the hex SHA-256 of an empty body: every request
	// of the client has one.
	emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// maxBody bounds how much of an answer is read.
	maxBody = 1 << 20
	// defaultTimeout bounds a call with the default HTTP client.
	defaultTimeout = 30 * time.Second
)

// Client calls oauthbroker's token route. It is safe for concurrent use.
type Client struct {
	base   *url.URL // no trailing slash in the path
	http   *http.Client
	creds  aws.CredentialsProvider
	region string
	now    func() time.Time
	signer *v4.Signer
	devKey string // make dev's key instead of signing
}

// Option configures New.
type Option func(*options)

type options struct {
	http   *http.Client
	creds  aws.CredentialsProvider
	region string
	now    func() time.Time
	devKey string
}

// WithHTTPClient makes the client send its requests with h instead of a
// default client (30 s timeout, no redirects followed).
func WithHTTPClient(h *http.Client) Option { return func(o *options) { o.http = h } }

// WithCredentials signs requests with credentials from p instead of the
// default AWS credential chain. p is wrapped in an aws.CredentialsCache
// unless it is one.
func WithCredentials(p aws.CredentialsProvider) Option { return func(o *options) { o.creds = p } }

// WithRegion sets the region requests are signed for, overriding both the
// region of an execute-api host and the AWS configuration.
func WithRegion(region string) Option { return func(o *options) { o.region = region } }

// WithClock sets the clock used for signing and for token expiry
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithDevKey is for make dev only: requests carry "Authorization: Bearer
// key" (the key in <DataDir>/dev-api-key) instead of a signature, and no
// AWS configuration is loaded. New refuses it unless baseURL is on a
// loopback host.
func WithDevKey(key string) Option { return func(o *options) { o.devKey = key } }

// New returns a client for the oauthbroker API at baseURL: its execute-api
// URL (with the stage path, if any) or custom domain. baseURL must be https,
// or http on a loopback host.
//
// Credentials come from the default AWS credential chain unless
// WithCredentials is given. The signing region is, in order: WithRegion;
// the region of an execute-api host (<id>.execute-api.<region>.amazonaws.com),
// since a signature scoped to any other region is refused; the region of
// the default AWS configuration. The AWS configuration is loaded only when
// the credentials or the region still have to come from it.
func New(ctx context.Context, baseURL string, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	base, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	if o.devKey != "" {
		if !isLoopback(base.Hostname()) {
			return nil, errors.New("oauthbroker client: WithDevKey is for make dev, on a loopback host only")
		}
		o.creds = aws.AnonymousCredentials{}
		if o.region == "" {
			o.region = "local"
		}
	}
	region := o.region
	if region == "" {
		region = regionFromHost(base.Hostname())
	}
	creds := o.creds
	if creds == nil || region == "" {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("oauthbroker client: loading the AWS configuration: %w", err)
		}
		if creds == nil {
			creds = cfg.Credentials
		}
		if region == "" {
			region = cfg.Region
		}
	}
	if creds == nil {
		return nil, errors.New("oauthbroker client: no AWS credentials: configure the default credential chain or use WithCredentials")
	}
	if region == "" {
		return nil, errors.New("oauthbroker client: no AWS region: set AWS_REGION or use WithRegion")
	}
	if _, ok := creds.(*aws.CredentialsCache); !ok {
		creds = aws.NewCredentialsCache(creds)
	}
	c := &Client{
		base:   base,
		http:   o.http,
		creds:  creds,
		region: region,
		now:    o.now,
		signer: v4.NewSigner(),
		devKey: o.devKey,
	}
	if c.http == nil {
		c.http = &http.Client{
			Timeout:       defaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// parseBaseURL checks baseURL and returns it with no trailing slash.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("oauthbroker client: base URL: %w", err)
	}
	switch {
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		return nil, errors.New("oauthbroker client: base URL must be https (or http on a loopback host)")
	case u.Host == "" || u.Opaque != "":
		return nil, errors.New("oauthbroker client: base URL has no host")
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("oauthbroker client: base URL must not have user info, a query or a fragment")
	}
	p := strings.TrimRight(u.EscapedPath(), "/")
	u.Path, err = url.PathUnescape(p)
	if err != nil {
		return nil, fmt.Errorf("oauthbroker client: base URL path: %w", err)
	}
	u.RawPath = p
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// regionFromHost returns the region of an execute-api host
// (<id>.execute-api.<region>.amazonaws.com[.cn]), or "".
func regionFromHost(host string) string {
	labels := strings.Split(strings.ToLower(strings.TrimSuffix(host, ".")), ".")
	if len(labels) >= 5 && labels[0] != "" && labels[1] == "execute-api" && labels[2] != "" &&
		labels[3] == "amazonaws" && labels[4] == "com" && (len(labels) == 5 || len(labels) == 6 && labels[5] == "cn") {
		return labels[2]
	}
	return ""
}

// Token returns a usable access token of the connection: the broker
// refreshes it first if it is about to expire. Each call asks the broker;
// Transport keeps a token in memory.
//
// Errors: ErrNotFound for an unknown connection, ErrReauthRequired when the
// customer has to connect again (both match with errors.Is), otherwise an
// *Error for any other answer (RetryAfter set on 502 CodeProviderError,
// 503 and 429) or a transport error.
func (c *Client) Token(ctx context.Context, provider, connectionID string) (*Token, error) {
	return c.token(ctx, provider, connectionID, false)
}

// ForceRefresh is Token with force_refresh=true: the broker refreshes the
// token at the provider even if it has not expired, for when the provider
// has refused it. A provider that cannot refresh answers ErrReauthRequired.
func (c *Client) ForceRefresh(ctx context.Context, provider, connectionID string) (*Token, error) {
	return c.token(ctx, provider, connectionID, true)
}

// Delete deletes the connection and its tokens from the broker. Deleting an
// unknown connection returns ErrNotFound, which a caller that only wants it
// gone can ignore.
func (c *Client) Delete(ctx context.Context, provider, connectionID string) error {
	resp, err := c.do(ctx, http.MethodDelete, provider, connectionID, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.apiError(resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	return nil
}

// Confirm makes the pending grant whose confirmation code the customer's
// browser brought back (the return URL's confirmation parameter, with
// status=pending) the connection's: call it only after checking, in your
// own session, that the signed-in user owns connectionID. The return URL's
// query is an unsigned hint; the Status Confirm returns is the truth.
//
// Errors: ErrConfirmationInvalid when the code is wrong, used or expired
// (the customer must connect again), ErrNotFound for an unknown provider,
// an *Error otherwise (CodeConnectionConflict: the connection holds a
// grant of another kind).
func (c *Client) Confirm(ctx context.Context, provider, connectionID, confirmation string) (*Status, error) {
	body, err := json.Marshal(tokenapi.Confirm{Confirmation: confirmation})
	if err != nil {
		return nil, fmt.Errorf("oauthbroker client: %w", err)
	}
	resp, err := c.send(ctx, http.MethodPost, provider, connectionID, "", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.apiError(resp)
	}
	var st tokenapi.Status
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxBody))
	if err := dec.Decode(&st); err != nil || st.Status == "" {
		return nil, &Error{StatusCode: resp.StatusCode, Code: CodeUnexpected}
	}
	out := &Status{Provider: st.Provider, ConnectionID: st.ConnectionID, Status: st.Status, Scope: st.Scope}
	if st.ExpiresAt != "" {
		if out.ExpiresAt, err = time.Parse(time.RFC3339, st.ExpiresAt); err != nil {
			return nil, &Error{StatusCode: resp.StatusCode, Code: CodeUnexpected}
		}
	}
	return out, nil
}

// Status is a connection as Confirm reports it: never a token.
type Status struct {
	Provider     string
	ConnectionID string
	// Status is "connected" after a confirmation.
	Status string
	// ExpiresAt is zero when the token does not expire.
	ExpiresAt time.Time
	Scope     string
}

func (c *Client) token(ctx context.Context, provider, connectionID string, force bool) (*Token, error) {
	query := ""
	if force {
		query = tokenapi.ParamForceRefresh + "=true"
	}
	resp, err := c.do(ctx, http.MethodGet, provider, connectionID, query)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.apiError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("oauthbroker client: reading the token: %w", err)
	}
	return decodeToken(body)
}

// do sends a signed request without a body to the route of the connection.
func (c *Client) do(ctx context.Context, method, provider, connectionID, query string) (*http.Response, error) {
	return c.send(ctx, method, provider, connectionID, query, nil)
}

// send sends a signed request to the route of the connection, with body
// as JSON when it is not nil.
func (c *Client) send(ctx context.Context, method, provider, connectionID, query string, body []byte) (*http.Response, error) {
	u, err := c.routeURL(method, provider, connectionID)
	if err != nil {
		return nil, err
	}
	u.RawQuery = query
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("oauthbroker client: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.devKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.devKey)
	} else if err := c.sign(ctx, req, body); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oauthbroker client: %w", err)
	}
	return resp, nil
}

// sign adds the SigV4 headers to req, whose payload is body.
func (c *Client) sign(ctx context.Context, req *http.Request, body []byte) error {
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("oauthbroker client: AWS credentials: %w", err)
	}
	payloadHash := emptyPayloadHash
	if body != nil {
		sum := sha256.Sum256(body)
		payloadHash = hex.EncodeToString(sum[:])
	}
	if err := c.signer.SignHTTP(ctx, creds, req, payloadHash, signingService, c.region, c.now()); err != nil {
		return fmt.Errorf("oauthbroker client: signing the request: %w", err)
	}
	return nil
}

// routeURL is the URL of /connections/{provider}/{connection_id}[/token|/confirm],
// each segment path-escaped.
func (c *Client) routeURL(method, provider, connectionID string) (*url.URL, error) {
	for _, s := range []struct{ name, v string }{{"provider", provider}, {"connection id", connectionID}} {
		if s.v == "" || s.v == "." || s.v == ".." {
			return nil, fmt.Errorf("oauthbroker client: invalid %s %q", s.name, s.v)
		}
	}
	raw := c.base.EscapedPath() + "/connections/" + url.PathEscape(provider) + "/" + url.PathEscape(connectionID)
	switch method {
	case http.MethodGet:
		raw += "/token"
	case http.MethodPost:
		raw += "/confirm"
	}
	u := *c.base
	u.RawPath = raw
	var err error
	if u.Path, err = url.PathUnescape(raw); err != nil {
		return nil, fmt.Errorf("oauthbroker client: %w", err)
	}
	return &u, nil
}

// apiError turns an answer other than success into an *Error.
func (c *Client) apiError(resp *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	e := &Error{StatusCode: resp.StatusCode}
	var answer struct {
		tokenapi.Error
		Message string `json:"message"` // API Gateway's own answers
	}
	_ = json.Unmarshal(body, &answer)
	switch {
	case answer.Code != "" && isCode(string(answer.Code)):
		e.Code = answer.Code
	case resp.StatusCode == http.StatusForbidden:
		e.Code = CodeForbidden
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Code = CodeThrottled
	default:
		e.Code = CodeUnexpected
	}
	if answer.Code == "" && answer.Message != "" {
		e.Message = firstLine(answer.Message)
	}
	if e.Code.HasRetryAfter() || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
		e.RetryAfter = tokenapi.ParseRetryAfter(resp.Header.Get("Retry-After"), c.now())
	}
	return e
}

// isCode reports whether s looks like an error code (lower-case letters
// and underscores), so that no arbitrary text from a body becomes part of
// an error. A well-formed code the contract does not define yet (a newer
// broker's) is kept.
func isCode(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '_' {
			return false
		}
	}
	return true
}

// firstLine is the first line of an API Gateway message, at most 200
// bytes: the rest of a signature error can show the canonical request,
// which holds the session token.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.ToValidUTF8(strings.TrimSpace(s), "")
}
