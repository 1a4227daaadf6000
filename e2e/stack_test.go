// Package e2e drives the built Lambda functions — authorize, callback,
// refresh — under the Lambda Runtime Interface Emulator, with the events in
// events/ as templates, against dynalite (the DynamoDB API), local-kms (the
// KMS API), moto (Secrets Manager, and EventBridge with an SQS subscriber
// of every lifecycle event) and a strict OAuth provider.
package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/awsstack"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

func TestMain(m *testing.M) { logcheck.Main(moto.Wrap(dynalite.Wrap(m))) }

const (
	baseURL   = "https://broker.example.test"
	appOrigin = "https://app.example.com"
	returnTo  = appOrigin + "/connected?tab=integrations"
	clientID  = "acme-client-id"
	eventBus  = "oauthbroker-test-events"
	// allEvents is the README's rule pattern with every detail-type.
	allEvents = `{"source":["oauthbroker"],"detail-type":["oauthbroker.connection.created","oauthbroker.connection.recovered",` +
		`"oauthbroker.connection.needs_reauth","oauthbroker.connection.failing","oauthbroker.connection.deleted"]}`
	// Test credentials: the log check searches every function log for them.
	clientSecret = "acme-client-secret-Zq81"
	keyMaterial  = "test-signing-key-0123456789abcdef0123456789"
	otherSecret  = "other-secret-Pw2"
)

// stack is one deployment of the product on local parts.
type stack struct {
	t         *testing.T
	aws       *awsstack.Stack // the AWS side: table, key, secrets, bus, env
	store     *dynamo.Store
	prov      *providertest.Server
	keys      *signing.Keyset
	authorize *lambdarie.Function
	callback  *lambdarie.Function
	callback2 *lambdarie.Function // a second instance, for concurrent callbacks
	slowCB    *lambdarie.Function // a callback with a 3 s Lambda timeout
	refresh   *lambdarie.Function
	token     *lambdarie.Function // the app's token and delete routes
	// events receives every lifecycle event the functions put on eventBus.
	events *moto.Subscriber
	// retired are refresh instances replaced by newRefreshInstance; their
	// logs are still checked.
	retired      []*lambdarie.Function
	refreshEnv   map[string]string
	refreshBuild string
	root         *testing.T // the test that owns the stack (t may be a subtest)

	extra []extraProvider

	mu   sync.Mutex
	seen []string // states, binding cookies and link signatures handed out
}

// extraProvider is one more provider in the stack's catalog and secrets,
// served by its own test server.
type extraProvider struct {
	name   string
	entry  string // the catalog entry's YAML, indented under "providers:"
	id     string // client_id and client_secret in Secrets Manager
	secret string
	srv    *providertest.Server
}

// remember notes values that must never appear in a log.
func (s *stack) remember(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, values...)
	registerS22(values...)
}

func newStack(t *testing.T) *stack { return newStackWith(t, nil) }

