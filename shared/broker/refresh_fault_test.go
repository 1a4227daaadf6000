package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/eventrecorder"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// These tests drive the refresh sweep (Broker.Sweep) against providers
// that misbehave — error statuses, HTML, truncated JSON, hangs, 429s — on the
// DynamoDB store (dynalite), and check what is stored on the connection,
// what the sweep counts, how the throttle spreads the workers, and what is
// logged.

// tripAfter mirrors the unexported constant of shared/dispatch's Gate: this
// many consecutive unavailable answers (5xx, timeouts) pause a provider.
const tripAfter = 3

type faultOptions struct {
	providers []brokertest.Provider // one "acme" provider when empty
	// httpTimeout is the provider HTTP client's overall timeout (5 s when 0).
	httpTimeout time.Duration
	// realClock runs the broker on time.Now instead of a settable clock.
	realClock bool
	refresh   broker.RefreshOptions
}

// faultEnv is a broker on a fresh DynamoDB table with its own providers,
// secrets file (read through a secrets.Cache as in setup.go and cmd/dev)
// and a recording HTTP transport.
type faultEnv struct {
	*brokertest.World
	reads *countingSecrets // reads below the cache
	net   *netRecorder
}

func newFaultEnv(t *testing.T, o faultOptions) *faultEnv {
	t.Helper()
	if o.httpTimeout == 0 {
		o.httpTimeout = 5 * time.Second
	}
	e := &faultEnv{}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	t.Cleanup(tr.CloseIdleConnections)
	e.net = &netRecorder{next: tr}
	bo := brokertest.Options{
		Providers: o.providers,
		Store:     dynalite.NewStore(t, dynalite.Shared(t).Client),
		HTTP: &http.Client{
			Timeout:       o.httpTimeout,
			Transport:     e.net,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Secrets: func(file secrets.Source) secrets.Source {
			e.reads = &countingSecrets{src: file}
			return secrets.NewCache(e.reads, time.Minute)
		},
		Refresh: o.refresh,
	}
	if o.realClock {
		bo.Now = time.Now
	}
	e.World = brokertest.New(t, bo)
	return e
}

func (e *faultEnv) now() time.Time { return e.Broker.Now() }

// seed stores a connected connection whose refresh is due, with a grant
// the provider knows.
func (e *faultEnv) seed(t *testing.T, prov, id string) store.Connection {
	t.Helper()
	return e.Seed(t, prov, id, -time.Minute)
}

// seedN seeds n connections of prov as seed does, with ids prefix0,
// prefix1, …, and returns them by id.
func (e *faultEnv) seedN(t *testing.T, prov, prefix string, n int) map[string]store.Connection {
	t.Helper()
	out := make(map[string]store.Connection, n)
	for i := range n {
		id := prefix + strconv.Itoa(i)
		out[id] = e.seed(t, prov, id)
	}
	return out
}

func (e *faultEnv) get(t *testing.T, prov, id string) store.Connection {
	t.Helper()
	return e.Get(t, prov, id)
}

// sweep runs one Sweep and reports how long it took.
func (e *faultEnv) sweep(t *testing.T) (broker.RefreshSummary, time.Duration) {
	t.Helper()
	start := time.Now()
	sum, err := e.Broker.Sweep(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return sum, time.Since(start)
}

// credentials are the strings that must never be stored in LastError or
// logged: every client secret, code and token the providers know of.
func (e *faultEnv) credentials() []string {
	var out []string
	for name, p := range e.Servers {
		out = append(out, e.Secrets.Clients[name].Secret)
		out = append(out, p.Credentials()...)
	}
	return out
}

// assertNoCredentialLogged fails if the broker's log holds a credential.
func (e *faultEnv) assertNoCredentialLogged(t *testing.T) {
	t.Helper()
	logs := e.Logs.String()
	for _, s := range e.credentials() {
		if strings.Contains(logs, s) {
			t.Errorf("broker log contains a credential (%.8s…)", s)
		}
	}
}

// countingSecrets counts reads of each secret that reach the source.
type countingSecrets struct {
	src secrets.Source
	mu  sync.Mutex
	n   map[string]int
}

func (c *countingSecrets) Secret(ctx context.Context, name string) ([]byte, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[name]++
	c.mu.Unlock()
	return c.src.Secret(ctx, name)
}

func (c *countingSecrets) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

// netRecorder is the provider client's transport: it records when each
// request to a host started and how many were in flight at once.
type netRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	// by host
	starts   map[string][]time.Time
	inflight map[string]int
	peak     map[string]int
}

func (r *netRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	r.mu.Lock()
	if r.starts == nil {
		r.starts, r.inflight, r.peak = map[string][]time.Time{}, map[string]int{}, map[string]int{}
	}
	r.starts[host] = append(r.starts[host], time.Now())
	r.inflight[host]++
	r.peak[host] = max(r.peak[host], r.inflight[host])
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inflight[host]--
		r.mu.Unlock()
	}()
	return r.next.RoundTrip(req)
}

