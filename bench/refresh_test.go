package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

// The benchmarks share one dynalite server (dynalite.Shared) and one
// moto_server (moto.Shared).
func TestMain(m *testing.M) { logcheck.Main(moto.Wrap(dynalite.Wrap(m))) }

// sweepConns is how many due connections each case refreshes: 10 000, or
// $REFRESH_BENCH_CONNS for a quick look.
var sweepConns = envInt("REFRESH_BENCH_CONNS", 10_000)

// sweepBatch is RefreshOptions.Batch: one sweep lists every due connection,
// so the ListDue query (DueShards shards, pages of 1000) is paid once for
// all of them and no sweep waits for the slowest refresh of a small batch
// before listing the next. $REFRESH_BENCH_BATCH overrides it.
var sweepBatch = envInt("REFRESH_BENCH_BATCH", sweepConns)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

const (
	// providerLatency is the token endpoint's answer time (providertest
	// Delay) in the provider-bound cases.
	providerLatency = 50 * time.Millisecond
	// seedWorkers bounds concurrent SaveConnection calls while seeding.
	seedWorkers = 16
)

// sweepCase is one sub-benchmark.
type sweepCase struct {
	name    string
	workers int
	// delay is the provider's latency; 0 makes DynamoDB (dynalite) and
	// the broker itself the only limit.
	delay time.Duration
	// rate, when positive, is the catalog's rate_limit: rate requests per
	// period.
	rate   int
	period time.Duration
	// optional cases run only with REFRESH_BENCH_ALL=1.
	optional bool
	// conns is how many due connections each iteration refreshes; 0 means
	// sweepConns.
	conns int
}

// size is how many due connections an iteration of c refreshes.
func (c sweepCase) size() int {
	if c.conns > 0 {
		return c.conns
	}
	return sweepConns
}

// ceiling is the best the sweep could do: min(workers / delay, rate
// budget) refreshes per second; +Inf when nothing bounds it.
func (c sweepCase) ceiling() float64 {
	ceil := math.Inf(1)
	if c.delay > 0 {
		ceil = float64(c.workers) / c.delay.Seconds()
	}
	if c.rate > 0 {
		ceil = min(ceil, float64(c.rate)/c.period.Seconds())
	}
	return ceil
}

var sweepCases = []sweepCase{
	// First, so the provider-bound cases can be read against it.
	{name: "ddb-bound/C=16/delay=0", workers: 16},
	{name: "C=4", workers: 4, delay: providerLatency, optional: true},
	{name: "C=8", workers: 8, delay: providerLatency},
	{name: "C=16", workers: 16, delay: providerLatency},
	{name: "C=16/rate=100per1s", workers: 16, delay: providerLatency, rate: 100, period: time.Second},
}

// sweepResult is what one case measured, summed over its iterations.
type sweepResult struct {
	c       sweepCase
	n       int           // iterations
	elapsed time.Duration // wall time of the sweeps only
	sum     broker.RefreshSummary
	sweeps  int
	// DynamoDB requests and their summed durations by operation
	// (X-Amz-Target), failed answers (non-2xx: a retry or a failed
	// condition) and new TCP connections.
	ddbOps    map[string]int
	ddbBusy   map[string]time.Duration
	ddbFailed int
	ddbDials  int64
	// Token requests, their summed round trips, new TCP connections.
	provCalls int
	provBusy  time.Duration
	provDials int64
	// maxInPeriod is the most token requests sent within any sliding
	// window of the rate limit's period; sendGap the mean time between
	// consecutive sends (rate cases only).
	maxInPeriod int
	sendGap     time.Duration
	// CPU seconds used during the sweeps by this process and its
	// children (dynalite), and by every other process on the host (the
	// machine may be shared); NaN where /proc is not readable.
	cpuOurs, cpuOthers float64
}

func (r *sweepResult) throughput() float64 { return float64(r.sum.Refreshed) / r.elapsed.Seconds() }

func (r *sweepResult) ddbTotal() (all, nonQuery int) {
	for op, n := range r.ddbOps {
		all += n
		if op != "Query" {
			nonQuery += n
		}
	}
	return all, nonQuery
}

