package bench

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/setup"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

// Fixture values of the handler benchmarks. The credentials are
// registered with logcheck by newHandlerFixture.
const (
	hbBaseURL      = brokertest.BaseURL
	hbAppOrigin    = brokertest.AppOrigin
	hbReturnTo     = hbAppOrigin + "/integrations?tab=connected"
	hbClientID     = "acme-client-id"
	hbClientSecret = "acme-client-secret-bench-7Qm2"
	hbKeyMaterial  = "bench-signing-key-0123456789abcdef0123456789"
	hbAccessToken  = "bench-access-token-5c1f0e9a2b7d4e63"
	hbRefreshToken = "bench-refresh-token-8d2a6b1c9e3f4a70"
	// hbTokenJSON is the provider's canned token response.
	hbTokenJSON = `{"access_token":"` + hbAccessToken + `","token_type":"Bearer","expires_in":3600,"refresh_token":"` +
		hbRefreshToken + `","scope":"read write"}`
	// authorizeTarget is the target for the authorize handler's own work.
	authorizeTarget = 50 * time.Microsecond
)

// handlerResult is one sub-benchmark's figures in handler.json.
type handlerResult struct {
	Name     string  `json:"name"`
	NsOp     float64 `json:"ns_op"`
	AllocsOp float64 `json:"allocs_op"`
	BytesOp  float64 `json:"bytes_op"`
	XFloor   float64 `json:"x_floor"`
	// N is the iterations of the run the figures come from.
	N int `json:"n"`
}

// handlerResults keeps the last (largest b.N) run of each sub-benchmark.
var handlerResults struct {
	sync.Mutex
	byName map[string]handlerResult
}

// BenchmarkHandler measures the CPU cost of the connect and callback
// handlers without network I/O — in-memory store, secrets from a warm
// cache, the provider's token endpoint answered by an in-process
// RoundTripper — against a floor of one HMAC-SHA256 plus one query
// encoding measured in the same run (x_floor). It needs a duration
// -benchtime (the Makefile uses 1s); with BENCH_OUT set it writes
// handler.md and handler.json.
func BenchmarkHandler(b *testing.B) {
	if n, ok := benchtimeCount(); ok && n < 1000 {
		b.Skipf("-benchtime %dx gives no usable ns/op; run BenchmarkHandler with a duration such as -benchtime 1s", n)
	}
	f := newHandlerFixture(b)
	b.Run("authorize", f.benchAuthorize)
	b.Run("callback", f.benchCallback)
	b.Run("floor", benchFloor)

	handlerResults.Lock()
	defer handlerResults.Unlock()
	var results []handlerResult
	for _, name := range []string{"authorize", "callback", "floor"} {
		if r, ok := handlerResults.byName[name]; ok {
			results = append(results, r)
		}
	}
	if err := writeHandlerReport(os.Getenv("BENCH_OUT"), results, floorNsOp()); err != nil {
		b.Error(err)
	}
}

// benchtimeCount returns n when -test.benchtime is an iteration count
// ("nx").
func benchtimeCount() (int, bool) {
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return 0, false
	}
	s, ok := strings.CutSuffix(f.Value.String(), "x")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// hbCatalog is the benchmark's catalog: acme, a code flow with PKCE whose
// endpoints the in-process RoundTripper answers.
const hbCatalog = "  acme:\n" +
	"    authorization_url: https://provider.example.test/oauth/authorize\n" +
	"    token_url: https://provider.example.test/oauth/token\n" +
	"    grant_types: [authorization_code, refresh_token]\n" +
	"    default_scopes: [read]\n"

// handlerFixture holds what every run shares: a signed connect link.
type handlerFixture struct {
	linkQuery string // a signed link's query, valid for an hour
}

