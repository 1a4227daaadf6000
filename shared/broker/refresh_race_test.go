package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/fakeclock"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/schedule"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// The tests in this file run several brokers — one per simulated Lambda
// instance — over one DynamoDB table (dynalite), one rotating provider and
// one settable clock, and check that refresh tokens are never sent twice
// (S21, RFC 9700 §4.14.2): with rotation, a replayed refresh token revokes
// the customer's whole grant.

// raceEnv is what the simulated instances share: a brokertest World on
// dynalite whose acme rotates refresh tokens, and the instances' log.
type raceEnv struct {
	*brokertest.World
	st   store.Store
	prov *providertest.Server
	clk  *fakeclock.Clock
	log  *outcomeLog
}

func newRaceEnv(t *testing.T) *raceEnv {
	t.Helper()
	w := brokertest.New(t, brokertest.Options{
		Providers: []brokertest.Provider{{Name: "acme", Config: providertest.Config{AccessTokenTTL: time.Hour, RotateRefreshTokens: true}}},
		Store:     dynalite.NewStore(t, dynalite.Shared(t).Client),
	})
	// The World's clock keeps whole seconds: the store keeps times in
	// unix seconds, and lease boundaries below are computed exactly.
	e := &raceEnv{World: w, st: w.Store, prov: w.Servers["acme"], clk: w.Clock, log: &outcomeLog{}}
	t.Cleanup(func() {
		e.log.mu.Lock()
		defer e.log.mu.Unlock()
		logcheck.Feed("broker WARN lines in "+t.Name(), strings.Join(e.log.warn, "\n"))
	})
	return e
}

// instance returns a broker as one Lambda instance would run it: its own
// HTTP client, secrets cache and throttles, on the shared catalog and
// provider, over st (the shared table, or a wrapper of it), reading clk.
func (e *raceEnv) instance(st store.Store, clk *fakeclock.Clock) *broker.Broker {
	return &broker.Broker{
		Config:         e.Broker.Config,
		Catalog:        e.Broker.Catalog,
		Store:          st,
		Secrets:        secrets.NewCache(secrets.NewFile(e.SecretsFile), 5*time.Minute),
		ProviderClient: &provider.Client{HTTP: provider.NewHTTPClient(), Now: clk.Now},
		Log:            slog.New(e.log),
		Now:            clk.Now,
	}
}

// seed stores n connected connections with fresh grants, each expiring in
// an hour and due in 50 minutes, and returns their ids and the
// connections as stored.
func (e *raceEnv) seed(t *testing.T, prefix string, n int) ([]string, map[string]store.Connection) {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = prefix + strconv.Itoa(i)
	}
	now := e.clk.Now()
	saved := make([]store.Connection, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				access, refresh := e.prov.IssueGrant("read")
				exp := now.Add(time.Hour)
				saved[i], errs[i] = e.st.SaveConnection(t.Context(), store.Connection{
					Provider: "acme", ConnectionID: ids[i], Status: store.StatusConnected,
					AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
					ExpiresAt: exp, Scope: "read", Grant: provider.GrantAuthorizationCode,
					NextRefresh: exp.Add(-10 * time.Minute),
				})
			}
		})
	}
	wg.Wait()
	out := make(map[string]store.Connection, n)
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("seeding %s: %v", id, errs[i])
		}
		out[id] = saved[i]
	}
	return ids, out
}

func (e *raceEnv) get(t *testing.T, id string) store.Connection {
	t.Helper()
	return e.Get(t, "acme", id)
}

// refreshRequests returns the refresh_token-grant requests among reqs.
func refreshRequests(reqs []providertest.Recorded) []providertest.Recorded {
	var out []providertest.Recorded
	for _, r := range reqs {
		if r.Params.Get("grant_type") == "refresh_token" {
			out = append(out, r)
		}
	}
	return out
}

