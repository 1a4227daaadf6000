package client

// A stand-in for the IAM-authorized API Gateway route: it checks each
// request's Signature Version 4 the way API Gateway does, recomputing it
// from the request as received with its own implementation of the
// canonical request (not the SDK's), and answers what API Gateway answers
// when it does not match. Requests that pass are routed per the token
// route's contract to the test's answer function.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

const (
	testRegion  = "eu-west-1"
	testService = "execute-api"
	amzDate     = "20060102T150405Z"
	maxSkew     = 5 * time.Minute
	sigMismatch = "The request signature we calculated does not match the signature you provided. " +
		"Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

// testCreds are the static credentials of the tests: the secret key and the
// session token are random per run and registered with logcheck.
var testCreds = func() aws.Credentials {
	c := aws.Credentials{
		AccessKeyID:     "AKIATESTCLIENT" + rand.Text()[:6],
		SecretAccessKey: "secret-" + rand.Text(),
		SessionToken:    "session-" + rand.Text() + rand.Text(),
	}
	logcheck.Register(c.SecretAccessKey, c.SessionToken)
	return c
}()

func staticCreds(c aws.Credentials) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
}

// secretToken returns a fresh access token for a test, registered with
// logcheck.
func secretToken(prefix string) string {
	v := prefix + "-" + rand.Text()
	logcheck.Register(v)
	return v
}

// ---------------------------------------------------------------------------
// The clock

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 24, 20, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ---------------------------------------------------------------------------
// Signature Version 4, server side

type verifier struct {
	creds           aws.Credentials
	region, service string
	now             func() time.Time
}