// of returns the start times and peak concurrency of requests to p.
func (r *netRecorder) of(p *providertest.Server) ([]time.Time, int) {
	host := strings.TrimPrefix(p.URL, "http://")
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.starts[host]), r.peak[host]
}

// changedFields names the fields in which got differs from want, apart
// from those a refresh outcome may change: Status, FailureCount,
// FailureClass, LastError, NextRefresh, Version, UpdatedAt and Lease.
func changedFields(got, want store.Connection) []string {
	norm := func(c store.Connection) store.Connection {
		c.Status, c.FailureCount, c.FailureClass, c.LastError = "", 0, "", ""
		c.NextRefresh, c.UpdatedAt, c.Version, c.Lease = time.Time{}, time.Time{}, 0, store.Lease{}
		return c
	}
	g, w := reflect.ValueOf(norm(got)), reflect.ValueOf(norm(want))
	var out []string
	for i := range g.NumField() {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			out = append(out, g.Type().Field(i).Name)
		}
	}
	return out
}

func jsonAnswer(status int, body string, header http.Header) func(*testing.T, *faultEnv) {
	return func(_ *testing.T, e *faultEnv) {
		e.Servers["acme"].FailNext(1, status, "application/json", body, header)
	}
}

// TestRefreshFaults runs one sweep over one due connection for each kind of
// provider answer and checks the outcome stored on the connection: the
// failure class, the status, the next attempt, and that nothing else —
// tokens, scope, metadata, expiry, grant, creation time — changed, that the
// lease is released and that no body text or credential reaches LastError
// or the log.
func TestRefreshFaults(t *testing.T) {
	const marker = "BODY-MARKER-7f3c" // response body text that must never be stored or logged
	const hangTimeout = 300 * time.Millisecond
	tests := []struct {
		name    string
		arrange func(*testing.T, *faultEnv)
		// leak is response text that must not appear in LastError (besides
		// marker and the credentials).
		leak    string
		outcome string // "failed", "needs_reauth" or "refreshed"
		class   broker.FailureClass
		// requests is how many token requests the sweep sends; secretReads
		// how many reads of the client secret reach the secrets file.
		requests, secretReads int
		// retryAfter, when set, is the exact delay of the next attempt;
		// otherwise it is backoff(1): 30 to 60 s.
		retryAfter time.Duration
	}{
		{
			name: "429 with Retry-After longer than the backoff",
			arrange: jsonAnswer(429, `{"error":"too_many_requests","error_description":"`+marker+`"}`,
				http.Header{"Retry-After": {"600"}}),
			outcome: "failed", class: broker.ClassRateLimited, requests: 1, secretReads: 1, retryAfter: 600 * time.Second,
		},
		{
			name:    "429 with Retry-After shorter than the backoff",
			arrange: jsonAnswer(429, `{"error_description":"`+marker+`"}`, http.Header{"Retry-After": {"5"}}),
			outcome: "failed", class: broker.ClassRateLimited, requests: 1, secretReads: 1,
		},
		{
			name:    "500 server_error",
			arrange: jsonAnswer(500, `{"error":"server_error","error_description":"`+marker+`"}`, nil),
			outcome: "failed", class: broker.ClassUnavailable, requests: 1, secretReads: 1,
		},
		{
			name: "503 HTML page",
			arrange: func(_ *testing.T, e *faultEnv) {
				e.Servers["acme"].FailNext(1, 503, "text/html", "<html><body><h1>"+marker+" Service Unavailable</h1></body></html>", nil)
			},
			leak:    "<html>",
			outcome: "failed", class: broker.ClassUnavailable, requests: 1, secretReads: 1,
		},
		{
			name: "200 HTML page",
			arrange: func(_ *testing.T, e *faultEnv) {
				e.Servers["acme"].FailNext(1, 200, "text/html", "<html><body>"+marker+" Please log in</body></html>", nil)
			},
			leak:    "<html>",
			outcome: "failed", class: broker.ClassBadResponse, requests: 1, secretReads: 1,
		},
		{
			name:    "200 truncated JSON",
			arrange: jsonAnswer(200, `{"access_token":"x","token_ty`, nil),
			leak:    `{"access_token":"x"`,
			outcome: "failed", class: broker.ClassBadResponse, requests: 1, secretReads: 1,
		},
		{
			name: "302 redirect (not followed)",
			arrange: func(_ *testing.T, e *faultEnv) {
				e.Servers["acme"].FailNext(1, 302, "text/html", marker, http.Header{"Location": {"https://evil.example/" + marker}})
			},
			outcome: "failed", class: broker.ClassBadResponse, requests: 1, secretReads: 1,
		},
		{
			// The provider holds the request past the HTTP client's overall
			// timeout: provider.transportError calls it a "timeout" and
			// failureClass gives ClassTimeout, a transient failure.
			name:    "hang past the HTTP timeout",
			arrange: func(_ *testing.T, e *faultEnv) { e.Servers["acme"].Delay(10 * hangTimeout) },
			outcome: "failed", class: broker.ClassTimeout, requests: 1, secretReads: 1,
		},
		{
			name:    "400 invalid_scope",
			arrange: jsonAnswer(400, `{"error":"invalid_scope","error_description":"`+marker+`"}`, nil),
			outcome: "failed", class: broker.ClassRejected, requests: 1, secretReads: 1,
		},
		{
			name:    "400 invalid_grant",
			arrange: jsonAnswer(400, `{"error":"invalid_grant","error_description":"`+marker+`"}`, nil),
			outcome: "needs_reauth", class: broker.ClassInvalidGrant, requests: 1, secretReads: 1,
		},
		{
			// Refused twice, with a forced re-read of the secret between.
			name: "401 invalid_client twice",
			arrange: func(_ *testing.T, e *faultEnv) {
				e.Servers["acme"].FailNext(2, 401, "application/json", `{"error":"invalid_client","error_description":"`+marker+`"}`,
					http.Header{"Www-Authenticate": {`Basic realm="x"`}})
			},
			outcome: "needs_reauth", class: broker.ClassInvalidClient, requests: 2, secretReads: 2,
		},
		{
			// The retry after the re-read is answered: the connection lives.
			name: "401 invalid_client once",
			arrange: func(_ *testing.T, e *faultEnv) {
				e.Servers["acme"].FailNext(1, 401, "application/json", `{"error":"invalid_client","error_description":"`+marker+`"}`, nil)
			},
			outcome: "refreshed", requests: 2, secretReads: 2,
		},
		{
			// The operator rotated the secret; the warm cache still holds
			// the old one. The provider's own 401 makes the broker re-read
			// the secret, and the retry succeeds.
			name: "stale cached client secret",
			arrange: func(t *testing.T, e *faultEnv) {
				current := e.Secrets.Clients["acme"]
				e.Rewrite(t, func(s *testsecrets.Set) {
					s.Clients["acme"] = testsecrets.Client{ID: current.ID, Secret: "old-" + current.Secret}
				})
				if _, err := e.Broker.Secrets.Secret(context.Background(), "oauthbroker/provider/acme"); err != nil { // now cached
					t.Fatal(err)
				}
				e.Rewrite(t, func(s *testsecrets.Set) { s.Clients["acme"] = current }) // a different size: secrets.File re-reads it
			},
			outcome: "refreshed", requests: 2, secretReads: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFaultEnv(t, faultOptions{httpTimeout: hangTimeout})
			prov := e.Servers["acme"]
			seeded := e.seed(t, "acme", "c1")
			tt.arrange(t, e)
			const secretName = "oauthbroker/provider/acme"
			readsBefore, reqBefore := e.reads.count(secretName), prov.TokenRequests()
			now := e.now()

			sum, _ := e.sweep(t)

			if got := prov.TokenRequests() - reqBefore; got != tt.requests {
				t.Errorf("%d token requests, want %d", got, tt.requests)
			}
			if got := e.reads.count(secretName) - readsBefore; got != tt.secretReads {
				t.Errorf("%d reads of the client secret past the cache, want %d", got, tt.secretReads)
			}
			want := broker.RefreshSummary{Due: 1}
			switch tt.outcome {
			case "failed":
				want.Failed = 1
			case "needs_reauth":
				want.NeedsReauth = 1
			case "refreshed":
				want.Refreshed = 1
			}
			if sum != want {
				t.Errorf("summary %+v, want %+v", sum, want)
			}

			got := e.get(t, "acme", "c1")
			if got.Lease != (store.Lease{}) {
				t.Errorf("lease not released: %+v", got.Lease)
			}
			if got.Version != seeded.Version+2 { // the lease, then the result
				t.Errorf("version %d, want %d (one lease, one save)", got.Version, seeded.Version+2)
			}
			if tt.outcome == "refreshed" {
				if got.Status != store.StatusConnected || got.FailureCount != 0 || got.FailureClass != "" || got.LastError != "" {
					t.Errorf("after success: status %s count %d class %q error %q", got.Status, got.FailureCount, got.FailureClass, got.LastError)
				}
				if got.AccessToken == seeded.AccessToken || !prov.Valid(got.AccessToken) || got.RefreshToken != seeded.RefreshToken {
					t.Errorf("tokens not renewed: new access %v valid %v, refresh kept %v",
						got.AccessToken != seeded.AccessToken, prov.Valid(got.AccessToken), got.RefreshToken == seeded.RefreshToken)
				}
				if !got.NextRefresh.After(now) || !got.NextRefresh.Before(got.ExpiresAt) {
					t.Errorf("next refresh %v, want between now %v and expiry %v", got.NextRefresh, now, got.ExpiresAt)
				}
				e.assertNoCredentialLogged(t)
				return
			}

			if got.FailureCount != 1 || got.FailureClass != string(tt.class) {
				t.Errorf("failure count %d class %q, want 1 %q", got.FailureCount, got.FailureClass, tt.class)
			}
			if got.LastError == "" {
				t.Error("LastError empty")
			}
			for _, s := range append(e.credentials(), marker, tt.leak) {
				if s != "" && strings.Contains(got.LastError, s) {
					t.Errorf("LastError %q contains %q", got.LastError, s)
				}
			}
			if ch := changedFields(got, seeded); len(ch) > 0 {
				t.Errorf("fields changed by a failed refresh: %v", ch)
			}
			if tt.outcome == "needs_reauth" {
				if got.Status != store.StatusNeedsReauth || !got.NextRefresh.IsZero() {
					t.Errorf("status %s next attempt %v, want needs_reauth and never", got.Status, got.NextRefresh)
				}
				// No more attempts: a much later sweep lists nothing.
				e.Clock.Add(24 * time.Hour)
				before := prov.TokenRequests()
				if sum, _ := e.sweep(t); sum.Due != 0 || prov.TokenRequests() != before {
					t.Errorf("later sweep %+v sent %d requests", sum, prov.TokenRequests()-before)
				}
			} else {
				if got.Status != store.StatusConnected {
					t.Errorf("status %s, want connected", got.Status)
				}
				delay := got.NextRefresh.Sub(now)
				if tt.retryAfter != 0 && delay != tt.retryAfter {
					t.Errorf("next attempt in %v, want exactly Retry-After %v", delay, tt.retryAfter)
				}
				if tt.retryAfter == 0 && (delay < 30*time.Second || delay > 60*time.Second) {
					t.Errorf("next attempt in %v, want backoff(1) in [30s, 60s]", delay)
				}
			}
			e.assertNoCredentialLogged(t)
			if strings.Contains(e.Logs.String(), marker) {
				t.Error("broker log contains response body text")
			}
		})
	}
}