// checkOneRefreshEach asserts that reqs hold exactly one completed refresh
// request per entry of sent (refresh token → connection id), each with
// that refresh token, and nothing else.
func checkOneRefreshEach(t *testing.T, reqs []providertest.Recorded, sent map[string]string) {
	t.Helper()
	if len(reqs) != len(sent) {
		t.Errorf("%d refresh requests at the provider for %d connections", len(reqs), len(sent))
	}
	seen := map[string]int{}
	bad := 0
	for _, r := range reqs {
		rt := r.Params.Get("refresh_token")
		id, ok := sent[rt]
		seen[rt]++
		switch {
		case !ok:
			bad++
			if bad <= 5 {
				t.Errorf("refresh request with a refresh token no connection held at the start (status %d)", r.Status)
			}
		case seen[rt] == 2:
			bad++
			if bad <= 5 {
				t.Errorf("connection %s: its refresh token was sent more than once (replay: the grant is revoked)", id)
			}
		case r.Status != 200:
			bad++
			if bad <= 5 {
				t.Errorf("connection %s: refresh answered %d", id, r.Status)
			}
		}
	}
	missing := 0
	for rt, id := range sent {
		if seen[rt] == 0 {
			if missing++; missing <= 5 {
				t.Errorf("connection %s was not refreshed", id)
			}
		}
	}
	if bad+missing > 5 {
		t.Errorf("%d bad and %d missing refresh requests in all", bad, missing)
	}
}

// checkHealthy asserts that every connection is connected, free of failures
// and of its lease, with tokens the provider honours; it returns them as
// stored.
func (e *raceEnv) checkHealthy(t *testing.T, ids []string) map[string]store.Connection {
	t.Helper()
	conns := make([]store.Connection, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(ids); i += 8 {
				conns[i], errs[i] = e.st.GetConnection(context.Background(), "acme", ids[i])
			}
		})
	}
	wg.Wait()
	out := make(map[string]store.Connection, len(ids))
	bad := 0
	for i, id := range ids {
		c := conns[i]
		out[id] = c
		if errs[i] != nil || c.Status != store.StatusConnected || c.FailureCount != 0 || c.FailureClass != "" || c.Lease != (store.Lease{}) ||
			!e.prov.ValidRefresh(c.RefreshToken) || !e.prov.Valid(c.AccessToken) {
			if bad++; bad <= 5 {
				t.Errorf("connection %s: %v; status %s, failures %d (%s), lease %+v, refresh token valid %v, access token valid %v",
					id, errs[i], c.Status, c.FailureCount, c.FailureClass, c.Lease, e.prov.ValidRefresh(c.RefreshToken), e.prov.Valid(c.AccessToken))
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d unhealthy connections in all", bad)
	}
	return out
}

// outcomeLog is a slog.Handler that counts the brokers' "refresh" lines by
// trigger and outcome and keeps every line at WARN or above.
type outcomeLog struct {
	mu     sync.Mutex
	counts map[string]int // "trigger/outcome"
	warn   []string
}

func (l *outcomeLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }
func (l *outcomeLog) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *outcomeLog) WithGroup(string) slog.Handler                 { return l }