// meanMS is the mean duration of one op request in milliseconds.
func (r *sweepResult) meanMS(op string) float64 {
	if r.ddbOps[op] == 0 {
		return 0
	}
	return float64(r.ddbBusy[op].Microseconds()) / 1000 / float64(r.ddbOps[op])
}

func (r *sweepResult) providerMS() float64 {
	if r.provCalls == 0 {
		return 0
	}
	return float64(r.provBusy.Microseconds()) / 1000 / float64(r.provCalls)
}

// workerBound is what C workers can do when each connection costs its
// lease, its token request and its save one after another (the sweep's
// design): C / (lease + token request + save), from the measured means.
func (r *sweepResult) workerBound() float64 {
	perConn := r.meanMS("UpdateItem") + r.providerMS() + r.meanMS("PutItem")
	if perConn == 0 {
		return 0
	}
	return float64(r.c.workers) / (perConn / 1000)
}

// ddbBaseline is the refresh rate of the ddb-bound case when it ran
// earlier in this process (0 otherwise).
var ddbBaseline struct {
	sync.Mutex
	perSecond float64
}

func baseline() float64 {
	ddbBaseline.Lock()
	defer ddbBaseline.Unlock()
	return ddbBaseline.perSecond
}

// BenchmarkRefreshSweep sweeps sweepConns due connections on DynamoDB
// (dynalite) against a provider answering in providerLatency with C
// workers, and reports the refresh rate against the ceiling min(C /
// latency, rate budget) and the DynamoDB requests per refreshed
// connection. Run it with -benchtime 1x: one iteration is 10 000 refreshes.
// The C=4 case (about 2.5 minutes on its own) runs only with
// REFRESH_BENCH_ALL=1, to keep the default run near 6 minutes.
func BenchmarkRefreshSweep(b *testing.B) {
	var results []*sweepResult
	for _, c := range sweepCases {
		b.Run(c.name, func(b *testing.B) {
			if c.optional && os.Getenv("REFRESH_BENCH_ALL") == "" {
				b.Skip("set REFRESH_BENCH_ALL=1 to run this case")
			}
			results = append(results, runSweepCase(b, c))
		})
	}
	if len(results) > 0 {
		var sb strings.Builder
		fmt.Fprintf(&sb, "summary (N=%d per case, batch %d, %d CPUs, GOMAXPROCS %d):\n",
			sweepConns, sweepBatch, runtime.NumCPU(), runtime.GOMAXPROCS(0))
		for _, r := range results {
			sb.WriteString("  " + r.line() + "\n")
		}
		// The parent of sub-benchmarks prints no result, and with it
		// none of its log: write the summary out.
		fmt.Print(sb.String())
	}
}