// TestRefreshFailingAfterConsecutiveFailures: consecutive transient
// failures back off exponentially and mark the connection failing after
// FailingAfter of them; a success clears it all. The throttle's circuit
// breaker, which trips at the third 502 for 30 s of the broker's clock, is
// long over two hours later.
func TestRefreshFailingAfterConsecutiveFailures(t *testing.T) {
	e := newFaultEnv(t, faultOptions{refresh: broker.RefreshOptions{FailingAfter: 3}})
	events := &eventrecorder.Recorder{}
	e.Broker.Events = events
	prov := e.Servers["acme"]
	seeded := e.seed(t, "acme", "c1")
	prov.FailNext(3, 502, "text/html", "<html>502 Bad Gateway</html>", nil)
	bounds := []struct{ lo, hi time.Duration }{ // backoff(n): half to all of 1, 2, 4 min
		{30 * time.Second, time.Minute},
		{time.Minute, 2 * time.Minute},
		{2 * time.Minute, 4 * time.Minute},
	}
	var delays []time.Duration
	for attempt := 1; attempt <= 3; attempt++ {
		if attempt > 1 {
			e.Clock.Add(2 * time.Hour)
		}
		before := prov.TokenRequests()
		if sum, _ := e.sweep(t); sum.Failed != 1 || sum.Deferred != 0 || prov.TokenRequests()-before != 1 {
			t.Fatalf("attempt %d: sweep %+v, %d requests", attempt, sum, prov.TokenRequests()-before)
		}
		c := e.get(t, "acme", "c1")
		wantStatus := store.StatusConnected
		if attempt == 3 {
			wantStatus = store.StatusFailing
		}
		d := c.NextRefresh.Sub(e.now())
		delays = append(delays, d)
		if c.Status != wantStatus || c.FailureCount != attempt || c.FailureClass != string(broker.ClassUnavailable) ||
			c.LastError == "" || strings.Contains(c.LastError, "<html>") {
			t.Errorf("attempt %d: status %s count %d class %q error %q; want %s %d unavailable",
				attempt, c.Status, c.FailureCount, c.FailureClass, c.LastError, wantStatus, attempt)
		}
		if b := bounds[attempt-1]; d < b.lo || d > b.hi {
			t.Errorf("attempt %d: next attempt in %v, want backoff(%d) in [%v, %v]", attempt, d, attempt, b.lo, b.hi)
		}
		if ch := changedFields(c, seeded); len(ch) > 0 {
			t.Errorf("attempt %d changed %v", attempt, ch)
		}
	}
	if !(delays[2] > delays[0] && delays[2] >= 2*time.Minute) {
		t.Errorf("backoff did not grow: %v", delays)
	}

	e.Clock.Add(2 * time.Hour)
	before := prov.TokenRequests()
	if sum, _ := e.sweep(t); sum.Refreshed != 1 || sum.Deferred != 0 || prov.TokenRequests()-before != 1 {
		t.Fatalf("recovery sweep %+v, %d requests (a throttle pause still in force?)", sum, prov.TokenRequests()-before)
	}
	c := e.get(t, "acme", "c1")
	if c.Status != store.StatusConnected || c.FailureCount != 0 || c.FailureClass != "" || c.LastError != "" ||
		c.AccessToken == seeded.AccessToken || !prov.Valid(c.AccessToken) {
		t.Errorf("after recovery: status %s count %d class %q error %q, token renewed %v",
			c.Status, c.FailureCount, c.FailureClass, c.LastError, c.AccessToken != seeded.AccessToken)
	}
	// Lifecycle events: one when it became failing (not on every failed
	// attempt), one when it recovered.
	var got []string
	for _, ev := range events.Events() {
		got = append(got, string(ev.Type)+"/"+ev.Status+"/"+ev.FailureClass)
	}
	if want := "failing/failing/unavailable recovered/connected/"; strings.Join(got, " ") != want {
		t.Errorf("lifecycle events %v, want %s", got, want)
	}
}

