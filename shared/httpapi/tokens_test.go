package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/embedded"
)

// noStore is a store.Store any call of which panics: the handler must
// not reach it.
type noStore struct{ store.Store }

// iamIdentity is what API Gateway puts in requestContext.authorizer.iam
// for a request signed by an assumed role.
func iamIdentity() *events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription {
	return &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{
		AccessKey: "ASIAEXAMPLEEXAMPLE00",
		AccountID: "123456789012",
		CallerID:  "AROAEXAMPLEEXAMPLE000:app-backend",
		UserARN:   "arn:aws:sts::123456789012:assumed-role/app-backend/app-backend",
		UserID:    "AROAEXAMPLEEXAMPLE000:app-backend",
	}
}

func tokenRouteEvent(method string, authorizer *events.APIGatewayV2HTTPRequestContextAuthorizerDescription) events.APIGatewayV2HTTPRequest {
	routeKey, path := "GET /connections/{provider}/{connection_id}/token", "/connections/acme/c1/token"
	if method == http.MethodDelete {
		routeKey, path = "DELETE /connections/{provider}/{connection_id}", "/connections/acme/c1"
	}
	return events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: routeKey, RawPath: path,
		PathParameters: map[string]string{"provider": "acme", "connection_id": "c1"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:   routeKey,
			Authorizer: authorizer,
			HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: path},
		},
	}
}

// The token routes refuse, as defence in depth behind API Gateway's
// AWS_IAM authorization, any request whose requestContext carries no IAM
// identity: 403 {"error":"forbidden"}, one error log line with a fixed
// cause, and no store access.
func TestTokensRefuseWithoutIAMIdentity(t *testing.T) {
	withIAM := func(edit func(*events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription)) *events.APIGatewayV2HTTPRequestContextAuthorizerDescription {
		id := iamIdentity()
		edit(id)
		return &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{IAM: id}
	}
	tests := []struct {
		name       string
		authorizer *events.APIGatewayV2HTTPRequestContextAuthorizerDescription
	}{
		{"no authorizer", nil},
		{"authorizer without iam", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{}},
		{"a JWT authorizer instead", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"sub": "x"}}}},
		{"a Lambda authorizer instead", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{Lambda: map[string]any{"ok": true}}},
		{"empty iam", &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{}}},
		{"iam without accessKey", withIAM(func(id *events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription) { id.AccessKey = "" })},
		{"iam without accountId", withIAM(func(id *events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription) { id.AccountID = "" })},
		{"iam without userArn", withIAM(func(id *events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription) { id.UserARN = "" })},
	}
	for _, tt := range tests {
		for _, method := range []string{http.MethodGet, http.MethodDelete} {
			t.Run(tt.name+"/"+method, func(t *testing.T) {
				logs := &syncbuf.Buffer{}
				b := &broker.Broker{Store: noStore{}, Log: slog.New(slog.NewJSONHandler(logs, nil))}
				resp, err := Tokens(b)(context.Background(), tokenRouteEvent(method, tt.authorizer))
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusForbidden || resp.Body != `{"error":"forbidden"}` ||
					resp.Headers["Content-Type"] != "application/json" || resp.Headers["Cache-Control"] != "no-store" {
					t.Errorf("answer %d %s %v, want 403 {\"error\":\"forbidden\"}", resp.StatusCode, resp.Body, resp.Headers)
				}
				lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
				var rec map[string]any
				if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil {
					t.Fatalf("log %q, want one JSON line", logs.String())
				}
				if rec["level"] != "ERROR" || rec["msg"] != "token route refused" || rec["cause"] != noIdentityCause || rec["status"] != float64(403) {
					t.Errorf("log line %v", rec)
				}
			})
		}
	}

	// The control: with the identity API Gateway attaches, the same
	// requests reach the store.
	st, err := embedded.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &broker.Broker{Store: st, Log: slog.New(slog.DiscardHandler)}
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		ev := tokenRouteEvent(method, &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{IAM: iamIdentity()})
		if resp, _ := Tokens(b)(context.Background(), ev); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s with an IAM identity: %d %s, want 404 from the store", method, resp.StatusCode, resp.Body)
		}
	}
}

// Event, what make dev feeds the handlers, carries a local IAM identity on
// the token routes (where the dev key stands in for IAM authorization),
// and none on the browser's routes.
func TestEventIdentity(t *testing.T) {
	for _, tt := range []struct {
		routeKey string
		iam      bool
	}{
		{"GET /connections/{provider}/{connection_id}/token", true},
		{"DELETE /connections/{provider}/{connection_id}", true},
		{"GET /connect/{provider}", false},
		{"GET /callback/{provider}", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/x", nil)
		ev := Event(r, tt.routeKey, nil)
		if got := iamCaller(ev.RequestContext) != nil; got != tt.iam {
			t.Errorf("%s: IAM identity %v, want %v", tt.routeKey, got, tt.iam)
		}
	}
}
