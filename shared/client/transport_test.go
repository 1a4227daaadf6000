package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// providerAPI is a provider's API that accepts one access token at a time.
type providerAPI struct {
	srv   *httptest.Server
	calls atomic.Int32

	mu     sync.Mutex
	accept string   // the token it accepts ("" none)
	bodies []string // the bodies it received
	auths  []string // the Authorization headers it received
	hook   func(auth string)
}

func newProviderAPI(t *testing.T, accept string) *providerAPI {
	p := &providerAPI{accept: accept}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		auth := r.Header.Get("Authorization")
		p.mu.Lock()
		p.bodies = append(p.bodies, string(b))
		p.auths = append(p.auths, auth)
		accept, hook := p.accept, p.hook
		p.mu.Unlock()
		if hook != nil {
			hook(auth)
		}
		if accept == "" || auth != "Bearer "+accept {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// got returns the Authorization headers and bodies received so far.
func (p *providerAPI) got() (auths, bodies []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.auths...), append([]string(nil), p.bodies...)
}

func (p *providerAPI) setHook(f func(auth string)) {
	p.mu.Lock()
	p.hook = f
	p.mu.Unlock()
}

func (p *providerAPI) setAccept(tok string) {
	p.mu.Lock()
	p.accept = tok
	p.mu.Unlock()
}

// tokens answers the token route with the first token until a forced
// refresh, then with the second.
type tokens struct {
	mu           sync.Mutex
	first, fresh string
	forced       bool
	expiresAt    time.Time
	forceAnswer  *answer       // instead of the fresh token
	forceDelay   time.Duration // before answering a forced refresh
}

func (tk *tokens) answer(r routeRequest) answer {
	if r.Force {
		time.Sleep(tk.forceDelay)
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if r.Force {
		if tk.forceAnswer != nil {
			return *tk.forceAnswer
		}
		tk.forced = true
	}
	if tk.forced {
		return tokenAnswer(tk.fresh, tk.expiresAt, "", nil)
	}
	return tokenAnswer(tk.first, tk.expiresAt, "", nil)
}

func get(t *testing.T, hc *http.Client, url string) (int, error) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestTransportAddsToken(t *testing.T) {
	t.Parallel()
	clock := newClock()
	tok := secretToken("at-add")
	api := newFakeAPI(t, clock, func(routeRequest) answer {
		return answer{status: 200, body: `{"access_token":"` + tok + `","token_type":"bearer"}`}
	})
	prov := newProviderAPI(t, tok)
	rt := newTestClient(t, api, clock).Transport("acme", "c1", nil)

	req, _ := http.NewRequest(http.MethodGet, prov.srv.URL+"/v3/accounts", nil)
	req.Header.Set("X-Caller", "1")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if req.Header.Get("Authorization") != "" || len(req.Header) != 1 {
		t.Error("the caller's request was modified")
	}
	if auths, _ := prov.got(); auths[0] != "Bearer "+tok {
		t.Error("the provider did not get the normalised Authorization header")
	}
}

// The token is kept until 30 s before it expires, then fetched again; one
// that does not expire is kept.
func TestTransportCachesUntilNearExpiry(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		expires time.Duration // from the start; 0: never
		steps   []time.Duration
		fetches []int // after each step
	}{
		{
			name:    "expiring",
			expires: 10 * time.Minute,
			steps:   []time.Duration{0, 5 * time.Minute, 4*time.Minute + 29*time.Second, 2 * time.Second, 0},
			// 9:29 (31 s left): cached; 9:31 (29 s left): fetched, and the
			// same answer (same expiry) is fetched every time from then on.
			fetches: []int{1, 1, 1, 2, 3},
		},
		{
			name:    "never expiring",
			steps:   []time.Duration{0, time.Hour, 24 * time.Hour},
			fetches: []int{1, 1, 1},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			tok := secretToken("at-cache")
			var exp time.Time
			if tt.expires > 0 {
				exp = clock.Now().Add(tt.expires)
			}
			api := newFakeAPI(t, clock, func(routeRequest) answer { return tokenAnswer(tok, exp, "", nil) })
			prov := newProviderAPI(t, tok)
			hc := &http.Client{Transport: newTestClient(t, api, clock).Transport("acme", "c1", nil)}
			for i, step := range tt.steps {
				clock.Advance(step)
				if code, err := get(t, hc, prov.srv.URL); err != nil || code != 200 {
					t.Fatalf("step %d: %d %v", i, code, err)
				}
				if n := api.count(isFetch); n != tt.fetches[i] {
					t.Errorf("step %d: %d fetches, want %d", i, n, tt.fetches[i])
				}
			}
		})
	}
}