// TestThrottledProviderDoesNotSlowOthers: a provider that answers 429 or
// hangs is paused after the first answers, its other connections are
// deferred untouched, and the healthy provider's connections are all
// refreshed in the same sweep without waiting for the pause.
func TestThrottledProviderDoesNotSlowOthers(t *testing.T) {
	const (
		workers = 4
		nSlow   = 20
		nFast   = 40
		// perLane: dispatch runs 2×workers goroutines (workers provider
		// calls, as many leasing or saving); with two lanes, one provider
		// holds at most half of them.
		perLane = (2*workers + 1) / 2
	)
	tests := []struct {
		name        string
		httpTimeout time.Duration
		arrange     func(slow *providertest.Server)
		class       broker.FailureClass
		// minReq and maxReq bound the requests the slow provider gets.
		minReq, maxReq int
		retryAfter     time.Duration // exact next attempt of a failed slow connection; 0: backoff(1)
	}{
		{
			// The throttle learns of the 429 only from an answer, and the
			// dispatcher hands the slow lane its perLane workers at once
			// (round-robin: fast, slow, fast, slow), so up to perLane
			// requests leave before the first 429 comes back; after it,
			// the lane is paused for Retry-After on the broker's clock.
			// (The fast lane, 40 refreshes of 20 ms each at most perLane
			// at a time, cannot drain and hand the slow lane all workers
			// within the milliseconds the first 429 takes.)
			name:        "429 Retry-After 120",
			httpTimeout: 5 * time.Second,
			arrange: func(slow *providertest.Server) {
				slow.FailNext(1000, 429, "application/json", `{"error":"rate_limited"}`, http.Header{"Retry-After": {"120"}})
			},
			class:  broker.ClassRateLimited,
			minReq: 1, maxReq: perLane,
			retryAfter: 120 * time.Second,
		},
		{
			// Timeouts trip the circuit breaker at the tripAfter-th
			// consecutive one; nothing starts after it (the pause is 30 s
			// of the broker's clock, which stands still). Before it, the
			// slow lane holds at most perLane workers while the fast lane
			// has work, but all workers once the fast lane has drained
			// (dispatch drops empty lanes, and a lone lane may use every
			// worker) — which happens here when the 40 fast refreshes end
			// before the third round of 300 ms timeouts. So when the trip
			// happens at most workers-1 other slow requests are in flight
			// (their permits were taken before the pause), and
			// tripAfter ≤ requests ≤ tripAfter + workers - 1.
			name:        "hang past the HTTP timeout",
			httpTimeout: 300 * time.Millisecond,
			arrange:     func(slow *providertest.Server) { slow.Delay(2 * time.Second) },
			class:       broker.ClassTimeout,
			minReq:      tripAfter, maxReq: tripAfter + workers - 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFaultEnv(t, faultOptions{
				providers: []brokertest.Provider{
					{Name: "fast", Config: providertest.Config{AccessTokenTTL: time.Hour}},
					{Name: "slow", Config: providertest.Config{AccessTokenTTL: time.Hour}},
				},
				httpTimeout: tt.httpTimeout,
				refresh:     broker.RefreshOptions{Workers: workers},
			})
			slow, fast := e.Servers["slow"], e.Servers["fast"]
			seededSlow := e.seedN(t, "slow", "s", nSlow)
			seededFast := e.seedN(t, "fast", "f", nFast)
			tt.arrange(slow)
			fast.Delay(20 * time.Millisecond)
			now := e.now()

			sum, elapsed := e.sweep(t)
			n := slow.TokenRequests()
			_, fastPeak := e.net.of(fast)
			t.Logf("sweep %+v in %v; slow provider got %d requests; fast provider peak concurrency %d of %d workers",
				sum, elapsed, n, fastPeak, workers)

			if elapsed >= 5*time.Second {
				t.Errorf("sweep took %v: it waited for the slow provider", elapsed)
			}
			if n < tt.minReq || n > tt.maxReq {
				t.Errorf("slow provider got %d requests, want %d to %d", n, tt.minReq, tt.maxReq)
			}
			if got := fast.TokenRequests(); got != nFast {
				t.Errorf("fast provider got %d requests, want %d", got, nFast)
			}
			want := broker.RefreshSummary{Due: nSlow + nFast, Refreshed: nFast, Failed: n, Deferred: nSlow - n}
			if sum != want {
				t.Errorf("summary %+v, want %+v", sum, want)
			}
			for id, s := range seededFast {
				c := e.get(t, "fast", id)
				if c.Status != store.StatusConnected || c.FailureCount != 0 || c.AccessToken == s.AccessToken || !fast.Valid(c.AccessToken) || !c.NextRefresh.After(now) {
					t.Errorf("fast %s not refreshed: status %s count %d due %v", id, c.Status, c.FailureCount, c.NextRefresh)
				}
			}
			failed, deferred := 0, 0
			for id, s := range seededSlow {
				c := e.get(t, "slow", id)
				if c.Lease != (store.Lease{}) {
					t.Errorf("slow %s still leased", id)
				}
				if ch := changedFields(c, s); len(ch) > 0 {
					t.Errorf("slow %s: changed %v", id, ch)
				}
				switch c.FailureCount {
				case 0:
					// Deferred: never leased, still due, untouched — or, if
					// leased just before the pause was seen, released again
					// without a request, due at once (version +2).
					deferred++
					untouched := c.Version == s.Version && c.NextRefresh.Equal(s.NextRefresh)
					released := c.Version == s.Version+2 && c.NextRefresh.Equal(now)
					if !untouched && !released || c.FailureClass != "" || c.Status != store.StatusConnected {
						t.Errorf("deferred slow %s changed: version %d→%d due %v→%v class %q",
							id, s.Version, c.Version, s.NextRefresh, c.NextRefresh, c.FailureClass)
					}
				case 1:
					failed++
					d := c.NextRefresh.Sub(now)
					if c.FailureClass != string(tt.class) || c.Status != store.StatusConnected ||
						tt.retryAfter != 0 && d != tt.retryAfter || tt.retryAfter == 0 && (d < 30*time.Second || d > time.Minute) {
						t.Errorf("failed slow %s: class %q status %s next attempt in %v", id, c.FailureClass, c.Status, d)
					}
				default:
					t.Errorf("slow %s: failure count %d", id, c.FailureCount)
				}
			}
			if failed != n || deferred != nSlow-n {
				t.Errorf("%d slow connections failed and %d deferred, want %d and %d", failed, deferred, n, nSlow-n)
			}

			// The pause outlives the sweep (a warm instance): the next tick
			// defers the rest at once instead of calling or waiting.
			sum2, elapsed2 := e.sweep(t)
			if want2 := (broker.RefreshSummary{Due: nSlow - n, Deferred: nSlow - n}); sum2 != want2 || slow.TokenRequests() != n || elapsed2 > 2*time.Second {
				t.Errorf("second sweep %+v in %v with %d more requests, want %+v", sum2, elapsed2, slow.TokenRequests()-n, want2)
			}
			e.assertNoCredentialLogged(t)
		})
	}
}

