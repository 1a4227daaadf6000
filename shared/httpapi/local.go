package httpapi

import (
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/shared/client/tokenapi"
)

// localIdentity is the IAM identity Event puts on the token routes: the
// caller of make dev, whose dev key stands in for IAM authorization. Its
// account is the placeholder 000000000000.
var localIdentity = events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{
	AccessKey: "LOCALDEVKEY",
	AccountID: "000000000000",
	CallerID:  "make-dev",
	UserARN:   "arn:aws:iam::000000000000:user/make-dev",
	UserID:    "make-dev",
}

// Event builds the API Gateway HTTP API (payload 2.0) event that API
// Gateway would send for r on the route routeKey ("GET /callback/{provider}")
// — what the local development server feeds the same handlers. On the
// app's routes (tokenapi.RouteToken, RouteDelete, RouteConfirm), which API
// Gateway admits only with IAM authorization and then describes the
// caller in requestContext.authorizer.iam, the event carries
// localIdentity: the server must have checked its stand-in for IAM (make
// dev's dev key) before it calls Event for them.
func Event(r *http.Request, routeKey string, pathParameters map[string]string) events.APIGatewayV2HTTPRequest {
	headers := map[string]string{}
	for k, v := range r.Header {
		if !strings.EqualFold(k, "Cookie") {
			headers[strings.ToLower(k)] = strings.Join(v, ",")
		}
	}
	var cookies []string
	for _, c := range r.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	query := map[string]string{}
	for k, v := range r.URL.Query() {
		query[k] = strings.Join(v, ",") // as API Gateway does; handlers use the raw string
	}
	var authorizer *events.APIGatewayV2HTTPRequestContextAuthorizerDescription
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 64<<10))
	}
	if routeKey == tokenapi.RouteToken || routeKey == tokenapi.RouteDelete || routeKey == tokenapi.RouteConfirm {
		id := localIdentity
		authorizer = &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{IAM: &id}
	}
	return events.APIGatewayV2HTTPRequest{
		Version:               "2.0",
		RouteKey:              routeKey,
		RawPath:               r.URL.EscapedPath(),
		RawQueryString:        r.URL.RawQuery,
		Cookies:               cookies,
		Headers:               headers,
		QueryStringParameters: query,
		PathParameters:        pathParameters,
		Body:                  string(body),
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:   routeKey,
			Authorizer: authorizer,
			Stage:      "$default",
			DomainName: r.Host,
			TimeEpoch:  time.Now().UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:    r.Method,
				Path:      r.URL.Path,
				Protocol:  r.Proto,
				SourceIP:  strings.Split(r.RemoteAddr, ":")[0],
				UserAgent: r.UserAgent(),
			},
		},
	}
}

// Write sends a handler's response the way API Gateway would.
func Write(w http.ResponseWriter, resp events.APIGatewayV2HTTPResponse) {
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	for _, c := range resp.Cookies {
		w.Header().Add("Set-Cookie", c)
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write([]byte(resp.Body))
}