// A 401 from the provider forces one refresh and one retry, only for a
// body that can be sent again.
func TestTransportRetriesOnceAfter401(t *testing.T) {
	t.Parallel()
	type want struct {
		status, providerCalls, forces int
		bodies                        []string
	}
	for _, tt := range []struct {
		name          string
		newRequest    func(url string) *http.Request
		providerTakes string // "fresh", "none"
		want          want
	}{
		{
			name:          "GET: refreshed and retried",
			newRequest:    func(u string) *http.Request { r, _ := http.NewRequest("GET", u, nil); return r },
			providerTakes: "fresh",
			want:          want{200, 2, 1, []string{"", ""}},
		},
		{
			name: "POST with GetBody: body sent again",
			newRequest: func(u string) *http.Request {
				r, _ := http.NewRequest("POST", u, strings.NewReader(`{"n":1}`))
				return r
			},
			providerTakes: "fresh",
			want:          want{200, 2, 1, []string{`{"n":1}`, `{"n":1}`}},
		},
		{
			name:          "NoBody: retried",
			newRequest:    func(u string) *http.Request { r, _ := http.NewRequest("DELETE", u, http.NoBody); return r },
			providerTakes: "fresh",
			want:          want{200, 2, 1, []string{"", ""}},
		},
		{
			name: "body without GetBody: 401 as it is",
			newRequest: func(u string) *http.Request {
				r, _ := http.NewRequest("POST", u, io.NopCloser(bytes.NewBufferString("once")))
				r.GetBody = nil
				return r
			},
			providerTakes: "fresh",
			want:          want{401, 1, 0, []string{"once"}},
		},
		{
			name:          "still 401 after the refresh: not retried twice",
			newRequest:    func(u string) *http.Request { r, _ := http.NewRequest("GET", u, nil); return r },
			providerTakes: "none",
			want:          want{401, 2, 1, []string{"", ""}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			tk := &tokens{first: secretToken("at-stale"), fresh: secretToken("at-fresh")}
			api := newFakeAPI(t, clock, tk.answer)
			prov := newProviderAPI(t, "")
			if tt.providerTakes == "fresh" {
				prov.setAccept(tk.fresh)
			}
			hc := &http.Client{Transport: newTestClient(t, api, clock).Transport("acme", "c1", nil)}
			resp, err := hc.Do(tt.newRequest(prov.srv.URL + "/v3/contacts"))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			auths, bodies := prov.got()
			got := want{resp.StatusCode, int(prov.calls.Load()), api.count(isForce), bodies}
			if got.status != tt.want.status || got.providerCalls != tt.want.providerCalls || got.forces != tt.want.forces ||
				strings.Join(got.bodies, "|") != strings.Join(tt.want.bodies, "|") {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if auths[0] != "Bearer "+tk.first || len(auths) > 1 && auths[1] != "Bearer "+tk.fresh {
				t.Error("wrong tokens sent") // never printed
			}
			// The refreshed token is kept: the next request needs no fetch.
			if tt.want.status == 200 {
				if code, err := get(t, hc, prov.srv.URL); err != nil || code != 200 {
					t.Fatalf("next request: %d %v", code, err)
				}
				if n := api.count(func(routeRequest) bool { return true }); n != 2 {
					t.Errorf("%d calls to the token route, want 2", n)
				}
			}
		})
	}
}

// Concurrent requests that all get a 401 share one forced refresh.
func TestTransportConcurrent401sShareOneRefresh(t *testing.T) {
	t.Parallel()
	const n = 8
	clock := newClock()
	tk := &tokens{first: secretToken("at-stale"), fresh: secretToken("at-fresh"), forceDelay: 50 * time.Millisecond}
	api := newFakeAPI(t, clock, tk.answer)
	prov := newProviderAPI(t, tk.fresh)
	// Hold the stale requests until all n have arrived, so that their 401s
	// come together.
	var arrived sync.WaitGroup
	arrived.Add(n)
	prov.setHook(func(auth string) {
		if auth == "Bearer "+tk.first {
			arrived.Done()
			arrived.Wait()
		}
	})
	c := newTestClient(t, api, clock)
	// Fetch the stale token first so that every request starts with it.
	if _, err := c.Token(context.Background(), "acme", "c1"); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: c.Transport("acme", "c1", nil)}
	var wg sync.WaitGroup
	codes := make([]int, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			codes[i], errs[i] = get(t, hc, prov.srv.URL)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || codes[i] != 200 {
			t.Errorf("request %d: %d %v", i, codes[i], errs[i])
		}
	}
	if f := api.count(isForce); f != 1 {
		t.Errorf("%d forced refreshes, want 1", f)
	}
	if f := api.count(isFetch); f != 2 { // the one above and the transport's
		t.Errorf("%d fetches, want 2", f)
	}
	if c := prov.calls.Load(); c != 2*n {
		t.Errorf("%d provider calls, want %d", c, 2*n)
	}
}