// TestRateBudget: a catalog rate_limit of 5 requests per second (a token
// bucket with a burst of one) spaces a sweep's requests 200 ms apart even
// with more workers than connections. The limiter runs on the broker's
// clock, so this broker runs on the real one.
func TestRateBudget(t *testing.T) {
	// With 8 workers every connection is dispatched at once and waits its
	// turn for the budget after taking its lease; with 1, the dispatcher
	// itself paces the dispatches. Both keep to 5 requests per second.
	for _, workers := range []int{8, 1} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			const n = 12
			const every = 200 * time.Millisecond // 1 s / 5
			e := newFaultEnv(t, faultOptions{
				providers: []brokertest.Provider{{
					Name:   "metered",
					Config: providertest.Config{AccessTokenTTL: time.Hour},
					Entry:  codeEntry + "    rate_limit: {requests: 5, period_seconds: 1}\n",
				}},
				realClock: true,
				refresh:   broker.RefreshOptions{Workers: workers},
			})
			prov := e.Servers["metered"]
			e.seedN(t, "metered", "m", n)
			sum, elapsed := e.sweep(t)
			starts, peak := e.net.of(prov)
			t.Logf("sweep %+v in %v, peak concurrency %d", sum, elapsed, peak)
			if want := (broker.RefreshSummary{Due: n, Refreshed: n}); sum != want {
				t.Fatalf("summary %+v, want %+v", sum, want)
			}
			if prov.TokenRequests() != n || len(starts) != n {
				t.Fatalf("%d token requests (%d seen by the transport), want %d", prov.TokenRequests(), len(starts), n)
			}
			// (n-1) intervals of 200 ms: 2.2 s; allow for clock granularity.
			if elapsed < 2*time.Second {
				t.Errorf("sweep took %v, want at least %v for %d requests at 5/s", elapsed, time.Duration(n-1)*every, n)
			}
			if elapsed > 8*time.Second {
				t.Errorf("sweep took %v: far longer than the budget needs", elapsed)
			}
			// The k-th request cannot leave before k intervals after the first;
			// the slack covers the store round trips between a worker's permit and
			// its request, which vary from one worker to the next.
			slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
			const slack = 150 * time.Millisecond
			for k := 1; k < len(starts); k++ {
				if d := starts[k].Sub(starts[0]); d < time.Duration(k)*every-slack {
					t.Errorf("request %d left %v after the first, want at least %v", k, d, time.Duration(k)*every-slack)
				}
			}
			for i := range n {
				if c := e.get(t, "metered", "m"+strconv.Itoa(i)); c.Status != store.StatusConnected || c.FailureCount != 0 || !prov.Valid(c.AccessToken) {
					t.Errorf("m%d: status %s count %d", i, c.Status, c.FailureCount)
				}
			}
		})
	}
}

