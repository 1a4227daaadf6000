package sampleevent_test

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
)

// Load gives the event file as it is, or with edit applied; SetQuery
// points it at a provider's route with the query parsed as API Gateway
// parses it.
func TestLoad(t *testing.T) {
	for _, tt := range []struct {
		name      string
		edit      func(*events.APIGatewayV2HTTPRequest)
		wantPath  string
		wantQuery map[string]string
	}{
		{name: "as it is", wantPath: "/connect/acme"},
		{
			name:      "another provider and query",
			edit:      func(ev *events.APIGatewayV2HTTPRequest) { sampleevent.SetQuery(ev, "other", "connect", "a=1&b=2&b=3") },
			wantPath:  "/connect/other",
			wantQuery: map[string]string{"a": "1", "b": "2,3"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ev events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal(sampleevent.Load(t, "connect.json", tt.edit), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.RawPath != tt.wantPath || ev.RequestContext.HTTP.Path != tt.wantPath || ev.RouteKey != "GET /connect/{provider}" {
				t.Errorf("path %q (context %q), route %q; want %q on GET /connect/{provider}", ev.RawPath, ev.RequestContext.HTTP.Path, ev.RouteKey, tt.wantPath)
			}
			if tt.wantQuery == nil {
				return
			}
			if len(ev.QueryStringParameters) != len(tt.wantQuery) || ev.PathParameters["provider"] != "other" {
				t.Errorf("query %v, path parameters %v; want %v for provider other", ev.QueryStringParameters, ev.PathParameters, tt.wantQuery)
			}
			for k, v := range tt.wantQuery {
				if ev.QueryStringParameters[k] != v {
					t.Errorf("query %s = %q, want %q", k, ev.QueryStringParameters[k], v)
				}
			}
		})
	}
}
