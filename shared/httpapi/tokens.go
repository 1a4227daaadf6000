package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/client/tokenapi"
)

// Tokens handles the app's routes (tokenapi.RouteToken, tokenapi.RouteDelete,
// tokenapi.RouteConfirm), which API Gateway admits only with IAM (SigV4)
// authorization:
//
//	GET    /connections/{provider}/{connection_id}/token[?force_refresh=true]
//	DELETE /connections/{provider}/{connection_id}
//	POST   /connections/{provider}/{connection_id}/confirm  {"confirmation": "…"}
//
// As defence in depth it refuses a request that carries no IAM identity
// (iamCaller) with 403 tokenapi.CodeForbidden and an error log line, before
// anything is read. The token answer is renewed first when it is expired,
// about to expire or forced (broker.Token). Every answer is JSON with
// Cache-Control: no-store; errors follow the contract of package tokenapi.
func Tokens(b *broker.Broker) Handler {
	return func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		if iamCaller(req.RequestContext) == nil {
			b.Logger().ErrorContext(ctx, "token route refused", "status", http.StatusForbidden, "route", req.RouteKey, "cause", noIdentityCause)
			return jsonError(tokenapi.CodeForbidden, 0), nil
		}
		prov, id := req.PathParameters["provider"], req.PathParameters["connection_id"]
		if err := broker.CheckConnection(prov, id); err != nil {
			return jsonError(tokenapi.CodeInvalidRequest, 0), nil
		}
		switch req.RequestContext.HTTP.Method {
		case http.MethodGet:
			return token(ctx, b, req, prov, id), nil
		case http.MethodDelete:
			if req.RawQueryString != "" {
				return jsonError(tokenapi.CodeInvalidRequest, 0), nil
			}
			return deleteConnection(ctx, b, prov, id), nil
		case http.MethodPost:
			if req.RawQueryString != "" {
				return jsonError(tokenapi.CodeInvalidRequest, 0), nil
			}
			return confirm(ctx, b, req, prov, id), nil
		}
		// No route sends another method here.
		return jsonError(tokenapi.CodeInvalidRequest, 0), nil
	}
}

func token(ctx context.Context, b *broker.Broker, req events.APIGatewayV2HTTPRequest, prov, id string) events.APIGatewayV2HTTPResponse {
	q, err := ParseQuery(req.RawQueryString)
	force := q.Get(tokenapi.ParamForceRefresh)
	if err != nil || len(q) > 1 || len(q) == 1 && !q.Has(tokenapi.ParamForceRefresh) || q.Has(tokenapi.ParamForceRefresh) && force != "true" && force != "false" {
		return jsonError(tokenapi.CodeInvalidRequest, 0)
	}
	c, err := b.Token(ctx, prov, id, force == "true")
	log := b.Logger().With("provider", prov, "connection_id", id, "force_refresh", force == "true")
	var re *broker.RefreshError
	switch {
	case err == nil:
		resp := tokenapi.Token{AccessToken: c.AccessToken, TokenType: c.TokenType, Scope: c.Scope, Metadata: c.Metadata}
		if resp.TokenType == "" {
			resp.TokenType = "Bearer"
		}
		if !c.ExpiresAt.IsZero() {
			resp.ExpiresAt = c.ExpiresAt.UTC().Format(time.RFC3339)
		}
		log.InfoContext(ctx, "token served")
		return JSON(http.StatusOK, resp)
	case errors.Is(err, broker.ErrNotFound):
		log.InfoContext(ctx, "token refused", "status", http.StatusNotFound)
		return jsonError(tokenapi.CodeNotFound, 0)
	case errors.Is(err, broker.ErrReauthRequired):
		log.InfoContext(ctx, "token refused", "status", http.StatusConflict)
		return jsonError(tokenapi.CodeReauthRequired, 0)
	case errors.As(err, &re) && (re.Class == broker.ClassRejected || re.Class == broker.ClassBadResponse):
		// Not worth a quick retry: the provider refused the request or
		// answered nonsense, which usually takes an operator to fix.
		log.WarnContext(ctx, "token refused", "status", http.StatusBadGateway, "class", re.Class, "cause", err.Error())
		return jsonError(tokenapi.CodeProviderError, re.RetryAfter)
	case errors.As(err, &re) && re.Class != broker.ClassInternal && re.Class != broker.ClassCatalog:
		log.WarnContext(ctx, "token refused", "status", http.StatusServiceUnavailable, "class", re.Class, "cause", err.Error())
		return jsonError(tokenapi.CodeProviderUnavailable, re.RetryAfter)
	}
	log.ErrorContext(ctx, "token failed", "cause", err.Error())
	return jsonError(tokenapi.CodeInternal, 0)
}

