package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// TokenResponse is the 200 answer of the token route: what the app needs to
// call the provider's API.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	// ExpiresAt is RFC 3339 (UTC), omitted when the token does not expire.
	ExpiresAt string            `json:"expires_at,omitempty"`
	Scope     string            `json:"scope,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// Token-route error codes, the "error" member of a JSON error answer.
const (
	CodeInvalidRequest      = "invalid_request"
	CodeNotFound            = "not_found"
	CodeReauthRequired      = "reauth_required"
	CodeProviderUnavailable = "provider_unavailable"
	CodeProviderError       = "provider_error"
	CodeInternal            = "internal"
)

// Tokens handles the app's routes, which API Gateway admits only with IAM
// (SigV4) authorization:
//
//	GET    /connections/{provider}/{connection_id}/token[?force_refresh=true]
//	DELETE /connections/{provider}/{connection_id}
//
// The token answer is renewed first when it is expired, about to expire or
// forced (broker.Token); every answer is JSON with Cache-Control: no-store.
func Tokens(b *broker.Broker) Handler {
	return func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		prov, id := req.PathParameters["provider"], req.PathParameters["connection_id"]
		if err := store.CheckKey(prov, id); err != nil {
			return jsonError(http.StatusBadRequest, CodeInvalidRequest, 0), nil
		}
		switch req.RequestContext.HTTP.Method {
		case http.MethodGet:
			return token(ctx, b, req, prov, id), nil
		case http.MethodDelete:
			if req.RawQueryString != "" {
				return jsonError(http.StatusBadRequest, CodeInvalidRequest, 0), nil
			}
			return deleteConnection(ctx, b, prov, id), nil
		}
		return jsonError(http.StatusMethodNotAllowed, CodeInvalidRequest, 0), nil
	}
}

func token(ctx context.Context, b *broker.Broker, req events.APIGatewayV2HTTPRequest, prov, id string) events.APIGatewayV2HTTPResponse {
	q, err := ParseQuery(req.RawQueryString)
	force := q.Get("force_refresh")
	if err != nil || len(q) > 1 || len(q) == 1 && !q.Has("force_refresh") || q.Has("force_refresh") && force != "true" && force != "false" {
		return jsonError(http.StatusBadRequest, CodeInvalidRequest, 0)
	}
	c, err := b.Token(ctx, prov, id, force == "true")
	log := b.Logger().With("provider", prov, "connection_id", id, "force_refresh", force == "true")
	var re *broker.RefreshError
	switch {
	case err == nil:
		resp := TokenResponse{AccessToken: c.AccessToken, TokenType: c.TokenType, Scope: c.Scope, Metadata: c.Metadata}
		if resp.TokenType == "" {
			resp.TokenType = "Bearer"
		}
		if !c.ExpiresAt.IsZero() {
			resp.ExpiresAt = c.ExpiresAt.UTC().Format(time.RFC3339)
		}
		log.InfoContext(ctx, "token served")
		return JSON(http.StatusOK, resp)
	case errors.Is(err, store.ErrNotFound):
		log.InfoContext(ctx, "token refused", "status", http.StatusNotFound)
		return jsonError(http.StatusNotFound, CodeNotFound, 0)
	case errors.Is(err, broker.ErrReauthRequired):
		log.InfoContext(ctx, "token refused", "status", http.StatusConflict)
		return jsonError(http.StatusConflict, CodeReauthRequired, 0)
	case errors.As(err, &re) && (re.Class == broker.ClassRejected || re.Class == broker.ClassBadResponse):
		// Not worth a quick retry: the provider refused the request or
		// answered nonsense, which usually takes an operator to fix.
		log.WarnContext(ctx, "token refused", "status", http.StatusBadGateway, "class", re.Class, "cause", err.Error())
		return jsonError(http.StatusBadGateway, CodeProviderError, re.RetryAfter)
	case errors.As(err, &re) && re.Class != broker.ClassInternal:
		log.WarnContext(ctx, "token refused", "status", http.StatusServiceUnavailable, "class", re.Class, "cause", err.Error())
		return jsonError(http.StatusServiceUnavailable, CodeProviderUnavailable, re.RetryAfter)
	}
	log.ErrorContext(ctx, "token failed", "cause", err.Error())
	return jsonError(http.StatusInternalServerError, CodeInternal, 0)
}

func deleteConnection(ctx context.Context, b *broker.Broker, prov, id string) events.APIGatewayV2HTTPResponse {
	log := b.Logger().With("provider", prov, "connection_id", id)
	switch err := b.Delete(ctx, prov, id); {
	case err == nil:
		log.InfoContext(ctx, "connection deleted")
		return events.APIGatewayV2HTTPResponse{StatusCode: http.StatusNoContent, Headers: securityHeaders()}
	case errors.Is(err, store.ErrNotFound):
		return jsonError(http.StatusNotFound, CodeNotFound, 0)
	default:
		log.ErrorContext(ctx, "delete failed", "cause", err.Error())
		return jsonError(http.StatusInternalServerError, CodeInternal, 0)
	}
}

// jsonError answers {"error": code}, with Retry-After (whole seconds, at
// least 1) when retryAfter is set.
func jsonError(status int, code string, retryAfter time.Duration) events.APIGatewayV2HTTPResponse {
	resp := JSON(status, map[string]string{"error": code})
	if retryAfter > 0 {
		resp.Headers["Retry-After"] = strconv.Itoa(int(max(1, math.Ceil(retryAfter.Seconds()))))
	}
	return resp
}