// newStackWith is newStack with more providers; extras is called with the
// stack's BASE_URL-derived redirect URI rule before the functions start.
func newStackWith(t *testing.T, extras func(redirectURI func(provider string) string) []extraProvider) *stack {
	t.Helper()
	prov := providertest.New(t, providertest.Config{
		ClientID:            clientID,
		ClientSecret:        clientSecret,
		RedirectURI:         baseURL + "/callback/acme",
		ClientAuth:          "basic",
		TokenRequest:        "form",
		RequirePKCE:         true,
		Scopes:              []string{"read", "write"},
		AccessTokenTTL:      time.Hour,
		RotateRefreshTokens: true,
	})
	catalog := "providers:\n" +
		"  acme:\n    display_name: Acme\n    authorization_url: " + prov.AuthorizeURL() + "\n    token_url: " + prov.TokenURL() +
		"\n    revocation_url: " + prov.RevokeURL() +
		"\n    grant_types: [authorization_code, refresh_token]\n    client_auth: basic\n    token_request: form\n    default_scopes: [read]\n" +
		"  other:\n    authorization_url: " + prov.AuthorizeURL() + "\n    token_url: " + prov.TokenURL() +
		"\n    grant_types: [authorization_code]\n"
	secretSet := testsecrets.Set{SigningKey: keyMaterial, Clients: map[string]testsecrets.Client{
		"acme":  {ID: clientID, Secret: clientSecret},
		"other": {ID: "other-id", Secret: otherSecret},
	}}
	var extra []extraProvider
	if extras != nil {
		extra = extras(func(p string) string { return baseURL + "/callback/" + p })
	}
	for _, e := range extra {
		catalog += e.entry
		secretSet.Clients[e.name] = testsecrets.Client{ID: e.id, Secret: e.secret}
	}
	aws := awsstack.New(t, awsstack.Config{Bus: eventBus, Secrets: secretSet, Catalog: catalog, BaseURL: baseURL, ReturnOrigins: appOrigin})
	// The callback's provider call must end before a 3 s Lambda timeout;
	// the refresh function gets a minute, as a sweep only starts a
	// connection with 20 s to spare (production: 300 s).
	sweeper := aws.EnvWith(map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "60"})
	cb := lambdarie.Build(t, "./functions/callback")
	rf := lambdarie.Build(t, "./functions/refresh")
	s := &stack{
		t:         t,
		aws:       aws,
		store:     aws.Store(),
		prov:      prov,
		extra:     extra,
		keys:      secretSet.Keyset(t),
		authorize: lambdarie.Start(t, lambdarie.Build(t, "./functions/authorize"), aws.Env),
		callback:  lambdarie.Start(t, cb, aws.Env),
		callback2: lambdarie.Start(t, cb, aws.Env),
		slowCB:    lambdarie.Start(t, cb, aws.EnvWith(map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "3"})),
		refresh:   lambdarie.Start(t, rf, sweeper),
		token:     lambdarie.Start(t, lambdarie.Build(t, "./functions/token"), aws.EnvWith(map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "25"})), // as in template.yaml
		events:    aws.Account.Subscribe(t, eventBus, allEvents),

		refreshEnv:   sweeper,
		refreshBuild: rf,
		root:         t,
	}
	t.Cleanup(s.checkLogs)
	return s
}

// newRefreshInstance replaces the refresh function by a fresh execution
// environment, as Lambda does after an idle instance is recycled.
func (s *stack) newRefreshInstance() {
	s.retired = append(s.retired, s.refresh)
	s.refresh = lambdarie.Start(s.root, s.refreshBuild, s.refreshEnv)
}

// checkLogs fails the test if any function printed a credential (S22).
func (s *stack) checkLogs() {
	secretsSeen := []string{clientSecret, keyMaterial, otherSecret}
	servers := []*providertest.Server{s.prov}
	for _, e := range s.extra {
		secretsSeen = append(secretsSeen, e.secret, url.QueryEscape(e.secret))
		servers = append(servers, e.srv)
	}
	s.mu.Lock()
	secretsSeen = append(secretsSeen, s.seen...)
	s.mu.Unlock()
	for _, srv := range servers {
		secretsSeen = append(secretsSeen, srv.Credentials()...) // codes and tokens
		for _, r := range srv.Requests() {
			secretsSeen = append(secretsSeen, r.Params.Get("code_verifier"), r.Query.Get("state"))
		}
	}
	for _, fn := range append([]*lambdarie.Function{s.authorize, s.callback, s.callback2, s.slowCB, s.refresh, s.token}, s.retired...) {
		logs := fn.Logs()
		for _, secret := range secretsSeen {
			if secret != "" && strings.Contains(logs, secret) {
				s.t.Errorf("%s logged a credential (%.6s…)", fn.Name(), secret)
			}
		}
		for _, marker := range []string{"state=", "code=", "sig="} {
			if strings.Contains(logs, marker) {
				s.t.Errorf("%s logged %q", fn.Name(), marker)
			}
		}
	}
}