// runSweepCase runs one case's iterations and reports its metrics.
func runSweepCase(b *testing.B, c sweepCase) *sweepResult {
	ctx := b.Context()
	srv := dynalite.Shared(b)
	ddb := newDDBCounter()
	client := newDynamoClient(b, srv.Endpoint, ddb)

	pcfg := providertest.Config{
		ClientID: "cid", ClientSecret: "csecret", RedirectURI: "https://broker.example.test/callback/acme",
		RotateRefreshTokens: true, AccessTokenTTL: time.Hour,
	}
	if c.rate > 0 && os.Getenv("REFRESH_BENCH_ENFORCE") != "" {
		// The provider enforces the budget too, in fixed windows as
		// providertest does: a token request beyond it gets 429.
		pcfg.RateLimit, pcfg.RateWindow = c.rate, c.period
	}
	prov := providertest.New(b, pcfg)
	prov.Delay(c.delay)
	entry := "  acme:\n" +
		"    authorization_url: " + prov.AuthorizeURL() + "\n" +
		"    token_url: " + prov.TokenURL() + "\n" +
		"    grant_types: [authorization_code, refresh_token]\n"
	if c.rate > 0 {
		entry += fmt.Sprintf("    rate_limit:\n      requests: %d\n      period_seconds: %d\n", c.rate, int(c.period/time.Second))
	}
	probe := &providerProbe{}
	provHTTP := probe.instrument(provider.NewHTTPClient())
	logs := &warnLog{}

	r := &sweepResult{c: c, ddbOps: map[string]int{}, ddbBusy: map[string]time.Duration{}}
	// Only the sweeps are timed: seeding, checks and table set-up and
	// tear-down run with the timer stopped.
	for b.Loop() {
		b.StopTimer()
		table := dynalite.NewTable(b, client)
		sealer := testkeys.Sealer()
		st := dynamo.NewWithSealers(client, table, sealer, sealer)
		br := brokertest.New(b, brokertest.Options{
			Catalog: entry,
			Clients: map[string]testsecrets.Client{"acme": {ID: "cid", Secret: "csecret"}},
			Store:   st,
			HTTP:    provHTTP,
			Now:     time.Now,
			Secrets: func(file secrets.Source) secrets.Source { return secrets.NewCache(file, 0) },
			Refresh: broker.RefreshOptions{Workers: c.workers, Batch: sweepBatch},
		}).Broker
		br.Log = slog.New(logs)
		seedStart := time.Now()
		n := c.size()
		if err := seed(ctx, st, prov, n); err != nil {
			b.Fatalf("seeding: %v", err)
		}
		seedTime := time.Since(seedStart)
		tokensBefore := prov.TokenRequests()
		ddb.reset()
		probe.reset()

		cpu0 := sampleCPU()
		b.StartTimer()
		start := time.Now()
		var sum broker.RefreshSummary
		sweeps := 0
		// Each sweep lists up to sweepBatch; a sweep that lists some but
		// makes no progress would loop, so bound the count generously.
		maxSweeps := 2*((n+sweepBatch-1)/sweepBatch) + 10
		for sum.Refreshed < n && sweeps < maxSweeps {
			s, err := br.Sweep(ctx)
			if err != nil {
				b.Fatalf("sweep %d: %v", sweeps+1, err)
			}
			sweeps++
			addSummary(&sum, s)
			if s.Due == 0 {
				break
			}
		}
		elapsed := time.Since(start)
		b.StopTimer()
		ours, others := sampleCPU().coresSince(cpu0, elapsed)

		ops, busy, failed, dials := ddb.snapshot()
		tokens := prov.TokenRequests() - tokensBefore
		if tokens != n || sum.Refreshed != n || sum.Lost != 0 {
			b.Fatalf("%d token requests, summary %+v after %d sweeps; want %d refreshed once each, none lost; warnings logged: %s",
				tokens, sum, sweeps, n, logs.first())
		}
		if err := checkSample(ctx, st, prov, n, 50); err != nil {
			b.Fatal(err)
		}
		b.Logf("seeded %d connections in %v (%.0f SaveConnection/s with %d goroutines; not timed)",
			n, seedTime.Round(time.Millisecond), float64(n)/seedTime.Seconds(), seedWorkers)

		r.n++
		r.elapsed += elapsed
		r.cpuOurs += ours * elapsed.Seconds()
		r.cpuOthers += others * elapsed.Seconds()
		r.sweeps += sweeps
		addSummary(&r.sum, sum)
		for op, n := range ops {
			r.ddbOps[op] += n
			r.ddbBusy[op] += busy[op]
		}
		r.ddbFailed += failed
		r.ddbDials += dials
		calls, provBusy, provDials, sendTimes := probe.snapshot()
		r.provCalls += calls
		r.provBusy += provBusy
		r.provDials += provDials
		if c.rate > 0 {
			r.maxInPeriod = max(r.maxInPeriod, maxWithin(sendTimes, c.period))
			if len(sendTimes) > 1 {
				r.sendGap = sendTimes[len(sendTimes)-1].Sub(sendTimes[0]) / time.Duration(len(sendTimes)-1)
			}
		}
		if _, err := client.DeleteTable(context.WithoutCancel(ctx), &dynamodb.DeleteTableInput{TableName: aws.String(table)}); err != nil {
			b.Logf("deleting table %s: %v", table, err)
		}
		// b.Loop must be called with the timer running; it stops the
		// timer itself at the end.
		b.StartTimer()
	}

	tput := r.throughput()
	all, nonQuery := r.ddbTotal()
	refreshed := float64(r.sum.Refreshed)
	b.ReportMetric(tput, "refreshed/s")
	b.ReportMetric(float64(all)/refreshed, "ddb_req/conn")
	b.ReportMetric(float64(nonQuery)/refreshed, "ddb_nonquery_req/conn")
	b.ReportMetric(float64(r.ddbOps["Query"])/float64(r.n), "ddb_query/run")
	b.ReportMetric(r.meanMS("UpdateItem"), "lease_ms")
	b.ReportMetric(r.meanMS("PutItem"), "save_ms")
	b.ReportMetric(r.providerMS(), "provider_ms")
	b.ReportMetric(float64(r.provDials)/float64(r.n), "provider_dials/run")
	if !math.IsNaN(r.cpuOurs) {
		b.ReportMetric(r.cpuOurs/r.elapsed.Seconds(), "cpu_cores_bench")
		b.ReportMetric(r.cpuOthers/r.elapsed.Seconds(), "cpu_cores_others")
	}
	if ceil := c.ceiling(); !math.IsInf(ceil, 1) {
		b.ReportMetric(ceil, "ceiling/s")
		b.ReportMetric(tput/ceil, "x_ceiling")
		if base := baseline(); base > 0 {
			b.ReportMetric(tput/min(ceil, base), "x_eff_ceiling")
		}
	} else {
		ddbBaseline.Lock()
		ddbBaseline.perSecond = tput
		ddbBaseline.Unlock()
	}
	if c.rate > 0 {
		b.ReportMetric(float64(r.maxInPeriod), "max_sends/period")
		b.ReportMetric(float64(r.sendGap.Microseconds())/1000, "send_gap_ms")
	}
	b.Log(r.line())
	return r
}