func (l *outcomeLog) Handle(_ context.Context, r slog.Record) error {
	var trigger, outcome string
	var line strings.Builder
	warn := r.Level >= slog.LevelWarn
	if warn {
		line.WriteString(r.Level.String() + " " + r.Message)
	}
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "trigger":
			trigger = a.Value.String()
		case "outcome":
			outcome = a.Value.String()
		}
		if warn {
			fmt.Fprintf(&line, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Message == "refresh" {
		if l.counts == nil {
			l.counts = map[string]int{}
		}
		l.counts[trigger+"/"+outcome]++
	}
	if warn {
		l.warn = append(l.warn, line.String())
	}
	return nil
}

// take returns the counts and warnings so far and starts afresh.
func (l *outcomeLog) take() (map[string]int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, w := l.counts, l.warn
	l.counts, l.warn = nil, nil
	return c, w
}

// sweepUntilIdle is one scheduled sweep instance at work: it runs
// Sweep until a run lists nothing or refreshes nothing (whatever it
// still lists is then held by another refresher, which finishes it).
func sweepUntilIdle(ctx context.Context, b *broker.Broker) ([]broker.RefreshSummary, error) {
	var sums []broker.RefreshSummary
	for range 50 {
		sum, err := b.Sweep(ctx)
		if err != nil {
			return sums, err
		}
		sums = append(sums, sum)
		if sum.Due == 0 || sum.Refreshed == 0 {
			return sums, nil
		}
	}
	return sums, errors.New("sweep still refreshing after 50 runs")
}

// S21 under load: four sweep instances and four on-demand readers (each
// its own broker, all on one table, provider and clock) renew 1000 due
// connections at once, three times over. The provider must see each
// connection's refresh token exactly once per round, nothing may be lost,
// superseded or refused, and every connection must still refresh
// afterwards.
func TestRefreshRace(t *testing.T) {
	const (
		conns   = 1000
		rounds  = 3
		sweeps  = 4
		readers = 4
	)
	e := newRaceEnv(t)
	ids, stored := e.seed(t, "r", conns) // as stored before each round
	sweepers := make([]*broker.Broker, sweeps)
	for i := range sweepers {
		sweepers[i] = e.instance(e.st, e.clk)
	}
	readerBrokers := make([]*broker.Broker, readers)
	for i := range readerBrokers {
		readerBrokers[i] = e.instance(e.st, e.clk)
	}
	ctx := t.Context()

	for round := 1; round <= rounds; round++ {
		// Tokens are renewed with a one-hour lifetime and come due 8–10
		// minutes before expiry, so 56 minutes later every one is due and
		// still valid for about 4 minutes.
		e.clk.Add(56 * time.Minute)
		now := e.clk.Now()
		sent := make(map[string]string, conns)   // refresh token → connection id
		preRound := make(map[string]bool, conns) // the access tokens before the round
		for id, c := range stored {
			if c.NextRefresh.After(now) || !c.ExpiresAt.After(now.Add(broker.ExpirySlack)) {
				t.Fatalf("round %d: connection %s not due with a usable token: due %v, expires %v, now %v",
					round, id, c.NextRefresh, c.ExpiresAt, now)
			}
			sent[c.RefreshToken] = id
			preRound[c.AccessToken] = true
		}
		reqsBefore := len(e.prov.Requests())
		tokenBefore := e.prov.TokenRequests()
		e.log.take()

		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			sums      [sweeps][]broker.RefreshSummary
			tokenErrs []string
			stale     atomic.Int32 // reads answered with the pre-round token
		)
		start := time.Now()
		for i, b := range sweepers {
			wg.Go(func() {
				s, err := sweepUntilIdle(ctx, b)
				mu.Lock()
				defer mu.Unlock()
				sums[i] = s
				if err != nil {
					tokenErrs = append(tokenErrs, fmt.Sprintf("sweep %d: %v", i, err))
				}
			})
		}
		for i, b := range readerBrokers {
			order := rand.Perm(conns)
			wg.Go(func() {
				for _, j := range order {
					c, err := b.Token(ctx, "acme", ids[j], false)
					if err != nil {
						mu.Lock()
						tokenErrs = append(tokenErrs, fmt.Sprintf("reader %d, %s: %v", i, ids[j], err))
						mu.Unlock()
						continue
					}
					if c.Status != store.StatusConnected || !c.ExpiresAt.After(now) {
						mu.Lock()
						tokenErrs = append(tokenErrs, fmt.Sprintf("reader %d, %s: got status %s expiring %v", i, ids[j], c.Status, c.ExpiresAt))
						mu.Unlock()
					}
					if preRound[c.AccessToken] {
						stale.Add(1)
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)

		// (b) No sweep lost, superseded or failed anything; no read failed.
		if len(tokenErrs) > 0 {
			t.Errorf("round %d: %d errors, first: %s", round, len(tokenErrs), tokenErrs[0])
		}
		swept, runs := 0, 0
		perSweep := make([]int, sweeps)
		for i, ss := range sums {
			for _, s := range ss {
				runs++
				perSweep[i] += s.Refreshed
				swept += s.Refreshed
				if s.Lost != 0 || s.Superseded != 0 || s.NeedsReauth != 0 || s.Failed != 0 || s.Deferred != 0 {
					t.Errorf("round %d: sweep %d: %+v", round, i, s)
				}
			}
		}
		counts, warns := e.log.take()
		onDemand := counts["on_demand/refreshed"]
		if counts["schedule/refreshed"] != swept || swept+onDemand != conns || len(counts) > 2 {
			t.Errorf("round %d: sweeps report %d refreshed; refresh outcomes logged: %v", round, swept, counts)
		}
		for i, w := range warns {
			if i == 5 {
				t.Errorf("round %d: %d warnings in all", round, len(warns))
				break
			}
			t.Errorf("round %d: %s", round, w)
		}
		// (a) Exactly one refresh per connection, with its own token.
		if got := e.prov.TokenRequests() - tokenBefore; got != conns {
			t.Errorf("round %d: %d token requests for %d connections", round, got, conns)
		}
		checkOneRefreshEach(t, refreshRequests(e.prov.Requests()[reqsBefore:]), sent)
		// (c) Every connection is healthy, with rotated tokens.
		stored = e.checkHealthy(t, ids)
		for id, c := range stored {
			if _, old := sent[c.RefreshToken]; old {
				t.Errorf("round %d: connection %s kept its old refresh token", round, id)
			}
		}
		// A read while a sweep holds the lease gets the pre-round token:
		// the sweep's lease moved refresh_due, and the token is still
		// valid for minutes.
		t.Logf("round %d in %v: sweeps refreshed %d %v in %d runs, readers refreshed %d; %d reads answered with the pre-round token",
			round, elapsed.Round(time.Millisecond), swept, perSweep, runs, onDemand, stale.Load())
		if t.Failed() {
			t.FailNow()
		}
	}

	// Every connection still refreshes: force one more renewal of each.
	before := stored
	sent := make(map[string]string, conns)
	for id, c := range before {
		sent[c.RefreshToken] = id
	}
	reqsBefore := len(e.prov.Requests())
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i, b := range readerBrokers {
		wg.Go(func() {
			for j := i; j < conns; j += readers {
				id := ids[j]
				c, err := b.Token(ctx, "acme", id, true)
				if err != nil || c.AccessToken == before[id].AccessToken {
					if failed.Add(1) <= 5 {
						t.Errorf("forced refresh of %s: %v (new access token %v)", id, err, c.AccessToken != before[id].AccessToken)
					}
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d forced refreshes failed", n)
	}
	checkOneRefreshEach(t, refreshRequests(e.prov.Requests()[reqsBefore:]), sent)
	for id, c := range e.checkHealthy(t, ids) {
		if c.RefreshToken == before[id].RefreshToken {
			t.Errorf("forced refresh of %s kept its old refresh token", id)
		}
	}
}

// errKilled is the store error of a process that no longer exists.
var errKilled = errors.New("process killed")

// killedStore is the store as seen by a refresher killed after taking a
// lease: nothing it tries to write reaches the table.
type killedStore struct{ store.Store }

func (killedStore) SaveLeased(context.Context, store.Connection, string) (store.Connection, error) {
	return store.Connection{}, errKilled
}

// A refresher that stops inside its provider call — killed outright, or
// its invocation cancelled — must not cost the connection: nobody refreshes
// it while a lease may still be in use, and the next sweep after the lease
// (or the backoff) renews it with the refresh token it had.
func TestRefreshCrashLeavesConnectionRefreshable(t *testing.T) {
	tests := []struct {
		name string
		// killed: nothing the refresher writes after the cancellation
		// reaches the store (the process died). Otherwise only its
		// context is cancelled and the broker releases the connection.
		killed bool
	}{
		{"killed inside the provider call", true},
		{"invocation cancelled inside the provider call", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newRaceEnv(t)
			ids, seeded := e.seed(t, "crash", 1)
			id := ids[0]
			old := seeded[id]
			expires := old.ExpiresAt
			// The crash happens 40 s before expiry: due, not yet within
			// ExpirySlack. The lease then runs until 20 s after expiry.
			e.clk.Set(expires.Add(-40 * time.Second))
			crashAt := e.clk.Now()
			leaseUntil := crashAt.Add(broker.DefaultLeasePeriod)

			var crashStore store.Store = e.st
			if tt.killed {
				crashStore = killedStore{e.st}
			}
			crasher := e.instance(crashStore, e.clk)
			healthy := e.instance(e.st, e.clk)

			// Long enough that the cancelled request could not complete
			// during the test even if the provider did not notice the
			// client leaving (providertest aborts the delay without an
			// answer or any token change when it does).
			e.prov.Delay(time.Minute)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan broker.RefreshSummary, 1)
			go func() {
				sum, err := crasher.Sweep(ctx)
				if err != nil {
					t.Error(err)
				}
				done <- sum
			}()
			waitInFlight(t, e.prov)
			cancel()
			var crashed broker.RefreshSummary
			select {
			case crashed = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("the cancelled sweep did not return")
			}
			e.prov.Delay(0)
			if crashed.Due != 1 || crashed.Refreshed != 0 || crashed.Lost != 0 || crashed.Failed != 0 {
				t.Fatalf("cancelled sweep: %+v", crashed)
			}

			c := e.get(t, id)
			if c.AccessToken != old.AccessToken || c.RefreshToken != old.RefreshToken || c.Status != store.StatusConnected ||
				!e.prov.ValidRefresh(old.RefreshToken) {
				t.Fatalf("after the crash: tokens changed %v, status %s, old refresh token valid %v",
					c.RefreshToken != old.RefreshToken, c.Status, e.prov.ValidRefresh(old.RefreshToken))
			}
			if tt.killed {
				// The lease stays held, and the connection is out of the
				// due index until the lease ends.
				if c.Lease.Owner == "" || !c.Lease.Until.Equal(leaseUntil) || !c.NextRefresh.Equal(leaseUntil) || c.FailureCount != 0 {
					t.Fatalf("after the kill: lease %+v, due %v (want both until %v), failures %d", c.Lease, c.NextRefresh, leaseUntil, c.FailureCount)
				}
			} else {
				// The provider did not fail, the invocation ended: the
				// broker released the lease in a write that survives the
				// cancellation, left the connection due at once and counted
				// no failure (the sweep reports it deferred).
				if c.Lease != (store.Lease{}) || c.FailureCount != 0 || c.FailureClass != "" || c.LastError != "" ||
					!c.NextRefresh.Equal(crashAt) || crashed.Deferred != 1 {
					t.Fatalf("after the cancellation: lease %+v, failures %d (%s), due in %v; sweep %+v",
						c.Lease, c.FailureCount, c.FailureClass, c.NextRefresh.Sub(crashAt), crashed)
				}
			}
			tokenAfterCrash := e.prov.TokenRequests()
			if tokenAfterCrash != 1 {
				t.Fatalf("%d token requests, want the cancelled one", tokenAfterCrash)
			}

			// After a kill, other sweeps leave it alone: at the same moment
			// and up to the lease's last second, where it is listed again
			// but the lease still holds. (After a cancellation it is due
			// again at once.)
			later := []struct {
				at     time.Duration
				listed bool
			}{
				{0, false},
				{broker.DefaultLeasePeriod / 2, false},
				{broker.DefaultLeasePeriod, true},
			}
			for _, l := range later {
				if !tt.killed {
					break // released and due again: the renewal below
				}
				e.clk.Set(crashAt.Add(l.at))
				sum, err := healthy.Sweep(context.Background())
				want := broker.RefreshSummary{}
				if l.listed {
					want = broker.RefreshSummary{Due: 1, Skipped: 1}
				}
				if err != nil || sum != want || e.prov.TokenRequests() != tokenAfterCrash {
					t.Fatalf("sweep %v after the crash: %+v, %v, want %+v; %d token requests", l.at, sum, err, want, e.prov.TokenRequests())
				}
			}
			e.clk.Set(crashAt)

			if tt.killed {
				// Readers while the lease is held, each an instance with its
				// own clock, all at once (three wait ReaderWait): none may
				// call the provider or write.
				readers := []struct {
					name   string
					at     time.Duration // before expiry
					force  bool
					wait   bool // waits ReaderWait for the holder
					busy   bool // *RefreshError ClassBusy, else the old token
					reason string
				}{
					{"token not due", 40 * time.Second, false, false, false, "refresh_due moved to the lease's end, 40 s left: no renewal needed"},
					{"token within ExpirySlack", 25 * time.Second, false, true, false, "renewal needed, lease held; still usable after the wait"},
					{"token about to expire", 3 * time.Second, false, true, true, "renewal needed, lease held; not usable after the wait"},
					{"forced", 40 * time.Second, true, true, true, "a forced read wants a new token; lease held"},
				}
				type answer struct {
					c    broker.Connection
					err  error
					took time.Duration
				}
				answers := make([]answer, len(readers))
				var wg sync.WaitGroup
				for i, r := range readers {
					clk := new(fakeclock.Clock)
					clk.Set(expires.Add(-r.at))
					b := e.instance(e.st, clk)
					wg.Go(func() {
						start := time.Now()
						c, err := b.Token(context.Background(), "acme", id, r.force)
						answers[i] = answer{c, err, time.Since(start)}
					})
				}
				wg.Wait()
				for i, r := range readers {
					t.Run("reader/"+r.name, func(t *testing.T) {
						a := answers[i]
						var re *broker.RefreshError
						switch {
						case r.busy && (!errors.As(a.err, &re) || re.Class != broker.ClassBusy || re.RetryAfter != time.Second):
							t.Errorf("%s: err = %v, want busy", r.reason, a.err)
						case !r.busy && a.err != nil:
							t.Errorf("%s: err = %v, want the old token", r.reason, a.err)
						case a.c.AccessToken != old.AccessToken:
							t.Errorf("%s: returned another token", r.reason)
						}
						if waited := a.took >= broker.ReaderWait; waited != r.wait {
							t.Errorf("%s: took %v (ReaderWait %v)", r.reason, a.took, broker.ReaderWait)
						}
					})
				}
				if e.prov.TokenRequests() != tokenAfterCrash {
					t.Fatalf("a reader called the provider while the lease was held")
				}
				if c2 := e.get(t, id); c2.Version != c.Version {
					t.Fatalf("a reader wrote the leased connection: version %d → %d", c.Version, c2.Version)
				}
			}
			// After a cancellation the connection is free and due: the
			// next refresher, here the sweep below, renews it.

			// Past the lease (and the backoff), the next sweep renews it.
			e.clk.Set(crashAt.Add(broker.DefaultLeasePeriod + time.Second))
			reqsBefore := len(e.prov.Requests())
			sum, err := healthy.Sweep(context.Background())
			if err != nil || sum.Due != 1 || sum.Refreshed != 1 {
				t.Fatalf("sweep after the lease: %+v, %v", sum, err)
			}
			checkOneRefreshEach(t, refreshRequests(e.prov.Requests()[reqsBefore:]), map[string]string{old.RefreshToken: id})
			got := e.checkHealthy(t, []string{id})[id]
			if got.RefreshToken == old.RefreshToken || e.prov.ValidRefresh(old.RefreshToken) {
				t.Fatal("refresh token not rotated")
			}
			// Only the cancelled refresher, which lived on, logs its
			// interruption.
			counts, warns := e.log.take()
			wantWarns := 1
			if tt.killed {
				wantWarns = 0
			}
			if len(warns) != wantWarns || wantWarns == 1 && !strings.Contains(warns[0], "outcome=interrupted") {
				t.Errorf("warnings: %q", warns)
			}
			t.Logf("refresh outcomes logged: %v", counts)
		})
	}
}

// waitInFlight waits until the provider holds a token request without an
// answer yet.
func waitInFlight(t *testing.T, prov *providertest.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range prov.Requests() {
			if r.Params.Get("grant_type") == "refresh_token" && r.Status == 0 {
				time.Sleep(50 * time.Millisecond) // the handler is in its delay
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no token request reached the provider")
}

// An EventBridge duplicate delivery (two instances running the same
// schedule event at once) and a retry afterwards renew each due
// connection once.
func TestDuplicateScheduleDeliveryIsHarmless(t *testing.T) {
	const conns = 50
	event, err := modroot.ReadFile("events", "refresh.json")
	if err != nil {
		t.Fatal(err)
	}
	e := newRaceEnv(t)
	ids, seeded := e.seed(t, "dup", conns)
	sent := map[string]string{} // refresh token → connection id
	for id, c := range seeded {
		sent[c.RefreshToken] = id
	}
	e.clk.Add(56 * time.Minute)
	b1, b2 := e.instance(e.st, e.clk), e.instance(e.st, e.clk)

	// A slightly slow provider keeps both deliveries at work together.
	e.prov.Delay(20 * time.Millisecond)
	var sums []broker.RefreshSummary
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, b := range []*broker.Broker{b1, b2} {
		wg.Go(func() {
			<-start
			sum, err := schedule.Handler(b)(context.Background(), event)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			sums = append(sums, sum)
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	t.Logf("concurrent deliveries: %+v", sums)
	for _, b := range []*broker.Broker{b1, b2} { // a retry of each, later
		sum, err := schedule.Handler(b)(context.Background(), event)
		if err != nil {
			t.Fatal(err)
		}
		if sum != (broker.RefreshSummary{}) {
			t.Errorf("repeated delivery found work: %+v", sum)
		}
		sums = append(sums, sum)
	}

	refreshed := 0
	for _, s := range sums {
		refreshed += s.Refreshed
		if s.Lost != 0 || s.Superseded != 0 || s.NeedsReauth != 0 || s.Failed != 0 || s.Deferred != 0 || s.Refreshed+s.Skipped != s.Due {
			t.Errorf("summary %+v", s)
		}
	}
	if refreshed != conns {
		t.Errorf("summaries %+v: %d refreshed, want %d", sums, refreshed, conns)
	}
	if n := e.prov.TokenRequests(); n != conns {
		t.Errorf("%d token requests for %d connections", n, conns)
	}
	checkOneRefreshEach(t, refreshRequests(e.prov.Requests()), sent)
	e.checkHealthy(t, ids)
	if _, warns := e.log.take(); len(warns) > 0 {
		t.Errorf("warnings: %q", warns)
	}
}