func invoke(t *testing.T, fn *lambdarie.Function, ev []byte) events.APIGatewayV2HTTPResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := fn.Invoke(ctx, ev)
	if err != nil {
		t.Fatalf("invoke %s: %v\n%s", fn.Name(), err, out)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("invoke %s: response %s: %v", fn.Name(), out, err)
	}
	return resp
}

// link signs a connect link for connectionID.
func (s *stack) link(connectionID, ret string, scopes []string, exp time.Time) string {
	q, err := signing.SignLink(s.keys, signing.Link{Provider: "acme", ConnectionID: connectionID, ReturnTo: ret, Scopes: scopes, Expires: exp})
	if err != nil {
		s.t.Fatal(err)
	}
	v, _ := url.ParseQuery(q)
	s.remember(v.Get("sig"))
	return q
}

// connect invokes authorize with a connect query.
func (s *stack) connect(provider, rawQuery string, headers map[string]string) events.APIGatewayV2HTTPResponse {
	return invoke(s.t, s.authorize, sampleevent.Load(s.t, "connect.json", func(ev *events.APIGatewayV2HTTPRequest) {
		sampleevent.SetQuery(ev, provider, "connect", rawQuery)
		for k, v := range headers {
			ev.Headers[k] = v
		}
	}))
}

// flow is a started authorization: what the browser holds when it comes
// back from the provider.
type flow struct {
	callbackQuery string // code=…&state=… as the provider sent it
	state, code   string
	cookie        string // name=value of the binding cookie
	authURL       *url.URL
}

// begin runs authorize and the provider's consent for connectionID.
func (s *stack) begin(connectionID string) flow {
	s.t.Helper()
	resp := s.connect("acme", s.link(connectionID, returnTo, nil, time.Now().Add(time.Hour)), nil)
	if resp.StatusCode != http.StatusFound || len(resp.Cookies) != 1 {
		s.t.Fatalf("authorize: %d %v %s", resp.StatusCode, resp.Cookies, resp.Body)
	}
	authURL, err := url.Parse(resp.Headers["Location"])
	if err != nil {
		s.t.Fatal(err)
	}
	cookie := strings.SplitN(resp.Cookies[0], ";", 2)[0]
	s.remember(authURL.Query().Get("state"), strings.SplitN(cookie, "=", 2)[1])
	back := s.consent(authURL)
	return flow{callbackQuery: back.RawQuery, state: back.Query().Get("state"), code: back.Query().Get("code"), cookie: cookie, authURL: authURL}
}

// consent is the user approving at the provider: it returns where the
// provider redirects the browser.
func (s *stack) consent(authURL *url.URL) *url.URL {
	s.t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(authURL.String())
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		s.t.Fatalf("provider authorize: %d", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		s.t.Fatal(err)
	}
	return u
}

// deliver invokes a callback function with the browser's query and cookies.
func (s *stack) deliver(fn *lambdarie.Function, provider, rawQuery string, cookies ...string) events.APIGatewayV2HTTPResponse {
	return invoke(s.t, fn, sampleevent.Load(s.t, "callback.json", func(ev *events.APIGatewayV2HTTPRequest) {
		sampleevent.SetQuery(ev, provider, "callback", rawQuery)
		ev.Cookies = cookies
	}))
}

func (s *stack) conn(id string) (store.Connection, error) {
	return s.store.GetConnection(context.Background(), "acme", id)
}

// makeDue moves an acme connection's refresh time into the past, as if
// the clock had advanced to it.
func (s *stack) makeDue(id string) { s.dueNow("acme", id) }

func (s *stack) runRefresh() map[string]int {
	s.t.Helper()
	sum, err := sweep(s.t.Context(), s.refresh)
	if err != nil {
		s.t.Fatalf("refresh: %v", err)
	}
	return sum
}
