package bench

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/awsstack"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

// lambdaFunc is one bootstrap the Lambda benchmarks run: a function
// package, the event it is invoked with, and the answer that event must get.
type lambdaFunc struct {
	name  string
	pkg   string
	event []byte
	// check returns an error unless payload is the answer the event must
	// get (so a benchmark never times a failing function).
	check func(payload []byte) error
}

// lambdaFuncs are the benchmarked functions, hello (the baseline) first.
var lambdaFuncs = []string{"hello", "authorize", "callback", "refresh", "token"}

// lambdaPkg is the package of a benchmarked function.
func lambdaPkg(name string) string {
	if name == "hello" {
		return "./bench/hello"
	}
	return "./functions/" + name
}

// lambdaStack is a working environment for the four functions
// (awsstack) and the functions to run in it.
type lambdaStack struct {
	env   map[string]string
	funcs []lambdaFunc
}

const (
	benchAppOrigin = "https://app.example.com"
	benchBus       = "oauthbroker-bench-events"
	// Test credentials, registered with logcheck by testsecrets.
	benchKey          = "bench-signing-key-0123456789abcdef0123456789"
	benchClientSecret = "bench-client-secret-Lq04"
)

// newLambdaStack starts the environment for b and builds every function.
func newLambdaStack(b *testing.B) *lambdaStack {
	b.Helper()
	secretSet := testsecrets.Set{SigningKey: benchKey, Clients: map[string]testsecrets.Client{"acme": {ID: "bench-client", Secret: benchClientSecret}}}
	stack := awsstack.New(b, awsstack.Config{
		Bus:     benchBus,
		Secrets: secretSet,
		Catalog: "providers:\n  acme:\n    display_name: Acme\n" +
			"    authorization_url: https://acme.example/oauth/authorize\n" +
			"    token_url: https://acme.example/oauth/token\n" +
			"    grant_types: [authorization_code, refresh_token]\n    default_scopes: [read]\n",
		BaseURL:       "https://broker.example.test",
		ReturnOrigins: benchAppOrigin,
	})
	// One link serves every invoke: each records a fresh state.
	link, err := signing.SignLink(secretSet.Keyset(b), signing.Link{Provider: "acme", ConnectionID: "bench-42",
		ReturnTo: benchAppOrigin + "/connected", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	s := &lambdaStack{env: stack.Env}
	refreshEvent, err := modroot.ReadFile("events", "refresh.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range lambdaFuncs {
		f := lambdaFunc{name: name, pkg: lambdaPkg(name)}
		switch name {
		case "hello":
			f.event, f.check = sampleevent.Load(b, "connect.json", nil), wantStatus(http.StatusOK)
		case "authorize": // a validly signed link: 302 to the provider
			f.event = sampleevent.Load(b, "connect.json", func(ev *events.APIGatewayV2HTTPRequest) {
				sampleevent.SetQuery(ev, "acme", "connect", link)
			})
			f.check = wantStatus(http.StatusFound)
		case "callback": // no state: the 400 page, before any I/O
			f.event = sampleevent.Load(b, "callback.json", func(ev *events.APIGatewayV2HTTPRequest) {
				sampleevent.SetQuery(ev, "acme", "callback", "code=bench-code")
				ev.Cookies = nil
			})
			f.check = wantStatus(http.StatusBadRequest)
		case "refresh": // the schedule's event on an empty table
			f.event, f.check = refreshEvent, wantSummary
		case "token": // an unknown connection: 404
			f.event = sampleevent.Load(b, "token.json", func(ev *events.APIGatewayV2HTTPRequest) {
				ev.PathParameters = map[string]string{"provider": "acme", "connection_id": "bench-unknown"}
				ev.RawPath = "/connections/acme/bench-unknown/token"
				ev.RequestContext.HTTP.Path = ev.RawPath
			})
			f.check = wantStatus(http.StatusNotFound)
		}
		s.funcs = append(s.funcs, f)
	}
	return s
}

// start runs f under the emulator in the stack's environment, with extra
// variables laid over it.
func (s *lambdaStack) start(b *testing.B, f lambdaFunc, extra ...string) *lambdarie.Function {
	b.Helper()
	env := maps.Clone(s.env)
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return lambdarie.Start(b, lambdarie.Build(b, f.pkg), env)
}

func wantStatus(code int) func([]byte) error {
	return func(payload []byte) error {
		var resp events.APIGatewayV2HTTPResponse
		if err := json.Unmarshal(payload, &resp); err != nil {
			return fmt.Errorf("answer %.200q: %v", payload, err)
		}
		if resp.StatusCode != code {
			return fmt.Errorf("status %d, want %d (body %.200q)", resp.StatusCode, code, resp.Body)
		}
		return nil
	}
}

// wantSummary accepts the refresh function's summary of an empty sweep.
func wantSummary(payload []byte) error {
	var sum map[string]int
	if err := json.Unmarshal(payload, &sum); err != nil {
		return fmt.Errorf("refresh summary %.200q: %v", payload, err)
	}
	for k, n := range sum {
		if n != 0 {
			return fmt.Errorf("refresh summary %v: %s = %d on an empty table", sum, k, n)
		}
	}
	return nil
}
