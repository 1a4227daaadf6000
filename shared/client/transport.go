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

	mu        sync.Mutex
	tok       *Token // the cached token, nil if none
	gen       uint64 // incremented each time tok is set
	forcedGen uint64 // gen of the last token stored by a forced refresh
	fetching  *call  // the fetch in flight, if any
	forcing   *call  // the forced refresh in flight, if any
}

// call is one request to the token route shared by its waiters.
type call struct {
	done chan struct{}
	tok  *Token
	gen  uint64
	err  error
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
	cl := t.fetching
	if cl == nil {
		cl = t.start(ctx, false)
	}
	t.mu.Unlock()
	return wait(ctx, cl)
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
	cl := t.forcing
	if cl == nil {
		cl = t.start(ctx, true)
	}
	t.mu.Unlock()
	tok, _, err := wait(ctx, cl)
	return tok, err
}

// start begins a shared call to the token route; t.mu is held. The call
// runs on its own, so that a waiter that gives up does not fail the
// others.
func (t *transport) start(ctx context.Context, force bool) *call {
	cl := &call{done: make(chan struct{})}
	startGen := t.gen
	if force {
		t.forcing = cl
	} else {
		t.fetching = cl
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	go func() {
		defer cancel()
		var tok *Token
		var err error
		if force {
			tok, err = t.c.ForceRefresh(ctx, t.provider, t.connectionID)
		} else {
			tok, err = t.c.Token(ctx, t.provider, t.connectionID)
		}
		t.mu.Lock()
		defer close(cl.done)
		defer t.mu.Unlock()
		if force {
			t.forcing = nil
		} else {
			t.fetching = nil
		}
		switch {
		case err != nil:
			cl.err = err
			if force && t.gen == startGen && (errors.Is(err, ErrReauthRequired) || errors.Is(err, ErrNotFound)) {
				t.tok = nil // the cached token is of no use any more
			}
		case force || t.gen == startGen:
			t.gen++
			t.tok = tok
			if force {
				t.forcedGen = t.gen
			}
			cl.tok, cl.gen = tok, t.gen
		default: // a forced refresh stored a newer token meanwhile
			cl.tok, cl.gen = t.tok, t.gen
			if cl.tok == nil {
				cl.tok = tok
			}
		}
	}()
	return cl
}

func wait(ctx context.Context, cl *call) (*Token, uint64, error) {
	select {
	case <-cl.done:
		return cl.tok, cl.gen, cl.err
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