// TestRefreshMetricsEMF: a sweep writes one CloudWatch Embedded Metric
// Format record per provider and outcome, one "refresh" line per
// connection, and no credential anywhere.
func TestRefreshMetricsEMF(t *testing.T) {
	e := newFaultEnv(t, faultOptions{refresh: broker.RefreshOptions{Workers: 1}})
	prov := e.Servers["acme"]
	ids := []string{"c1", "c2", "c3"}
	for _, id := range ids {
		e.seed(t, "acme", id)
	}
	prov.FailNext(1, 500, "application/json", `{"error":"server_error"}`, nil)
	if sum, _ := e.sweep(t); sum.Refreshed != 2 || sum.Failed != 1 {
		t.Fatalf("sweep %+v, want 2 refreshed and 1 failed", sum)
	}

	type record = map[string]any
	var metrics, lines []record
	var summaries int
	for raw := range strings.Lines(e.Logs.String()) {
		var r record
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, raw)
		}
		switch r["msg"] {
		case "refresh metrics":
			metrics = append(metrics, r)
		case "refresh":
			lines = append(lines, r)
		case "refresh sweep":
			summaries++
			if r["due"] != 3.0 || r["refreshed"] != 2.0 || r["failed"] != 1.0 {
				t.Errorf("summary line %v", r)
			}
		}
	}
	if summaries != 1 {
		t.Errorf("%d summary lines", summaries)
	}

	wantCount := map[string]float64{"refreshed": 2, "failed": 1}
	if len(metrics) != len(wantCount) {
		t.Errorf("%d EMF records, want one per outcome: %v", len(metrics), metrics)
	}
	seen := map[string]bool{}
	for _, r := range metrics {
		outcome, _ := r["outcome"].(string)
		if r["provider"] != "acme" || seen[outcome] {
			t.Errorf("EMF record for provider %v outcome %q (duplicate: %v)", r["provider"], outcome, seen[outcome])
		}
		seen[outcome] = true
		if r["Refreshes"] != wantCount[outcome] {
			t.Errorf("%s: Refreshes = %v, want %v", outcome, r["Refreshes"], wantCount[outcome])
		}
		aws, _ := r["_aws"].(map[string]any)
		if ts, _ := aws["Timestamp"].(float64); int64(ts) != e.now().UnixMilli() {
			t.Errorf("%s: Timestamp %v, want %d", outcome, aws["Timestamp"], e.now().UnixMilli())
		}
		cwm, _ := aws["CloudWatchMetrics"].([]any)
		if len(cwm) != 1 {
			t.Errorf("%s: CloudWatchMetrics %v", outcome, aws["CloudWatchMetrics"])
			continue
		}
		m, _ := cwm[0].(map[string]any)
		if m["Namespace"] != "oauthbroker" {
			t.Errorf("%s: Namespace %v", outcome, m["Namespace"])
		}
		if dims, _ := json.Marshal(m["Dimensions"]); string(dims) != `[["provider","outcome"]]` {
			t.Errorf("%s: Dimensions %s", outcome, dims)
		}
		if defs, _ := json.Marshal(m["Metrics"]); string(defs) != `[{"Name":"Refreshes","Unit":"Count"},{"Name":"RefreshLatency","Unit":"Milliseconds"}]` {
			t.Errorf("%s: Metrics %s", outcome, defs)
		}
		lat, _ := r["RefreshLatency"].([]any)
		if float64(len(lat)) != wantCount[outcome] {
			t.Errorf("%s: RefreshLatency %v, want %v samples", outcome, r["RefreshLatency"], wantCount[outcome])
		}
		for _, v := range lat {
			if ms, ok := v.(float64); !ok || ms <= 0 || ms > 5000 {
				t.Errorf("%s: latency sample %v", outcome, v)
			}
		}
	}

	if len(lines) != len(ids) {
		t.Errorf("%d refresh lines, want %d", len(lines), len(ids))
	}
	byID := map[string]record{}
	outcomes := map[string]int{}
	for _, r := range lines {
		id, _ := r["connection_id"].(string)
		byID[id] = r
		outcome, _ := r["outcome"].(string)
		outcomes[outcome]++
		if _, ok := r["latency_ms"].(float64); !ok || r["provider"] != "acme" || r["trigger"] != "schedule" {
			t.Errorf("refresh line %v", r)
		}
		if outcome == "failed" && (r["class"] != string(broker.ClassUnavailable) || r["attempt"] != 1.0 || r["next_attempt"] == nil || r["cause"] == nil) {
			t.Errorf("failure line %v", r)
		}
	}
	for _, id := range ids {
		if byID[id] == nil {
			t.Errorf("no refresh line for %s", id)
		}
	}
	if outcomes["refreshed"] != 2 || outcomes["failed"] != 1 {
		t.Errorf("refresh line outcomes %v", outcomes)
	}
	for i, raw := range strings.Split(e.Logs.String(), "\n") {
		for _, s := range e.credentials() {
			if strings.Contains(raw, s) {
				t.Errorf("log line %d contains a credential (%.8s…)", i+1, s)
			}
		}
	}
	if len(e.credentials()) < 2*len(ids)+2 { // the check above must have had something to find
		t.Fatalf("only %d credentials known", len(e.credentials()))
	}
}