// line is a one-line, human-readable summary of a case.
func (r *sweepResult) line() string {
	all, nonQuery := r.ddbTotal()
	refreshed := float64(r.sum.Refreshed)
	ceil := r.c.ceiling()
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-22s %d refreshed in %.1fs = %.1f/s", r.c.name, r.sum.Refreshed, r.elapsed.Seconds(), r.throughput())
	if math.IsInf(ceil, 1) {
		sb.WriteString(", the ddb-bound ceiling")
	} else {
		fmt.Fprintf(&sb, ", x%.3f of ceiling %.0f/s", r.throughput()/ceil, ceil)
		if base := baseline(); base > 0 && base < ceil {
			fmt.Fprintf(&sb, " (x%.3f of ddb-bound %.0f/s)", r.throughput()/base, base)
		}
	}
	fmt.Fprintf(&sb, " | per conn: lease %.1fms + token %.1fms + save %.1fms (in series, %d workers would do at most %.0f/s; the sweep overlaps them)",
		r.meanMS("UpdateItem"), r.providerMS(), r.meanMS("PutItem"), r.c.workers, r.workerBound())
	ops := make([]string, 0, len(r.ddbOps))
	for _, op := range slices.Sorted(maps.Keys(r.ddbOps)) {
		ops = append(ops, fmt.Sprintf("%s=%d", op, r.ddbOps[op]))
	}
	fmt.Fprintf(&sb, " | ddb %.4f req/conn, %.4f excl. Query (%s; Query time %.0fms; failed %d; dials %d)",
		float64(all)/refreshed, float64(nonQuery)/refreshed, strings.Join(ops, " "),
		float64(r.ddbBusy["Query"].Microseconds())/1000, r.ddbFailed, r.ddbDials)
	fmt.Fprintf(&sb, " | %d sweep(s), provider dials %d, skipped %d, failed %d, deferred %d",
		r.sweeps, r.provDials, r.sum.Skipped, r.sum.Failed, r.sum.Deferred)
	if !math.IsNaN(r.cpuOurs) {
		fmt.Fprintf(&sb, " | CPU cores busy: %.2f bench+dynalite, %.2f other processes",
			r.cpuOurs/r.elapsed.Seconds(), r.cpuOthers/r.elapsed.Seconds())
	}
	if r.c.rate > 0 {
		fmt.Fprintf(&sb, " | sends %.2fms apart on average, at most %d in any %v (budget %d)",
			float64(r.sendGap.Microseconds())/1000, r.maxInPeriod, r.c.period, r.c.rate)
	}
	return sb.String()
}