// verify returns "" if r (with body) is correctly signed, or the message
// API Gateway would answer with 403.
func (v *verifier) verify(r *http.Request, body []byte) string {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "Missing Authentication Token"
	}
	algo, params, ok := strings.Cut(auth, " ")
	if !ok || algo != "AWS4-HMAC-SHA256" {
		return "Authorization header requires 'Credential' parameter."
	}
	fields := map[string]string{}
	for _, p := range strings.Split(params, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		fields[k] = val
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters."
	}
	akid, date, region, service, term := scope[0], scope[1], scope[2], scope[3], scope[4]
	switch {
	case akid != v.creds.AccessKeyID:
		return "The security token included in the request is invalid."
	case term != "aws4_request":
		return "Credential should be scoped with a valid terminator: 'aws4_request'."
	case region != v.region:
		return "Credential should be scoped to a valid region."
	case service != v.service:
		return fmt.Sprintf("Credential should be scoped to correct service: '%s'.", v.service)
	}
	stamp := r.Header.Get("X-Amz-Date")
	at, err := time.Parse(amzDate, stamp)
	if err != nil {
		return "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
	}
	now := v.now().UTC()
	if at.Before(now.Add(-maxSkew)) {
		return fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 5 min.)",
			stamp, now.Add(-maxSkew).Format(amzDate), now.Format(amzDate))
	}
	if at.After(now.Add(maxSkew)) {
		return fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + 5 min.)",
			stamp, now.Add(maxSkew).Format(amzDate), now.Format(amzDate))
	}
	if date != at.Format("20060102") {
		return "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP."
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	if !sort.StringsAreSorted(signed) || !contains(signed, "host") || !contains(signed, "x-amz-date") {
		return sigMismatch
	}
	if v.creds.SessionToken != "" &&
		(r.Header.Get("X-Amz-Security-Token") != v.creds.SessionToken || !contains(signed, "x-amz-security-token")) {
		return "The security token included in the request is invalid."
	}
	canonical, ok := canonicalRequest(r, signed, body)
	if !ok {
		return sigMismatch
	}
	want := signature(v.creds.SecretAccessKey, date, region, service, stamp, canonical)
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		// REST APIs append the canonical request, which shows the session
		// token: the client must not pass this on.
		return sigMismatch + "\n\nThe Canonical String for this request should have been\n'" + canonical + "'\n"
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// canonicalRequest builds the SigV4 canonical request of r as received.
// For every service but S3 the path is URI-encoded once more on top of its
// encoding on the wire.
func canonicalRequest(r *http.Request, signed []string, body []byte) (string, bool) {
	rawPath, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	if rawPath == "" {
		rawPath = "/"
	}
	var pairs []string
	if rawQuery != "" {
		for _, kv := range strings.Split(rawQuery, "&") {
			k, val, _ := strings.Cut(kv, "=")
			dk, err1 := url.QueryUnescape(k)
			dv, err2 := url.QueryUnescape(val)
			if err1 != nil || err2 != nil {
				return "", false
			}
			pairs = append(pairs, uriEncode(dk, true)+"="+uriEncode(dv, true))
		}
		sort.Strings(pairs) // keys never hold '=': sorts by key, then value
	}
	var headers strings.Builder
	for _, h := range signed {
		var vals []string
		if h == "host" {
			vals = []string{r.Host}
		} else {
			vals = r.Header.Values(h)
		}
		if len(vals) == 0 || h != strings.ToLower(h) {
			return "", false
		}
		for i, val := range vals {
			vals[i] = strings.Join(strings.Fields(val), " ")
		}
		headers.WriteString(h + ":" + strings.Join(vals, ",") + "\n")
	}
	sum := sha256.Sum256(body)
	return strings.Join([]string{
		r.Method,
		uriEncode(rawPath, false),
		strings.Join(pairs, "&"),
		headers.String(),
		strings.Join(signed, ";"),
		hex.EncodeToString(sum[:]),
	}, "\n"), true
}

// uriEncode is SigV4's UriEncode: everything but unreserved characters
// (and '/' unless encodeSlash) as %XX.
func uriEncode(s string, encodeSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || c == '/' && !encodeSlash {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func signature(secret, date, region, service, stamp, canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	stringToSign := "AWS4-HMAC-SHA256\n" + stamp + "\n" + date + "/" + region + "/" + service + "/aws4_request\n" + hex.EncodeToString(sum[:])
	key := hmacSHA256([]byte("AWS4"+secret), date)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, service)
	key = hmacSHA256(key, "aws4_request")
	return hex.EncodeToString(hmacSHA256(key, stringToSign))
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// ---------------------------------------------------------------------------
// The route

// routeRequest is a verified request to the route.
type routeRequest struct {
	Method, Provider, ConnectionID string
	Force                          bool
}

// answer is what the route answers: a status, headers and a body.
type answer struct {
	status int
	header map[string]string
	body   string
}

// tokenAnswer is a 200 with the token as the contract spells it.
func tokenAnswer(accessToken string, expiresAt time.Time, scope string, metadata map[string]string) answer {
	body := map[string]any{"access_token": accessToken, "token_type": "Bearer"}
	if !expiresAt.IsZero() {
		body["expires_at"] = expiresAt.UTC().Format(time.RFC3339)
	}
	if scope != "" {
		body["scope"] = scope
	}
	if len(metadata) > 0 {
		body["metadata"] = metadata
	}
	b, _ := json.Marshal(body)
	return answer{status: http.StatusOK, body: string(b)}
}

func errorAnswer(status int, code string) answer {
	return answer{status: status, body: `{"error":"` + code + `"}`}
}

// fakeAPI is the route behind API Gateway's signature check.
type fakeAPI struct {
	srv      *httptest.Server
	verifier *verifier
	prefix   string // the stage path before /connections, if any

	mu        sync.Mutex
	answer    func(routeRequest) answer
	requests  []routeRequest
	bodies    []string // the verified requests' bodies
	forbidden []string // the 403 messages
}

// newFakeAPI starts the API; answer gets each verified route request.
func newFakeAPI(t *testing.T, clock *fakeClock, answer func(routeRequest) answer) *fakeAPI {
	a := &fakeAPI{
		verifier: &verifier{creds: testCreds, region: testRegion, service: testService, now: clock.Now},
		answer:   answer,
	}
	a.srv = httptest.NewServer(a)
	t.Cleanup(a.srv.Close)
	return a
}

// newRoutesAPI is a fakeAPI whose token route always hands out tok and
// whose delete route always deletes: for tests of what reaches the routes.
func newRoutesAPI(t *testing.T, clock *fakeClock, tok string) *fakeAPI {
	return newFakeAPI(t, clock, func(r routeRequest) answer {
		if r.Method == http.MethodDelete {
			return answer{status: http.StatusNoContent}
		}
		return tokenAnswer(tok, time.Time{}, "", nil)
	})
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if msg := a.verifier.verify(r, body); msg != "" {
		a.mu.Lock()
		a.forbidden = append(a.forbidden, msg)
		a.mu.Unlock()
		b, _ := json.Marshal(map[string]string{"message": msg})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-amzn-ErrorType", "ForbiddenException")
		w.WriteHeader(http.StatusForbidden)
		w.Write(b)
		return
	}
	rr, ok := route(r, a.prefix)
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"Not Found"}`)
		return
	}
	var ans answer
	if force, ok := forceParam(r); !ok || rr.Method != http.MethodGet && r.URL.RawQuery != "" {
		ans = errorAnswer(http.StatusBadRequest, "invalid_request")
	} else {
		rr.Force = force
		a.mu.Lock()
		a.requests = append(a.requests, rr)
		a.bodies = append(a.bodies, string(body))
		f := a.answer
		a.mu.Unlock()
		ans = f(rr)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if ans.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	for k, v := range ans.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(ans.status)
	io.WriteString(w, ans.body)
}

// route matches GET /connections/{provider}/{connection_id}/token,
// POST /connections/{provider}/{connection_id}/confirm and DELETE
// /connections/{provider}/{connection_id} on the path as sent, unescaping
// each segment.
func route(r *http.Request, prefix string) (routeRequest, bool) {
	rawPath, _, _ := strings.Cut(r.RequestURI, "?")
	rawPath, ok := strings.CutPrefix(rawPath, prefix)
	if !ok {
		return routeRequest{}, false
	}
	segs := strings.Split(strings.TrimPrefix(rawPath, "/"), "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return routeRequest{}, false
		}
		segs[i] = u
	}
	switch {
	case r.Method == http.MethodGet && len(segs) == 4 && segs[0] == "connections" && segs[3] == "token",
		r.Method == http.MethodPost && len(segs) == 4 && segs[0] == "connections" && segs[3] == "confirm",
		r.Method == http.MethodDelete && len(segs) == 3 && segs[0] == "connections":
		if segs[1] == "" || segs[2] == "" {
			return routeRequest{}, false
		}
		return routeRequest{Method: r.Method, Provider: segs[1], ConnectionID: segs[2]}, true
	}
	return routeRequest{}, false
}

// forceParam reads the query strictly: at most force_refresh=true|false.
func forceParam(r *http.Request) (force, ok bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return false, false
	}
	for k, v := range q {
		if k != "force_refresh" || len(v) != 1 || v[0] != "true" && v[0] != "false" {
			return false, false
		}
	}
	return q.Get("force_refresh") == "true", true
}

func (a *fakeAPI) setAnswer(f func(routeRequest) answer) {
	a.mu.Lock()
	a.answer = f
	a.mu.Unlock()
}

// count is how many verified route requests match f.
func (a *fakeAPI) count(f func(routeRequest) bool) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, r := range a.requests {
		if f(r) {
			n++
		}
	}
	return n
}

func (a *fakeAPI) forbiddenMessages() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.forbidden...)
}

func isFetch(r routeRequest) bool { return r.Method == http.MethodGet && !r.Force }
func isForce(r routeRequest) bool { return r.Method == http.MethodGet && r.Force }

// newTestClient is a client of a with the test credentials and clock.
func newTestClient(t *testing.T, a *fakeAPI, clock *fakeClock, opts ...Option) *Client {
	t.Helper()
	all := append([]Option{
		WithCredentials(staticCreds(testCreds)),
		WithRegion(testRegion),
		WithClock(clock.Now),
		WithHTTPClient(a.srv.Client()),
	}, opts...)
	c, err := New(context.Background(), a.srv.URL, all...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assertClean fails if s holds a credential of the tests or any of the
// given tokens.
func assertClean(t *testing.T, what, s string, tokens ...string) {
	t.Helper()
	for _, v := range append([]string{testCreds.SecretAccessKey, testCreds.SessionToken}, tokens...) {
		if v != "" && strings.Contains(s, v) {
			t.Errorf("%s holds a credential (%d bytes)", what, len(v))
		}
	}
}
