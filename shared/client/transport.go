package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

const (
	// refreshMargin is how long before its expiry a cached token is
	// replaced.
	refreshMargin = 30 * time.Second
	// fetchTimeout bounds one shared call to the token route.
	fetchTimeout = 30 * time.Second
	// maxDrain is how much of a 401 body is read so that its connection
	// can be reused.
	maxDrain = 64 << 10
)

// Transport returns an http.RoundTripper that sends each request through
// base (http.DefaultTransport if nil) with the connection's token in an
// Authorization header ("Bearer <access token>").
//
// The token is kept in memory until 30 seconds before it expires, and one
// fetch is shared by concurrent requests. When the provider's API answers
// 401, the transport asks the broker once for a forced refresh (concurrent
// 401s share it) and sends the request again, once; a request whose body
// cannot be replayed (a body without GetBody) gets the 401 as it is. If the
// refresh fails, RoundTrip returns its error, so
// errors.Is(err, ErrReauthRequired) tells that the customer must connect
// again.
//
// The token goes only to https URLs (or http on a loopback host) and only
// to the host of the original request: a redirect to another host is
// followed without it. The caller's request is never modified.
func (c *Client) Transport(provider, connectionID string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{c: c, provider: provider, connectionID: connectionID, base: base}
}

type transport struct {
	c                      *Client
	provider, connectionID string
	base                   http.RoundTripper

	// calls shares a call to the token route among its waiters: the
	// fetch (callFetch) and the forced refresh (callForce) in flight. It
	// is joined with mu held: a call stores its token under mu before it
	// ends, so a request either finds the token or joins the call.
	calls singleflight.Group

	mu        sync.Mutex
	tok       *Token // the cached token, nil if none
	gen       uint64 // incremented each time tok is set
	forcedGen uint64 // gen of the last token stored by a forced refresh
}

// The keys of transport.calls.
const (
	callFetch = "fetch"
	callForce = "force"
)

// called is the result of a call to the token route: the token to use and
// its generation.
type called struct {
	tok *Token
	gen uint64
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !sameHostAsOriginal(req) {
		return t.base.RoundTrip(req)
	}
	if !secure(req) {
		closeBody(req)
		return nil, errors.New("oauthbroker client: refusing to send a token over plain http to a host that is not loopback")
	}
	ctx := req.Context()
	tok, gen, err := t.current(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.base.RoundTrip(authorized(req, req.Body, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !replayable(req) {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()

	tok, err = t.refreshed(ctx, tok, gen)
	if err != nil {
		return nil, err
	}
	body := req.Body
	if req.GetBody != nil {
		if body, err = req.GetBody(); err != nil {
			return nil, fmt.Errorf("oauthbroker client: replaying the request body: %w", err)
		}
	}
	return t.base.RoundTrip(authorized(req, body, tok))
}

// current returns the cached token if it stays valid for refreshMargin,
// or else fetches one (sharing a fetch in flight).
func (t *transport) current(ctx context.Context) (*Token, uint64, error) {
	t.mu.Lock()
	if t.tok != nil && t.tok.validFor(t.c.now(), refreshMargin) {
		tok, gen := t.tok, t.gen
		t.mu.Unlock()
		return tok, gen, nil
	}
	ch := t.share(ctx, false)
	t.mu.Unlock()
	return wait(ctx, ch)
}

// refreshed returns the token to retry with after used, of generation
// usedGen, got a 401: the cached one if a forced refresh has happened since
// or it differs from used, or else the result of a forced refresh (sharing
// one in flight).
func (t *transport) refreshed(ctx context.Context, used *Token, usedGen uint64) (*Token, error) {
	t.mu.Lock()
	if t.tok != nil && t.tok.Valid(t.c.now()) && (t.forcedGen > usedGen || t.tok.AccessToken != used.AccessToken) {
		tok := t.tok
		t.mu.Unlock()
		return tok, nil
	}
	ch := t.share(ctx, true)
	t.mu.Unlock()
	tok, _, err := wait(ctx, ch)
	return tok, err
}

// share joins the call to the token route in flight, a fetch or a forced
// refresh, or starts one; t.mu is held. The call runs on its own, with a
// context that the waiter's cancellation does not reach, so that a waiter
// that gives up does not fail the others.
func (t *transport) share(ctx context.Context, force bool) <-chan singleflight.Result {
	key := callFetch
	if force {
		key = callForce
	}
	startGen := t.gen
	return t.calls.DoChan(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		return t.call(ctx, force, startGen)
	})
}

// call asks the token route for the token (a forced refresh if force) and
// stores it, unless a forced refresh stored a newer one since the call
// began, when the cache stood at generation startGen.
func (t *transport) call(ctx context.Context, force bool, startGen uint64) (called, error) {
	var tok *Token
	var err error
	if force {
		tok, err = t.c.ForceRefresh(ctx, t.provider, t.connectionID)
	} else {
		tok, err = t.c.Token(ctx, t.provider, t.connectionID)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err != nil:
		if force && t.gen == startGen && (errors.Is(err, ErrReauthRequired) || errors.Is(err, ErrNotFound)) {
			t.tok = nil // the cached token is of no use any more
		}
		return called{}, err
	case force || t.gen == startGen:
		t.gen++
		t.tok = tok
		if force {
			t.forcedGen = t.gen
		}
		return called{tok, t.gen}, nil
	case t.tok == nil:
		return called{tok, t.gen}, nil
	default: // a forced refresh stored a newer token meanwhile
		return called{t.tok, t.gen}, nil
	}
}

func wait(ctx context.Context, ch <-chan singleflight.Result) (*Token, uint64, error) {
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, 0, r.Err
		}
		c := r.Val.(called)
		return c.tok, c.gen, nil
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// authorized is a clone of req with body and the token's Authorization.
func authorized(req *http.Request, body io.ReadCloser, tok *Token) *http.Request {
	r := req.Clone(req.Context())
	r.Body = body
	r.Header.Set("Authorization", tok.authorization())
	return r
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// secure reports whether a token may be sent to req's URL.
func secure(req *http.Request) bool {
	return req.URL.Scheme == "https" || req.URL.Scheme == "http" && isLoopback(req.URL.Hostname())
}

// sameHostAsOriginal reports whether req, if it follows a redirect, goes to
// the host of the request that started the chain.
func sameHostAsOriginal(req *http.Request) bool {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	return first == req || strings.EqualFold(first.URL.Host, req.URL.Host)
}
