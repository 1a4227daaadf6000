package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/awsstack"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/schedule"
	"github.com/oauthbroker/oauthbroker/shared/setup"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

const (
	// reqRepeats is how many times each warm operation is counted.
	reqRepeats = 10
	// reqSweepConns is how many due connections the counted sweep renews.
	reqSweepConns = 200
	// Fixture values; the secret is registered by providertest and
	// moto.PutSecret.
	reqClientSecret = "acme-requests-bench-secret-R4v9"
	reqKeyMaterial  = "requests-bench-signing-key-0123456789abcdef"
)

// awsServices are the services counted, as requests.json names them.
var awsServices = []string{"dynamodb", "secretsmanager", "kms", "eventbridge"}

// awsCounter is the HTTPClient of every AWS client the functions build
// (aws.Config.HTTPClient): it counts each request — SDK retries included —
// by service (from the SigV4 credential scope) and operation
// (X-Amz-Target), and sends it on with the SDK's default client.
type awsCounter struct {
	next   aws.HTTPClient
	mu     sync.Mutex
	counts map[string]map[string]int // service → operation → requests
	failed int                       // answers other than 2xx
}

func newAWSCounter() *awsCounter {
	return &awsCounter{next: awshttp.NewBuildableClient(), counts: map[string]map[string]int{}}
}

func (c *awsCounter) Do(r *http.Request) (*http.Response, error) {
	service := "unknown"
	if _, scope, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
		// AKID/date/region/service/aws4_request
		if parts := strings.Split(scope, "/"); len(parts) >= 4 {
			service = parts[3]
		}
	}
	if service == "events" {
		service = "eventbridge"
	}
	op := r.Header.Get("X-Amz-Target")
	op = op[strings.LastIndexByte(op, '.')+1:]
	resp, err := c.next.Do(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts[service] == nil {
		c.counts[service] = map[string]int{}
	}
	c.counts[service][op]++
	if err != nil || resp.StatusCode/100 != 2 {
		c.failed++
	}
	return resp, err
}

// take returns the counts since the last take and starts again.
func (c *awsCounter) take() awsCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := awsCounts{ops: c.counts, failed: c.failed}
	c.counts, c.failed = map[string]map[string]int{}, 0
	return got
}

// awsCounts are the requests counted over some operations.
type awsCounts struct {
	ops    map[string]map[string]int
	failed int
}

func (a awsCounts) service(s string) int {
	n := 0
	for _, v := range a.ops[s] {
		n += v
	}
	return n
}

// per returns the requests per operation by service, for n operations.
func (a awsCounts) per(n int) reqCalls {
	f := func(s string) float64 { return float64(a.service(s)) / float64(n) }
	return reqCalls{DynamoDB: f("dynamodb"), SecretsManager: f("secretsmanager"), KMS: f("kms"), EventBridge: f("eventbridge")}
}

// opsPer returns one service's requests per operation by operation name.
func (a awsCounts) opsPer(service string, n int) map[string]float64 {
	m := map[string]float64{}
	for op, v := range a.ops[service] {
		m[op] = float64(v) / float64(n)
	}
	return m
}

// reqCalls is one operation's row in requests.json.
type reqCalls struct {
	DynamoDB       float64 `json:"dynamodb"`
	SecretsManager float64 `json:"secretsmanager"`
	KMS            float64 `json:"kms"`
	EventBridge    float64 `json:"eventbridge"`
}

// reqOperation is what one operation measured.
type reqOperation struct {
	name, title string
	n           int // operations counted
	warm, cold  awsCounts
	provider    float64 // token requests at the provider per operation
}

