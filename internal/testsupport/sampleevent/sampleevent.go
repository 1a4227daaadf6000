// Package sampleevent loads the API Gateway events in events/ — the files a
// user passes to `sam local invoke -e` — for tests that invoke the built
// functions with them.
package sampleevent

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// Load reads events/<name>.json, applies edit (unless nil) and returns the
// event as JSON, ready to invoke a function with.
func Load(t testing.TB, name string, edit func(*events.APIGatewayV2HTTPRequest)) []byte {
	t.Helper()
	out, err := json.Marshal(Request(t, name, edit))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// SetQuery points ev at /<path>/<provider> with the raw query string raw,
// filling the parsed parameters as API Gateway does (repeated values
// joined with commas).
func SetQuery(ev *events.APIGatewayV2HTTPRequest, provider, path, raw string) {
	ev.PathParameters = map[string]string{"provider": provider}
	ev.RawPath = "/" + path + "/" + provider
	ev.RequestContext.HTTP.Path = ev.RawPath
	ev.RawQueryString = raw
	q, _ := url.ParseQuery(raw)
	ev.QueryStringParameters = map[string]string{}
	for k, v := range q {
		ev.QueryStringParameters[k] = strings.Join(v, ",")
	}
}

// Request is Load's event before it is marshalled, for a handler called in
// process.
func Request(t testing.TB, name string, edit func(*events.APIGatewayV2HTTPRequest)) events.APIGatewayV2HTTPRequest {
	t.Helper()
	b, err := modroot.ReadFile("events", name)
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&ev)
	}
	return ev
}