func newHandlerFixture(b *testing.B) *handlerFixture {
	logcheck.Register(hbAccessToken, hbRefreshToken)
	q, err := signing.SignLink(testsecrets.Set{SigningKey: hbKeyMaterial}.Keyset(b), signing.Link{Provider: "acme", ConnectionID: "cust-42", ReturnTo: hbReturnTo,
		Scopes: []string{"read", "write"}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	return &handlerFixture{linkQuery: q}
}

// broker returns a broker on a fresh in-memory store, as cmd/dev wires one,
// its secrets cache warmed, logging JSON (as setup.Logger) to io.Discard;
// the provider's token endpoint is rt, in process.
func (f *handlerFixture) broker(b *testing.B, rt http.RoundTripper) *broker.Broker {
	hc := provider.NewHTTPClient()
	hc.Transport = rt
	br := brokertest.New(b, brokertest.Options{
		Catalog:    hbCatalog,
		Clients:    map[string]testsecrets.Client{"acme": {ID: hbClientID, Secret: hbClientSecret}},
		SigningKey: hbKeyMaterial,
		HTTP:       hc,
		Now:        time.Now,
		Secrets:    func(file secrets.Source) secrets.Source { return secrets.NewCache(file, setup.SecretsTTL) },
	}).Broker
	br.Log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	if p, _ := br.Catalog.Get("acme"); !p.UsesPKCE() {
		b.Fatal("the benchmark provider must use PKCE")
	}
	for _, name := range []string{br.KeysSecret(), secrets.ClientCredentialsName(br.Config.SecretsPrefix, "acme")} {
		if _, err := br.Secrets.Secret(b.Context(), name); err != nil {
			b.Fatal(err)
		}
	}
	return br
}

// connectEvent is the API Gateway event of a browser following the link.
func (f *handlerFixture) connectEvent() events.APIGatewayV2HTTPRequest {
	return browserEvent("GET /connect/{provider}", "/connect/acme", f.linkQuery, map[string]string{"provider": "acme"}, nil)
}

// browserHeaders are a browser's request headers as API Gateway passes
// them; events share the map (the handlers only read it), so thousands of
// prepared events do not swell the heap the benchmark's GC must scan.
var browserHeaders = map[string]string{
	"accept":          "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
	"accept-encoding": "gzip, deflate, br",
	"accept-language": "en-GB,en;q=0.9",
	"host":            "broker.example.test",
	"user-agent":      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
	"x-forwarded-for": "203.0.113.7",
}

// browserEvent is a payload 2.0 event as API Gateway sends it from a browser.
func browserEvent(route, path, rawQuery string, params map[string]string, cookies []string) events.APIGatewayV2HTTPRequest {
	return events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       route,
		RawPath:        path,
		RawQueryString: rawQuery,
		Cookies:        cookies,
		Headers:        browserHeaders,
		PathParameters: params,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:  route,
			Stage:     "$default",
			RequestID: "Jb8Xyj1XoAMEbXw=",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: http.MethodGet, Path: path, Protocol: "HTTP/1.1", SourceIP: "203.0.113.7",
				UserAgent: "Mozilla/5.0 (X11; Linux x86_64)",
			},
		},
	}
}

// checkConnect checks an authorize answer: a redirect to the provider with
// a PKCE challenge and one binding cookie. It returns the state and the
// cookie as the browser sends it back.
func checkConnect(resp events.APIGatewayV2HTTPResponse) (state, cookie string, err error) {
	loc, err := url.Parse(resp.Headers["Location"])
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), "https://provider.example.test/oauth/authorize?") ||
		loc.Query().Get("code_challenge") == "" || len(resp.Cookies) != 1 {
		return "", "", fmt.Errorf("authorize answered %d, Location with PKCE %v, %d cookies",
			resp.StatusCode, err == nil && loc.Query().Get("code_challenge") != "", len(resp.Cookies))
	}
	cookie, _, _ = strings.Cut(resp.Cookies[0], ";")
	return loc.Query().Get("state"), cookie, nil
}