func addSummary(dst *broker.RefreshSummary, s broker.RefreshSummary) {
	dst.Due += s.Due
	dst.Refreshed += s.Refreshed
	dst.NeedsReauth += s.NeedsReauth
	dst.Failed += s.Failed
	dst.Skipped += s.Skipped
	dst.Deferred += s.Deferred
	dst.Superseded += s.Superseded
	dst.Lost += s.Lost
}

// seed stores n connections of provider "acme", each with a live grant at
// prov and a NextRefresh in the past (spread over ~17 minutes), through
// seedWorkers concurrent SaveConnection calls.
func seed(ctx context.Context, st *dynamo.Store, prov *providertest.Server, n int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	base := time.Now().Add(-30 * time.Minute)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range seedWorkers {
		wg.Go(func() {
			for i := range jobs {
				access, refresh := prov.IssueGrant()
				due := base.Add(time.Duration(i) * 100 * time.Millisecond)
				_, err := st.SaveConnection(ctx, store.Connection{
					Provider:     "acme",
					ConnectionID: fmt.Sprintf("conn-%05d", i),
					Status:       store.StatusConnected,
					AccessToken:  access,
					RefreshToken: refresh,
					TokenType:    "Bearer",
					ExpiresAt:    due.Add(10 * time.Minute),
					Grant:        provider.GrantAuthorizationCode,
					NextRefresh:  due,
				})
				if err != nil {
					cancel(fmt.Errorf("connection %d: %w", i, err))
				}
			}
		})
	}
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// checkSample reads k random connections of the n seeded back: each must be connected,
// due again in the future, and hold a refresh token the provider accepts.
func checkSample(ctx context.Context, st *dynamo.Store, prov *providertest.Server, n, k int) error {
	for range k {
		id := fmt.Sprintf("conn-%05d", rand.IntN(n))
		c, err := st.GetConnection(ctx, "acme", id)
		if err != nil {
			return fmt.Errorf("reading %s back: %w", id, err)
		}
		if c.Status != store.StatusConnected || !c.NextRefresh.After(time.Now()) || !prov.ValidRefresh(c.RefreshToken) || c.Lease.Owner != "" {
			return fmt.Errorf("%s after the sweep: status %s, due %v, valid refresh token %v, lease %q",
				id, c.Status, c.NextRefresh, prov.ValidRefresh(c.RefreshToken), c.Lease.Owner)
		}
	}
	return nil
}

// ddbCounter is the DynamoDB client's HTTP client: the SDK's default
// client, counting requests by operation (X-Amz-Target) and new TCP
// connections.
type ddbCounter struct {
	next   aws.HTTPClient
	mu     sync.Mutex
	byOp   map[string]int
	busy   map[string]time.Duration // summed request durations by operation
	failed int
	dials  atomic.Int64
}

func newDDBCounter() *ddbCounter {
	c := &ddbCounter{byOp: map[string]int{}, busy: map[string]time.Duration{}}
	c.next = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		dial := tr.DialContext
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			return dial(ctx, network, addr)
		}
	})
	return c
}

func (c *ddbCounter) Do(r *http.Request) (*http.Response, error) {
	op := r.Header.Get("X-Amz-Target")
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		op = op[i+1:]
	}
	if op == "" {
		op = "(none)"
	}
	start := time.Now()
	resp, err := c.next.Do(r)
	took := time.Since(start)
	c.mu.Lock()
	c.byOp[op]++
	c.busy[op] += took
	if err != nil || resp.StatusCode/100 != 2 {
		c.failed++
	}
	c.mu.Unlock()
	return resp, err
}

func (c *ddbCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byOp = map[string]int{}
	c.busy = map[string]time.Duration{}
	c.failed = 0
	c.dials.Store(0)
}

func (c *ddbCounter) snapshot() (ops map[string]int, busy map[string]time.Duration, failed int, dials int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.byOp), maps.Clone(c.busy), c.failed, c.dials.Load()
}

