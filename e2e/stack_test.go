// Package e2e drives the built Lambda functions — authorize, callback,
// refresh — under the Lambda Runtime Interface Emulator, with the events in
// events/ as templates, against dynalite (the DynamoDB API), local-kms (the
// KMS API), moto (Secrets Manager, and EventBridge with an SQS subscriber
// of every lifecycle event) and a strict OAuth provider.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/awsstack"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/flowtest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

func TestMain(m *testing.M) { logcheck.Main(moto.Wrap(dynalite.Wrap(m))) }

const (
	baseURL   = "https://broker.example.test"
	appOrigin = "https://app.example.com"
	returnTo  = appOrigin + "/connected?tab=integrations"
	clientID  = "acme-client-id"
	eventBus  = "oauthbroker-test-events"
	// Test credentials: the log check searches every function log for them.
	clientSecret = "acme-client-secret-Zq81"
	keyMaterial  = "test-signing-key-0123456789abcdef0123456789"
	otherSecret  = "other-secret-Pw2"
)

// stack is one deployment of the product on local parts, and a browser
// walking its connect flow.
type stack struct {
	*flowtest.Browser                 // its T is the test the stack's helpers fail
	aws               *awsstack.Stack // the AWS side: table, key, secrets, bus, env
	store             *dynamo.Store
	prov              *providertest.Server
	authorize         *lambdarie.Function
	callback          *lambdarie.Function
	callback2         *lambdarie.Function // a second instance, for concurrent callbacks
	slowCB            *lambdarie.Function // a callback with a 3 s Lambda timeout
	refresh           *lambdarie.Function
	token             *lambdarie.Function // the app's token and delete routes
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

// remember notes values that must never appear in a log: this test
// binary's (logcheck) or a function's.
func (s *stack) remember(values ...string) {
	registerS22(values...)
	s.note(values...)
}

// note adds values to those the functions' logs are searched for.
func (s *stack) note(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, values...)
}

// newStack is a stack with the acme and other providers.
//
// Its functions run with CONFIRM_CONNECTIONS=off, so that a grant is the
// connection's as soon as the callback stores it: the rows below prove
// what holds either way, and confirm_test.go proves confirmation on a
// stack with the default (newConfirmingStack).
func newStack(t *testing.T) *stack { return newStackWith(t, nil) }

// newStackWith is newStack with more providers; extras is called with the
// stack's BASE_URL-derived redirect URI rule before the functions start.
func newStackWith(t *testing.T, extras func(redirectURI func(provider string) string) []extraProvider) *stack {
	t.Helper()
	return newStackConfirming(t, extras, "off")
}

// newConfirmingStack is newStack with CONFIRM_CONNECTIONS unset: the
// template's default, required.
func newConfirmingStack(t *testing.T) *stack {
	t.Helper()
	return newStackConfirming(t, nil, "")
}

func newStackConfirming(t *testing.T, extras func(redirectURI func(provider string) string) []extraProvider, confirm string) *stack {
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
	if confirm != "" {
		aws.Env["CONFIRM_CONNECTIONS"] = confirm
	}
	// The callback's provider call must end before a 3 s Lambda timeout;
	// the refresh function gets a minute, as a sweep only starts a
	// connection with 20 s to spare (production: 300 s).
	sweeper := aws.EnvWith(map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "60"})
	cb := lambdarie.Build(t, "./functions/callback")
	rf := lambdarie.Build(t, "./functions/refresh")
	s := &stack{
		aws:       aws,
		store:     aws.Store(),
		prov:      prov,
		extra:     extra,
		authorize: lambdarie.Start(t, lambdarie.Build(t, "./functions/authorize"), aws.Env),
		callback:  lambdarie.Start(t, cb, aws.Env),
		callback2: lambdarie.Start(t, cb, aws.Env),
		slowCB:    lambdarie.Start(t, cb, aws.EnvWith(map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "3"})),
		refresh:   lambdarie.Start(t, rf, sweeper),
		token:     lambdarie.Start(t, lambdarie.Build(t, "./functions/token"), aws.EnvWith(map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "25"})), // as in template.yaml
		events:    aws.Account.Subscribe(t, eventBus, awsstack.AllEvents),

		refreshEnv:   sweeper,
		refreshBuild: rf,
		root:         t,
	}
	s.Browser = &flowtest.Browser{T: t, Authorize: via(s.authorize), Callback: via(s.callback),
		Keys: secretSet.Keyset(t), SigningKey: keyMaterial, Provider: prov, Store: s.store, Items: aws.Items,
		BindingCookieName: httpapi.BindingCookieName, ReturnTo: returnTo, Remember: s.note}
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
				s.T.Errorf("%s logged a credential (%.6s…)", fn.Name(), secret)
			}
		}
		for _, marker := range []string{"state=", "code=", "sig="} {
			if strings.Contains(logs, marker) {
				s.T.Errorf("%s logged %q", fn.Name(), marker)
			}
		}
	}
}

// via is fn as the browser's handler.
func via(fn *lambdarie.Function) flowtest.Handler {
	return func(t testing.TB, ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
		t.Helper()
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return invoke(t, fn, raw)
	}
}

func invoke(t testing.TB, fn *lambdarie.Function, ev []byte) events.APIGatewayV2HTTPResponse {
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

// makeDue moves an acme connection's refresh time into the past, as if
// the clock had advanced to it.
func (s *stack) makeDue(id string) { s.dueNow("acme", id) }

func (s *stack) runRefresh() map[string]int {
	s.T.Helper()
	sum, err := sweep(s.T.Context(), s.refresh)
	if err != nil {
		s.T.Fatalf("refresh: %v", err)
	}
	return sum
}

// sweep runs one scheduled refresh on fn.
func sweep(ctx context.Context, fn *lambdarie.Function) (map[string]int, error) {
	ev, err := modroot.ReadFile("events", "refresh.json")
	if err != nil {
		return nil, err
	}
	out, err := fn.Invoke(ctx, ev)
	if err != nil {
		return nil, err
	}
	var sum map[string]int
	if err := json.Unmarshal(out, &sum); err != nil {
		return nil, errors.New("refresh summary: " + string(out))
	}
	return sum, nil
}