func (f *handlerFixture) benchAuthorize(b *testing.B) {
	ctx := b.Context()
	h := httpapi.Authorize(f.broker(b, &tokenEndpoint{}))
	ev := f.connectEvent()
	resp, err := h(ctx, ev)
	if err == nil {
		_, _, err = checkConnect(resp)
	}
	if err != nil {
		b.Fatal(err)
	}
	floor := floorNsOp()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for range b.N {
		if _, err := h(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	recordHandler(b, "authorize", floor, &m0, &m1)
}

func (f *handlerFixture) benchCallback(b *testing.B) {
	ctx := b.Context()
	endpoint := &tokenEndpoint{check: true}
	br := f.broker(b, endpoint)
	auth, cb := httpapi.Authorize(br), httpapi.Callback(br)
	ev := f.connectEvent()
	// One state per iteration, made before the timer starts, plus one for
	// a checked run with a token endpoint that inspects the request.
	evs := make([]events.APIGatewayV2HTTPRequest, b.N+1)
	params := map[string]string{"provider": "acme"}
	for i := range evs {
		resp, err := auth(ctx, ev)
		if err != nil {
			b.Fatal(err)
		}
		state, cookie, err := checkConnect(resp)
		if err != nil {
			b.Fatal(err)
		}
		q := url.Values{"code": {"bench-code-" + strconv.Itoa(i)}, "state": {state}}
		evs[i] = browserEvent("GET /callback/{provider}", "/callback/acme", q.Encode(), params,
			[]string{"_ga=GA1.1.1234567890.1700000000", cookie})
	}
	if err := checkCallback(cb(ctx, evs[b.N])); err != nil {
		b.Fatal(err)
	}
	endpoint.check = false
	floor := floorNsOp()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for i := range b.N {
		resp, err := cb(ctx, evs[i])
		if err != nil || resp.StatusCode != http.StatusFound {
			b.Fatalf("callback answered %d, %v", resp.StatusCode, err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	recordHandler(b, "callback", floor, &m0, &m1)
}

// checkCallback checks a callback answer: back to the app, connected, the
// binding cookie cleared.
func checkCallback(resp events.APIGatewayV2HTTPResponse, err error) error {
	loc := resp.Headers["Location"]
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, hbAppOrigin+"/integrations?") ||
		!strings.Contains(loc, "status=connected") || len(resp.Cookies) != 1 {
		return fmt.Errorf("callback answered %d, %v, to the app connected: %v", resp.StatusCode, err,
			strings.HasPrefix(loc, hbAppOrigin) && strings.Contains(loc, "status=connected"))
	}
	return nil
}

// tokenEndpoint is the provider's token endpoint in process: it answers
// every request with hbTokenJSON. With check set it first checks the
// request is an authorization-code redemption with PKCE and Basic auth.
type tokenEndpoint struct{ check bool }

func (t *tokenEndpoint) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.check {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		id, _, basic := r.BasicAuth()
		if form.Get("grant_type") != "authorization_code" || form.Get("code") == "" || len(form.Get("code_verifier")) < 43 ||
			form.Get("redirect_uri") != hbBaseURL+"/callback/acme" || !basic || id != hbClientID {
			return nil, errors.New("token request is not an authorization-code redemption with PKCE and Basic auth")
		}
	}
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json;charset=UTF-8"}, "Cache-Control": {"no-store"}},
		Body:          io.NopCloser(strings.NewReader(hbTokenJSON)),
		ContentLength: int64(len(hbTokenJSON)),
		Request:       r,
	}, nil
}

// floorInput is the floor's work: a state-sized message to sign and an
// authorization URL's parameters to encode.
var floorInput = struct {
	key    []byte
	msg    []byte
	params url.Values
}{
	key: []byte(hbKeyMaterial),
	// oauthbroker-state-v1, kid, provider, 43-character nonce, expiry.
	msg: []byte("oauthbroker-state-v1\nk1\nacme\nq3Vt0c9mXkz1YbWJdLr7sPa2NfHgE4uTiOyC8vQe6Zw\n1767225600"),
	params: url.Values{
		"response_type":         {"code"},
		"client_id":             {hbClientID},
		"redirect_uri":          {hbBaseURL + "/callback/acme"},
		"scope":                 {"read write"},
		"state":                 {"k1.q3Vt0c9mXkz1YbWJdLr7sPa2NfHgE4uTiOyC8vQe6Zw.1767225600.nB3x2vQ8r0Zk5YtWm1LcA7pDfGh9eJsUiOy4TqVw6Xo"},
		"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		"code_challenge_method": {"S256"},
	},
}

// floorSink keeps the floor's results alive.
var floorSink struct {
	sum []byte
	enc string
}

// floorOp is one HMAC-SHA256 over a state-sized message plus one encoding
// of an authorization URL's query: the least the authorize path must do.
func floorOp() {
	h := hmac.New(sha256.New, floorInput.key)
	h.Write(floorInput.msg)
	floorSink.sum = h.Sum(floorSink.sum[:0])
	floorSink.enc = floorInput.params.Encode()
}

var floorOnce struct {
	sync.Once
	ns float64
}

// floorNsOp is the floor's ns/op, measured once per process, so every
// sub-benchmark divides by the same figure. testing.Benchmark cannot be
// used here: it takes the lock the running benchmark holds and would wait
// forever. So this is its loop — grow n until a timed run lasts long
// enough — five times over a fifth of the -benchtime duration (1s when
// it is a count) each, keeping the median against a noisy host.
func floorNsOp() float64 {
	floorOnce.Do(func() {
		d := time.Second
		if f := flag.Lookup("test.benchtime"); f != nil {
			if v, err := time.ParseDuration(f.Value.String()); err == nil && v > 0 {
				d = v
			}
		}
		var runs []float64
		for range 5 {
			runs = append(runs, timeFloor(d/5))
		}
		slices.Sort(runs)
		floorOnce.ns = runs[len(runs)/2]
	})
	return floorOnce.ns
}

// timeFloor returns floorOp's ns/op over a run of at least d.
func timeFloor(d time.Duration) float64 {
	for n := 1; ; {
		runtime.GC()
		start := time.Now()
		for range n {
			floorOp()
		}
		took := time.Since(start)
		if took >= d || n >= 1e9 {
			return float64(took.Nanoseconds()) / float64(n)
		}
		// As testing does: aim 20 % past d, at most 100× the last n.
		perOp := max(took.Nanoseconds()/int64(n), 1)
		n = int(min(max(int64(float64(d.Nanoseconds())*1.2)/perOp, int64(n)+1), 100*int64(n)))
	}
}

func benchFloor(b *testing.B) {
	floor := floorNsOp()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for range b.N {
		floorOp()
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	recordHandler(b, "floor", floor, &m0, &m1)
}

// recordHandler reports allocations and x_floor for the run that just
// ended and keeps its figures for the report; the framework's last run of
// a sub-benchmark (the largest b.N) is the one that stays.
func recordHandler(b *testing.B, name string, floor float64, m0, m1 *runtime.MemStats) {
	b.ReportAllocs()
	n := float64(b.N)
	r := handlerResult{
		Name:     name,
		NsOp:     round(float64(b.Elapsed().Nanoseconds())/n, 1),
		AllocsOp: round(float64(m1.Mallocs-m0.Mallocs)/n, 1),
		BytesOp:  round(float64(m1.TotalAlloc-m0.TotalAlloc)/n, 0),
		N:        b.N,
	}
	if floor > 0 {
		r.XFloor = round(r.NsOp/floor, 2)
		b.ReportMetric(r.XFloor, "x_floor")
	}
	handlerResults.Lock()
	defer handlerResults.Unlock()
	if handlerResults.byName == nil {
		handlerResults.byName = map[string]handlerResult{}
	}
	handlerResults.byName[name] = r
}

// round rounds x to digits decimals.
func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// writeHandlerReport writes handler.json and handler.md into dir ("" writes
// nothing).
func writeHandlerReport(dir string, results []handlerResult, floor float64) error {
	if dir == "" || len(results) == 0 {
		return nil
	}
	var md strings.Builder
	md.WriteString("## Handler CPU cost\n\n")
	fmt.Fprintf(&md, "`BenchmarkHandler` (`bench/handler_test.go`), Go's benchmark loop with real b.N (`-benchtime 1s -benchmem`), GOMAXPROCS %d. "+
		"Each handler is called as Lambda calls it, with a payload 2.0 event as API Gateway sends it from a browser, on a warm instance: "+
		"an in-memory store (`embedded.Open(\"\", nil)`), the secrets from a warm `secrets.Cache` over a file, JSON logs formatted into `io.Discard`. "+
		"No network I/O is counted: the provider's token endpoint is an in-process `http.RoundTripper` returning a canned token response, "+
		"so these are the handlers' own CPU and allocations; the DynamoDB, KMS and Secrets Manager round trips are counted in the next section.\n\n",
		runtime.GOMAXPROCS(0))
	md.WriteString("- **authorize**: parse the query strictly, verify the signed link (HMAC-SHA256), check `return_to`, mint a state " +
		"(32 random bytes, HMAC-SHA256), a binding value and a PKCE verifier (S256), record the state, build the provider URL and the cookie. " +
		"The same link is reused (links are reusable until they expire; every call mints a new state).\n")
	md.WriteString("- **callback**: parse the query, verify the state, hash the binding cookie, take the state, redeem the code " +
		"(request built and answered in process, token response parsed and checked), read and save the connection. " +
		"One fresh state per iteration, minted before the timer starts.\n")
	fmt.Fprintf(&md, "- **floor**: one HMAC-SHA256 over a state-sized message (%d bytes) plus one `url.Values.Encode` of an authorization URL's "+
		"%d parameters: the least any authorize path must do. `x_floor` = ns/op ÷ the floor's ns/op, measured once in the same process "+
		"(median of five runs: %.0f ns/op) before the handlers' runs; the floor row's own `x_floor` shows how much the host's noise moved "+
		"the figures during the run.\n\n", len(floorInput.msg), len(floorInput.params), floor)
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		load, _, _ := strings.Cut(string(raw), " ")
		fmt.Fprintf(&md, "Host load at the end of the run (1-minute load average): %s on %d CPUs; other processes competing for the CPU "+
			"inflate the absolute figures, the ratios to the floor less so.\n\n", load, runtime.NumCPU())
	}
	md.WriteString("| handler | µs/op | allocs/op | B/op | × floor |\n| --- | ---: | ---: | ---: | ---: |\n")
	var auth *handlerResult
	for i, r := range results {
		fmt.Fprintf(&md, "| %s | %.2f | %.0f | %.0f | %.1f |\n", r.Name, r.NsOp/1000, r.AllocsOp, r.BytesOp, r.XFloor)
		if r.Name == "authorize" {
			auth = &results[i]
		}
	}
	if auth != nil {
		verdict := "met"
		if auth.NsOp > float64(authorizeTarget.Nanoseconds()) {
			verdict = "**not met**"
		}
		fmt.Fprintf(&md, "\nTarget authorize ≤ %d µs/op: %s (%.1f µs/op, %.1f× the floor). ", authorizeTarget.Microseconds(), verdict, auth.NsOp/1000, auth.XFloor)
		md.WriteString("Beyond the floor, authorize verifies the link's HMAC, parses the keyset and client-credentials JSON the secrets " +
			"cache returns, draws 96 random bytes (state nonce, binding value, PKCE verifier) and hashes the verifier, checks `return_to`, " +
			"builds the provider URL, the state record, the cookie, the response headers and one JSON log line.\n")
	}
	rep := struct {
		Benchmarks []handlerResult `json:"benchmarks"`
		FloorNsOp  float64         `json:"floor_ns_op"`
	}{results, round(floor, 1)}
	return saveBenchSection(dir, "handler", md.String(), rep)
}

// saveBenchSection writes <name>.md and <name>.json into dir, creating it.
func saveBenchSection(dir, name, md string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".md"), []byte(strings.TrimSpace(md)+"\n"), 0o644)
}