// BenchmarkRequests counts the AWS requests each operation makes on a warm
// function, with the functions built by setup.New exactly as in Lambda
// (setup.FromEnv) but with a counting aws.Config.HTTPClient, against real
// local servers: dynalite, local-kms, moto (Secrets Manager and EventBridge,
// behind a proxy that counts what they receive) and a providertest provider. Each function (authorize,
// callback, token, refresh) is its own broker, as each is its own Lambda:
// its own secrets cache and data keys. An operation is counted after one
// warm-up of the same kind, within the cache TTLs. Run with -benchtime 1x;
// with BENCH_OUT set it writes requests.md and requests.json.
func BenchmarkRequests(b *testing.B) {
	ctx := b.Context()
	start := time.Now()
	acct, received := moto.Shared(b).NewAccount(b).Proxied(b)
	prov := providertest.New(b, providertest.Config{
		ClientID: "acme-client", ClientSecret: reqClientSecret, RedirectURI: hbBaseURL + "/callback/acme",
		RequirePKCE: true, Scopes: []string{"read", "write"}, AccessTokenTTL: time.Hour, RotateRefreshTokens: true,
	})
	secretSet := testsecrets.Set{SigningKey: reqKeyMaterial, Clients: map[string]testsecrets.Client{"acme": {ID: "acme-client", Secret: reqClientSecret}}}
	stack := awsstack.New(b, awsstack.Config{
		Bus:     "oauthbroker-events",
		Secrets: secretSet,
		Catalog: "providers:\n  acme:\n" +
			"    authorization_url: " + prov.AuthorizeURL() + "\n    token_url: " + prov.TokenURL() + "\n" +
			"    grant_types: [authorization_code, refresh_token]\n    client_auth: basic\n    default_scopes: [read]\n",
		BaseURL:       hbBaseURL,
		ReturnOrigins: hbAppOrigin,
		Account:       acct,
	})
	// setup.ReadEnv and config.LoadDefaultConfig read the process's
	// environment: nothing of the machine's AWS set-up may leak in.
	env := stack.EnvWith(map[string]string{
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             "/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
		"AWS_EC2_METADATA_DISABLED":   "true",
	})
	for k, v := range env {
		b.Setenv(k, v)
	}

	counter := newAWSCounter()
	logs := &syncbuf.Buffer{}
	warnings := func() string { return cmp.Or(logs.String(), "no warnings") }
	// function builds a function's broker as setup.FromEnv does, with the
	// counting HTTP client; its log keeps warnings only.
	function := func() *broker.Broker {
		env, err := setup.ReadEnv(os.Getenv)
		if err != nil {
			b.Fatal(err)
		}
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			b.Fatal(err)
		}
		cfg.HTTPClient = counter
		br, err := setup.New(env, cfg)
		if err != nil {
			b.Fatal(err)
		}
		br.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		return br
	}
	authorize, callback := httpapi.Authorize(function()), httpapi.Callback(function())
	tokens := httpapi.Tokens(function())
	refresh := function()

	// measure counts warmUp (the first operation of its kind on the
	// instance), then run: n more on the now warm instance.
	var ops []*reqOperation
	measure := func(name, title string, n int, warmUp, run func()) *reqOperation {
		r := &reqOperation{name: name, title: title, n: n}
		counter.take()
		warmUp()
		r.cold = counter.take()
		calls := prov.TokenRequests()
		run()
		r.warm = counter.take()
		r.provider = float64(prov.TokenRequests()-calls) / float64(n)
		ops = append(ops, r)
		return r
	}
	// each runs op for 0 (the warm-up) or for 1..reqRepeats.
	each := func(op func(i int)) (warmUp, run func()) {
		return func() { op(0) }, func() {
			for i := 1; i <= reqRepeats; i++ {
				op(i)
			}
		}
	}
	connID := func(i int) string { return fmt.Sprintf("cust-%03d", i) }
	keys := secretSet.Keyset(b)

	// The connect flow: authorize, the customer's consent at the provider
	// (no AWS request), the callback.
	type pending struct{ query, cookie string }
	flows := make([]pending, reqRepeats+1)
	warmUp, run := each(func(i int) {
		resp, err := authorize(ctx, browserEvent("GET /connect/{provider}", "/connect/acme", signLink(b, keys, connID(i)),
			map[string]string{"provider": "acme"}, nil))
		if err != nil || resp.StatusCode != http.StatusFound || len(resp.Cookies) != 1 {
			b.Fatalf("authorize answered %d, %v; log: %s", resp.StatusCode, err, warnings())
		}
		back := prov.Authorize(b, resp.Headers["Location"])
		cookie, _, _ := strings.Cut(resp.Cookies[0], ";")
		flows[i] = pending{back.RawQuery, cookie}
	})
	measure("connect", "connect (authorize)", reqRepeats, warmUp, run)
	warmUp, run = each(func(i int) {
		resp, err := callback(ctx, browserEvent("GET /callback/{provider}", "/callback/acme", flows[i].query,
			map[string]string{"provider": "acme"}, []string{flows[i].cookie}))
		if loc := resp.Headers["Location"]; err != nil || resp.StatusCode != http.StatusFound || !strings.Contains(loc, "status=connected") {
			b.Fatalf("callback answered %d, %v, connected %v; log: %s", resp.StatusCode, err, strings.Contains(loc, "status=connected"), warnings())
		}
	})
	measure("callback", "callback", reqRepeats, warmUp, run)
	readToken := func(force bool) func(i int) {
		return func(i int) {
			raw := ""
			if force {
				raw = "force_refresh=true"
			}
			resp, err := tokens(ctx, tokenEvent(connID(i), raw))
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("token route answered %d, %v; log: %s", resp.StatusCode, err, warnings())
			}
		}
	}
	warmUp, run = each(readToken(false))
	measure("token_read", "token read (valid token)", reqRepeats, warmUp, run)
	warmUp, run = each(readToken(true))
	measure("token_renew", "token read that renews (force_refresh=true)", reqRepeats, warmUp, run)

	// The sweep: the warm-up sweep renews one due connection, the counted
	// one reqSweepConns. Each set is sealed by another instance (its own
	// data key), as a due connection was last written by an earlier
	// refresh or callback, not by this instance within its cache period.
	// Seeding uses clients of its own, which are not counted.
	var sweepSum broker.RefreshSummary
	sweepOf := func(prefix string, n int) func() {
		return func() {
			seedDue(b, stack.Store(), prov, prefix, n)
			sum, err := schedule.Handler(refresh)(ctx, json.RawMessage(`{"action":"refresh-due"}`))
			if err != nil || sum.Refreshed != n || sum.Due != n {
				b.Fatalf("sweep %+v, %v; want %d due and refreshed; log: %s", sum, err, n, warnings())
			}
			sweepSum = sum
		}
	}
	sweep := measure("refresh_per_connection", "refresh, per connection in a sweep", reqSweepConns, sweepOf("due-warm", 1), sweepOf("due", reqSweepConns))
	// The counter against what the proxy in front of moto received.
	var events, reads int
	for _, op := range ops {
		events += op.cold.service("eventbridge") + op.warm.service("eventbridge")
		reads += op.cold.service("secretsmanager") + op.warm.service("secretsmanager")
	}
	if got := received.Calls("PutEvents", nil); got != events || events == 0 {
		b.Errorf("EventBridge received %d PutEvents, the counter saw %d", got, events)
	}
	if got := received.Calls("GetSecretValue", nil); got != reads {
		b.Errorf("Secrets Manager received %d GetSecretValue, the counter saw %d", got, reads)
	}

	rep := newRequestsReport(ops, sweep)
	b.ReportMetric(rep.DynamoDBPerRefreshBeyondQuery, "ddb_req/refresh_excl_query")
	b.ReportMetric(rep.KMSCallsPerSweep, "kms/sweep")
	for _, op := range ops {
		b.ReportMetric(op.warm.per(op.n).DynamoDB, "ddb/"+op.name)
	}
	targets := rep.targets(ops)
	md := rep.markdown(ops, sweepSum, targets, time.Since(start))
	if dir := os.Getenv("BENCH_OUT"); dir != "" {
		if err := saveBenchSection(dir, "requests", md, rep); err != nil {
			b.Error(err)
		}
	} else {
		fmt.Print(md) // a passing benchmark's log is not printed
	}
	for _, t := range targets {
		if !t.ok {
			b.Errorf("target not met: %s", t.text)
		}
	}
	if failed := rep.FailedRequests; failed > 0 {
		b.Errorf("%d AWS requests failed (non-2xx answers)", failed)
	}
}