// newDynamoClient is a DynamoDB client for dynalite at endpoint, built from
// the default config chain as the functions build theirs, with static
// credentials and httpClient.
func newDynamoClient(b *testing.B, endpoint string, httpClient aws.HTTPClient) *dynamodb.Client {
	cfg, err := config.LoadDefaultConfig(b.Context(),
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("x", "x", "")),
	)
	if err != nil {
		b.Fatal(err)
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		// Here rather than config.WithHTTPClient, which fails when the
		// environment names a CA bundle (AWS_CA_BUNDLE) for a client
		// that is not a BuildableClient; dynalite is plain HTTP.
		o.HTTPClient = httpClient
	})
}

// providerProbe instruments the provider's HTTP client: new connections,
// token requests, their round trips and send times. The client keeps its
// transport settings (provider.NewHTTPClient's).
type providerProbe struct {
	dials atomic.Int64
	mu    sync.Mutex
	calls int
	busy  time.Duration
	sends []time.Time
}

func (p *providerProbe) instrument(c *http.Client) *http.Client {
	tr := c.Transport.(*http.Transport).Clone()
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		p.dials.Add(1)
		return dial(ctx, network, addr)
	}
	cp := *c
	cp.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := tr.RoundTrip(r)
		took := time.Since(start)
		p.mu.Lock()
		p.calls++
		p.busy += took
		p.sends = append(p.sends, start)
		p.mu.Unlock()
		return resp, err
	})
	return &cp
}

func (p *providerProbe) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls, p.busy, p.sends = 0, 0, nil
	p.dials.Store(0)
}

// snapshot returns the counts and the send times, sorted.
func (p *providerProbe) snapshot() (calls int, busy time.Duration, dials int64, sends []time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sends = slices.Clone(p.sends)
	slices.SortFunc(sends, func(a, b time.Time) int { return a.Compare(b) })
	return p.calls, p.busy, p.dials.Load(), sends
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// maxWithin is the most of the sorted times within any half-open window
// [t, t+d).
func maxWithin(ts []time.Time, d time.Duration) int {
	best, lo := 0, 0
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) >= d {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// warnLog is the broker's log handler: it drops records below Warn (one
// Info line per refresh would dominate the profile) and keeps the first
// few others for failure messages.
type warnLog struct {
	mu    sync.Mutex
	n     int
	lines []string
}

func (h *warnLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *warnLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if len(h.lines) < 5 {
		var sb strings.Builder
		sb.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool {
			sb.WriteString(" " + a.String())
			return true
		})
		h.lines = append(h.lines, sb.String())
	}
	return nil
}

func (h *warnLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnLog) WithGroup(string) slog.Handler      { return h }

func (h *warnLog) first() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d, first: %s", h.n, strings.Join(h.lines, "; "))
}

// cpuSample is the host's busy CPU time and this process's and its
// children's, from /proc (Linux), in clock ticks; ok is false elsewhere.
type cpuSample struct {
	host, ours float64
	ok         bool
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func sampleCPU() cpuSample {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuSample{}
	}
	var total, idle float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	s := cpuSample{host: total - idle, ok: true}
	self := os.Getpid()
	s.ours, _, _ = procCPU(strconv.Itoa(self))
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(self) {
			continue
		}
		if t, ppid, ok := procCPU(e.Name()); ok && ppid == self {
			s.ours += t
		}
	}
	return s
}

// procCPU reads a process's user+system ticks and parent pid.
func procCPU(pid string) (ticks float64, ppid int, ok bool) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp ... utime(12) stime(13)
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return u + st, ppid, true
}

// coresSince returns the cores busy on average since s0 over wall: this
// process with its children, and every other process. A child that
// exited in between is counted as another process.
func (s cpuSample) coresSince(s0 cpuSample, wall time.Duration) (ours, others float64) {
	if !s.ok || !s0.ok || wall <= 0 {
		return math.NaN(), math.NaN()
	}
	sec := wall.Seconds() * clockTicks
	ours = (s.ours - s0.ours) / sec
	others = max(0, (s.host-s0.host)/sec-ours)
	return ours, others
}
