// Package httpapi turns API Gateway HTTP API (payload 2.0) events into
// broker calls and broker results into responses: strict query parsing,
// the binding cookie (binding.go), the HTTP status of each kind of broker
// failure with its redirect, page or JSON (failure.go), and the JSON
// answers of the app's token routes (tokens.go).
//
// The same handlers serve Lambda (functions/authorize, functions/callback,
// functions/token) and the local development server (cmd/dev), which
// builds the same events.
package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/shared/broker"
)

// Handler is a Lambda handler for HTTP API events.
type Handler func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// Authorize handles GET /connect/{provider}.
func Authorize(b *broker.Broker) Handler {
	return func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		q, err := ParseQuery(req.RawQueryString)
		if err != nil {
			return failure(ctx, b, "connect", malformed("This connect link is malformed.", err)), nil
		}
		res, err := b.Connect(ctx, broker.ConnectRequest{
			Provider:   req.PathParameters["provider"],
			Query:      q,
			LinkSecret: func(id string) (string, bool) { return Cookie(req.Cookies, LinkCookieName(id)) },
		})
		if err != nil {
			return failure(ctx, b, "connect", err), nil
		}
		resp := Redirect(res.Location)
		// The flow's binding first, then the link's.
		if res.Binding != nil {
			resp.Cookies = append(resp.Cookies, bindingCookie(res.Binding.Flow, res.Binding.Secret, res.Binding.Lifetime).String())
		}
		if res.Link != nil {
			resp.Cookies = append(resp.Cookies, linkCookie(res.Link.Flow, res.Link.Secret, res.Link.Lifetime).String())
		}
		return resp, nil
	}
}

// Callback handles GET /callback/{provider}.
func Callback(b *broker.Broker) Handler {
	return func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		q, err := ParseQuery(req.RawQueryString)
		if err != nil {
			return failure(ctx, b, "callback", malformed("This sign-in response is malformed. Please start again from the application.", err)), nil
		}
		res, err := b.Callback(ctx, broker.CallbackRequest{
			Provider: req.PathParameters["provider"],
			Query:    q,
			Binding:  func(flow string) (string, bool) { return Cookie(req.Cookies, BindingCookieName(flow)) },
		})
		var resp events.APIGatewayV2HTTPResponse
		switch {
		case err != nil:
			resp = failure(ctx, b, "callback", err)
		case res.Location == "" && res.Connection != nil:
			resp = Created(res.Connection)
		default:
			resp = Redirect(res.Location)
		}
		if res.ClearBinding != "" {
			resp.Cookies = append(resp.Cookies, bindingCookie(res.ClearBinding, "", -1).String())
		}
		return resp, nil
	}
}

// ConnectionInfo is the 201 answer to a client_credentials connect without
// a return address: what was stored, never a token.
type ConnectionInfo struct {
	Provider     string `json:"provider"`
	ConnectionID string `json:"connection_id"`
	Status       string `json:"status"`
	// ExpiresAt is RFC 3339, omitted when the token does not expire.
	ExpiresAt string `json:"expires_at,omitempty"`
	Scope     string `json:"scope,omitempty"`
}

// Created answers 201 with the ConnectionInfo of c.
func Created(c *broker.Connection) events.APIGatewayV2HTTPResponse {
	info := ConnectionInfo{Provider: c.Provider, ConnectionID: c.ConnectionID, Status: string(c.Status), Scope: c.Scope}
	if !c.ExpiresAt.IsZero() {
		info.ExpiresAt = c.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return JSON(http.StatusCreated, info)
}

// JSON answers status with v as a JSON body.
func JSON(status int, v any) events.APIGatewayV2HTTPResponse {
	h := securityHeaders()
	h["Content-Type"] = "application/json"
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	return events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: h, Body: string(b)}
}

// ParseQuery parses a raw query string strictly: malformed escapes,
// semicolons and any repeated parameter are errors. API Gateway's
// queryStringParameters joins repeats with commas, so only the raw string
// tells "state=a&state=b" from one value (S11).
func ParseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, err
	}
	for k, v := range q {
		if len(v) != 1 {
			return nil, fmt.Errorf("parameter %q is repeated", k)
		}
	}
	return q, nil
}

// Cookie returns the value of the named cookie from a payload 2.0
// cookies list. A name sent twice is treated as absent.
func Cookie(cookies []string, name string) (string, bool) {
	var value string
	found := 0
	for _, c := range cookies {
		for _, part := range strings.Split(c, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				value = v
				found++
			}
		}
	}
	if found != 1 {
		return "", false
	}
	return value, true
}

// securityHeaders go on every response (S16).
func securityHeaders() map[string]string {
	return map[string]string{
		"Cache-Control":           "no-store",
		"Pragma":                  "no-cache",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
	}
}

// Redirect answers 302 to location.
func Redirect(location string) events.APIGatewayV2HTTPResponse {
	h := securityHeaders()
	h["Location"] = location
	return events.APIGatewayV2HTTPResponse{StatusCode: http.StatusFound, Headers: h}
}

// ErrorPage answers a short HTML page. The message is fixed text chosen
// by the broker, escaped anyway.
func ErrorPage(status int, message string) events.APIGatewayV2HTTPResponse {
	h := securityHeaders()
	h["Content-Type"] = "text/html; charset=utf-8"
	title := http.StatusText(status)
	body := "<!doctype html><html lang=en><meta charset=utf-8><title>" + html.EscapeString(title) +
		"</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}</style>" +
		"<h1>" + html.EscapeString(title) + "</h1><p>" + html.EscapeString(message) + "</p></html>\n"
	return events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: h, Body: body}
}