// signLink returns a connect link's query for connection id, signed as
// the app signs it.
func signLink(b *testing.B, ks *signing.Keyset, id string) string {
	q, err := signing.SignLink(ks, signing.Link{Provider: "acme", ConnectionID: id, ReturnTo: hbReturnTo,
		Scopes: []string{"read", "write"}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	return q
}

// tokenEvent is the app's GET of a connection's token (IAM-authorized).
func tokenEvent(id, rawQuery string) events.APIGatewayV2HTTPRequest {
	path := "/connections/acme/" + id + "/token"
	return events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "GET /connections/{provider}/{connection_id}/token", RawPath: path, RawQueryString: rawQuery,
		PathParameters: map[string]string{"provider": "acme", "connection_id": id},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: http.MethodGet, Path: path},
			// The caller API Gateway's AWS_IAM authorization admitted.
			Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{
				AccessKey: "ASIAEXAMPLEEXAMPLE00", AccountID: "123456789012",
				UserARN: "arn:aws:sts::123456789012:assumed-role/app-backend/app-backend",
			}},
		},
	}
}

// seedDue stores n connections with a live grant at prov and a refresh due
// in the past, through a store of their own (uncounted clients, its own
// data key, as another function instance writes them).
func seedDue(b *testing.B, st *dynamo.Store, prov *providertest.Server, prefix string, n int) {
	due := time.Now().Add(-time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			access, refresh := prov.IssueGrant("read")
			_, err := st.SaveConnection(b.Context(), store.Connection{
				Provider: "acme", ConnectionID: fmt.Sprintf("%s-%04d", prefix, i), Status: store.StatusConnected,
				AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", Scope: "read",
				ExpiresAt: due.Add(10 * time.Minute), Grant: provider.GrantAuthorizationCode, NextRefresh: due,
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatalf("seeding: %v", err)
		}
	}
}

// requestsReport is requests.json.
type requestsReport struct {
	Operations map[string]reqCalls `json:"operations"`
	// DynamoDBPerRefreshBeyondQuery leaves out the amortised due-index
	// Query.
	DynamoDBPerRefreshBeyondQuery float64 `json:"dynamodb_per_refresh_beyond_query"`
	KMSCallsPerSweep              float64 `json:"kms_calls_per_sweep"`
	SweepConnections              int     `json:"sweep_connections"`
	// DynamoDBByOperation and KMSByOperation break the warm counts down by
	// API operation.
	DynamoDBByOperation map[string]map[string]float64 `json:"dynamodb_by_operation"`
	KMSByOperation      map[string]map[string]float64 `json:"kms_by_operation"`
	// FirstCall is the warm-up: the first operation of its kind on the
	// instance (for the refresh, a whole one-connection sweep).
	FirstCall map[string]reqCalls `json:"first_call"`
	// ProviderCalls are token requests at the provider per operation.
	ProviderCalls map[string]float64 `json:"provider_calls"`
	// FailedRequests counts answers other than 2xx (retried or refused
	// requests), warm-ups included.
	FailedRequests int    `json:"failed_requests"`
	Notes          string `json:"notes"`
}

func newRequestsReport(ops []*reqOperation, sweep *reqOperation) requestsReport {
	rep := requestsReport{
		Operations: map[string]reqCalls{}, DynamoDBByOperation: map[string]map[string]float64{}, KMSByOperation: map[string]map[string]float64{},
		FirstCall: map[string]reqCalls{}, ProviderCalls: map[string]float64{}, SweepConnections: sweep.n,
		KMSCallsPerSweep: float64(sweep.warm.service("kms")),
		Notes: "Counted on warm functions after one warm-up operation of the same kind, within the 5-minute secrets and data-key caches; " +
			"each function (authorize, callback, token, refresh) is its own instance. The counted sweep's connections were sealed by another instance, " +
			"so opening them costs one KMS Decrypt for their data key; the sweep's own data key was generated during the warm-up.",
	}
	for _, op := range ops {
		rep.Operations[op.name] = op.warm.per(op.n)
		rep.DynamoDBByOperation[op.name] = op.warm.opsPer("dynamodb", op.n)
		rep.KMSByOperation[op.name] = op.warm.opsPer("kms", op.n)
		rep.FirstCall[op.name] = op.cold.per(1)
		rep.ProviderCalls[op.name] = op.provider
		rep.FailedRequests += op.cold.failed + op.warm.failed
	}
	rep.DynamoDBPerRefreshBeyondQuery = float64(sweep.warm.service("dynamodb")-sweep.warm.ops["dynamodb"]["Query"]) / float64(sweep.n)
	return rep
}

// reqTarget is one target and whether it was met.
type reqTarget struct {
	text string
	ok   bool
}

// targets judges the targets: DynamoDB per refresh, Secrets Manager on warm
// functions, KMS per data-key period.
func (rep requestsReport) targets(ops []*reqOperation) []reqTarget {
	sm, gen, firstGen := 0, 0, 0
	for _, op := range ops {
		sm += op.warm.service("secretsmanager")
		gen += op.warm.ops["kms"]["GenerateDataKey"]
		firstGen = max(firstGen, op.cold.ops["kms"]["GenerateDataKey"])
	}
	return []reqTarget{
		{fmt.Sprintf("≤ 2 DynamoDB requests per refreshed connection beyond the amortised Query: %.3f", rep.DynamoDBPerRefreshBeyondQuery),
			rep.DynamoDBPerRefreshBeyondQuery <= 2},
		{fmt.Sprintf("0 Secrets Manager calls on a warm function within the cache TTL: %d over every warm operation", sm), sm == 0},
		{fmt.Sprintf("≤ 1 KMS call per data-key cache period (%d minutes): `GenerateDataKey` %d on warm instances and at most %d on a first call; "+
			"%.0f KMS call(s) in a sweep of %d connections sealed under one data key", int(envelope.DefaultKeyReuse.Minutes()), gen, firstGen, rep.KMSCallsPerSweep, rep.SweepConnections),
			gen == 0 && firstGen <= 1 && rep.KMSCallsPerSweep <= 1},
	}
}

func (rep requestsReport) markdown(ops []*reqOperation, sum broker.RefreshSummary, targets []reqTarget, took time.Duration) string {
	var md strings.Builder
	md.WriteString("## AWS requests per operation\n\n")
	fmt.Fprintf(&md, "`BenchmarkRequests` (`bench/requests_test.go`) builds each function's broker with `setup.New`, exactly as `setup.FromEnv` does in Lambda "+
		"(same store, sealer, %d-minute secrets cache), but with an `aws.Config.HTTPClient` that counts every request by service (SigV4 scope) and "+
		"operation (`X-Amz-Target`), SDK retries included. The servers are real local ones speaking the AWS protocols: dynalite (DynamoDB), "+
		"local-kms (KMS), moto (Secrets Manager and EventBridge), and a strict OAuth provider (providertest). "+
		"Authorize, callback, token and refresh are separate instances, as in Lambda. Each operation is counted %d times (the sweep: one sweep of %d due "+
		"connections) on a **warm** instance, after one warm-up operation of the same kind, within the cache TTLs; that warm-up, the first call of its kind on the "+
		"instance, is shown apart. Run time %.1f s.\n\n", int(setup.SecretsTTL.Minutes()), reqRepeats, rep.SweepConnections, took.Seconds())
	md.WriteString("| operation | DynamoDB | by API call | Secrets Manager | KMS | EventBridge | provider | warm-up: first of its kind (DDB / SM / KMS / EB) |\n")
	md.WriteString("| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |\n")
	for _, op := range ops {
		w, c := rep.Operations[op.name], rep.FirstCall[op.name]
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s | %s | %s | %s / %s / %s / %s |\n", op.title, num(w.DynamoDB), byOp(rep.DynamoDBByOperation[op.name]),
			num(w.SecretsManager), num(w.KMS)+kmsDetail(rep.KMSByOperation[op.name]), num(w.EventBridge), num(op.provider),
			num(c.DynamoDB), num(c.SecretsManager), num(c.KMS), num(c.EventBridge))
	}
	fmt.Fprintf(&md, "\nThe counted sweep: %d due, %d refreshed, %d skipped, %d failed; DynamoDB %.3f requests per refreshed connection in all, "+
		"**%.3f beyond the due-index Query** (one lease `UpdateItem` returning the item, one `PutItem` that saves and releases; the Query "+
		"pages %d shards once per sweep); KMS **%.0f call(s) per sweep** (%s).\n\n",
		sum.Due, sum.Refreshed, sum.Skipped, sum.Failed, rep.Operations["refresh_per_connection"].DynamoDB, rep.DynamoDBPerRefreshBeyondQuery,
		dynamo.DueShards, rep.KMSCallsPerSweep, byOp(rep.KMSByOperation["refresh_per_connection"], float64(rep.SweepConnections)))
	md.WriteString("Targets:\n\n")
	for _, t := range targets {
		fmt.Fprintf(&md, "- %s — %s\n", t.text, map[bool]string{true: "met", false: "**not met**"}[t.ok])
	}
	md.WriteString("\nReading them:\n\n" +
		"- **Secrets Manager** is read on a function's first use of a secret (the keyset: authorize and callback; a provider's client " +
		"credentials: authorize, callback, and the first renewal in the token and refresh functions), then served from memory for 5 minutes.\n" +
		"- **KMS**: a function seals with one data key for 5 minutes (one `GenerateDataKey` per period, on the first write) and keeps every " +
		"unwrapped data key for 5 minutes (one `Decrypt` per foreign data key per period). A warm sweep therefore pays one `Decrypt` per data " +
		"key among the due connections — in production, the keys their last writers used, about one per writing instance per 5 minutes, " +
		"not one per connection — plus one `GenerateDataKey` when its own key's period has run out since the last sweep.\n" +
		"- **EventBridge** is called once per lifecycle event: a callback publishes `created`; a refresh publishes only on a status change " +
		"(recovered, failing, needs_reauth), so a healthy sweep publishes nothing.\n" +
		"- **Token reads** cost one `GetItem`; a read that renews adds the lease `UpdateItem` and the saving `PutItem`, as a sweep does.\n")
	return md.String()
}

func num(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprint(int64(v))
	}
	return fmt.Sprintf("%.3f", v)
}

// byOp renders counts by API call ("GetItem 1, PutItem 1"), multiplied by
// scale when given.
func byOp(m map[string]float64, scale ...float64) string {
	if len(m) == 0 {
		return "none"
	}
	k := 1.0
	if len(scale) > 0 {
		k = scale[0]
	}
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, op+" "+num(m[op]*k))
	}
	return strings.Join(parts, ", ")
}

func kmsDetail(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	return " (" + byOp(m) + ")"
}