func deleteConnection(ctx context.Context, b *broker.Broker, prov, id string) events.APIGatewayV2HTTPResponse {
	log := b.Logger().With("provider", prov, "connection_id", id)
	switch err := b.Delete(ctx, prov, id); {
	case err == nil:
		log.InfoContext(ctx, "connection deleted")
		return events.APIGatewayV2HTTPResponse{StatusCode: http.StatusNoContent, Headers: securityHeaders()}
	case errors.Is(err, broker.ErrNotFound):
		return jsonError(tokenapi.CodeNotFound, 0)
	default:
		log.ErrorContext(ctx, "delete failed", "cause", err.Error())
		return jsonError(tokenapi.CodeInternal, 0)
	}
}

// maxConfirmBody bounds the confirm route's body: a code and its JSON.
const maxConfirmBody = 1024

// confirm makes a pending grant the connection's (broker.Confirm, S24).
// The body is {"confirmation": code}, exactly: anything else is
// invalid_request. The code is never logged.
func confirm(ctx context.Context, b *broker.Broker, req events.APIGatewayV2HTTPRequest, prov, id string) events.APIGatewayV2HTTPResponse {
	body := req.Body
	if req.IsBase64Encoded {
		raw, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return jsonError(tokenapi.CodeInvalidRequest, 0)
		}
		body = string(raw)
	}
	var in tokenapi.Confirm
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if len(body) > maxConfirmBody || dec.Decode(&in) != nil || dec.More() || in.Confirmation == "" {
		return jsonError(tokenapi.CodeInvalidRequest, 0)
	}
	log := b.Logger().With("provider", prov, "connection_id", id)
	c, err := b.Confirm(ctx, prov, id, in.Confirmation)
	switch {
	case err == nil:
		log.InfoContext(ctx, "confirmation accepted")
		out := tokenapi.Status{Provider: c.Provider, ConnectionID: c.ConnectionID, Status: string(c.Status), Scope: c.Scope}
		if !c.ExpiresAt.IsZero() {
			out.ExpiresAt = c.ExpiresAt.UTC().Format(time.RFC3339)
		}
		return JSON(http.StatusOK, out)
	case errors.Is(err, broker.ErrNotFound):
		return jsonError(tokenapi.CodeNotFound, 0)
	case errors.Is(err, broker.ErrConfirmationInvalid):
		log.InfoContext(ctx, "confirmation refused", "status", http.StatusGone)
		return jsonError(tokenapi.CodeConfirmationInvalid, 0)
	case errors.Is(err, broker.ErrConnectionConflict):
		log.WarnContext(ctx, "confirmation refused", "status", http.StatusUnprocessableEntity, "cause", err.Error())
		return jsonError(tokenapi.CodeConnectionConflict, 0)
	}
	log.ErrorContext(ctx, "confirmation failed", "cause", err.Error())
	return jsonError(tokenapi.CodeInternal, 0)
}

// jsonError answers code with its contract status and body
// (tokenapi.Error), and with Retry-After when the code carries it: the
// wait of retryAfter, or 1 s if none is known.
func jsonError(code tokenapi.Code, retryAfter time.Duration) events.APIGatewayV2HTTPResponse {
	resp := JSON(code.Status(), tokenapi.Error{Code: code})
	if code.HasRetryAfter() {
		resp.Headers["Retry-After"] = tokenapi.FormatRetryAfter(retryAfter)
	}
	return resp
}