// A failed forced refresh is RoundTrip's error: errors.Is tells that the
// customer must reconnect, and no token is in it.
func TestTransportRefreshFails(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		force   answer
		wantIs  error
		wantErr string
	}{
		{"reauth", errorAnswer(409, "reauth_required"), ErrReauthRequired, "reauth_required"},
		{"deleted", errorAnswer(404, "not_found"), ErrNotFound, "not_found"},
		{"unavailable", answer{503, map[string]string{"Retry-After": "30"}, `{"error":"provider_unavailable"}`}, nil, "retry after 30s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			tk := &tokens{first: secretToken("at-stale"), fresh: secretToken("at-fresh"), forceAnswer: &tt.force}
			api := newFakeAPI(t, clock, tk.answer)
			prov := newProviderAPI(t, tk.fresh)
			hc := &http.Client{Transport: newTestClient(t, api, clock).Transport("acme", "c1", nil)}
			_, err := get(t, hc, prov.srv.URL)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) is false", err, tt.wantIs)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("no *Error in %v", err)
			}
			assertClean(t, "error", err.Error(), tk.first, tk.fresh)
			if c := prov.calls.Load(); c != 1 {
				t.Errorf("%d provider calls, want 1", c)
			}
		})
	}
}

// An error of the token route stops the request before the provider.
func TestTransportTokenRouteError(t *testing.T) {
	t.Parallel()
	clock := newClock()
	api := newFakeAPI(t, clock, func(routeRequest) answer {
		return answer{503, map[string]string{"Retry-After": "4"}, `{"error":"provider_unavailable"}`}
	})
	prov := newProviderAPI(t, "")
	hc := &http.Client{Transport: newTestClient(t, api, clock).Transport("acme", "c1", nil)}
	body := &closeRecorder{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest("POST", prov.srv.URL, body)
	_, err := hc.Do(req)
	var e *Error
	if !errors.As(err, &e) || e.RetryAfter != 4*time.Second {
		t.Fatalf("error %v", err)
	}
	if prov.calls.Load() != 0 {
		t.Error("the provider was called")
	}
	if !body.closed.Load() {
		t.Error("the request body was not closed")
	}
}

type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

// The token goes to https and loopback only, and not across a redirect to
// another host.
func TestTransportGuardsTheToken(t *testing.T) {
	t.Parallel()
	clock := newClock()
	tok := secretToken("at-guard")
	api := newFakeAPI(t, clock, func(routeRequest) answer { return tokenAnswer(tok, time.Time{}, "", nil) })
	rt := newTestClient(t, api, clock).Transport("acme", "c1", nil)

	t.Run("plain http", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://api.example.com/v3/accounts", nil)
		if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "plain http") {
			t.Errorf("error %v", err)
		}
	})

	t.Run("redirects", func(t *testing.T) {
		other := newProviderAPI(t, "")
		prov := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Header.Get("Authorization") != "Bearer "+tok:
				w.WriteHeader(http.StatusUnauthorized)
			case r.URL.Path == "/other":
				http.Redirect(w, r, other.srv.URL+"/landing", http.StatusFound)
			case r.URL.Path == "/start":
				http.Redirect(w, r, "/final", http.StatusFound)
			default:
				w.WriteHeader(http.StatusOK)
			}
		}))
		t.Cleanup(prov.Close)
		hc := &http.Client{Transport: rt}
		if code, err := get(t, hc, prov.URL+"/other"); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("redirect to another host: %d %v", code, err)
		}
		if auths, _ := other.got(); len(auths) != 1 || auths[0] != "" {
			t.Error("the token went to the other host")
		}
		if n := api.count(isForce); n != 0 {
			t.Errorf("%d forced refreshes for the other host's 401", n)
		}
		// A redirect on the same host keeps the token.
		if code, err := get(t, hc, prov.URL+"/start"); err != nil || code != http.StatusOK {
			t.Fatalf("same-host redirect: %d %v", code, err)
		}
	})
}

// A waiter that gives up does not fail the shared fetch for the others.
func TestTransportWaiterCancel(t *testing.T) {
	t.Parallel()
	clock := newClock()
	tok := secretToken("at-cancel")
	release := make(chan struct{})
	api := newFakeAPI(t, clock, func(routeRequest) answer {
		<-release
		return tokenAnswer(tok, time.Time{}, "", nil)
	})
	prov := newProviderAPI(t, tok)
	hc := &http.Client{Transport: newTestClient(t, api, clock).Transport("acme", "c1", nil)}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", prov.srv.URL, nil)
		_, err := hc.Do(req)
		done <- err
	}()
	for api.count(isFetch) == 0 { // the fetch has reached the route
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	close(release)
	if code, err := get(t, hc, prov.srv.URL); err != nil || code != 200 {
		t.Fatalf("next request: %d %v", code, err)
	}
	if n := api.count(isFetch); n != 1 {
		t.Errorf("%d fetches, want 1 (shared)", n)
	}
}
