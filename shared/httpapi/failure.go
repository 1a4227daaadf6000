package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/shared/broker"
)

// statuses is the HTTP status of each kind of failed connect or callback:
// the one place a broker.Kind becomes a status, on an error page or, for
// a program, with the error code as JSON. A failure that goes back to the
// app's return URL is a 302 whatever its kind. A kind missing here is
// answered 503 (TestEveryKindHasAStatus fails first).
var statuses = map[broker.Kind]int{
	broker.KindNotFound:            http.StatusNotFound,
	broker.KindMalformed:           http.StatusBadRequest,
	broker.KindForbidden:           http.StatusForbidden,
	broker.KindUnavailable:         http.StatusServiceUnavailable,
	broker.KindAuthorizationFailed: http.StatusBadRequest,
	broker.KindProviderRefused:     http.StatusBadGateway,
	broker.KindProviderUnavailable: http.StatusBadGateway,
	broker.KindConflict:            http.StatusConflict,
}

// statusOf is the status that answers a failure of kind k.
func statusOf(k broker.Kind) int {
	if s, ok := statuses[k]; ok {
		return s
	}
	return http.StatusServiceUnavailable
}

// failure renders a broker error: a redirect to the app when it carries a
// return URL, JSON {"error": code} for a program, else a plain page.
// Unexpected errors become a 503 page, never a Lambda error (which API
// Gateway would turn into a bare 500).
//
// It writes the one log line of every refused or failed connect and
// callback, "<flow> rejected": the status answered, the app's code, the
// fixed cause (a broker.Cause) and the detail of the error behind it,
// which never holds a state, code, cookie, token or link signature.
func failure(ctx context.Context, b *broker.Broker, flow string, err error) events.APIGatewayV2HTTPResponse {
	var e *broker.Error
	if !errors.As(err, &e) {
		e = broker.Unavailable(err)
	}
	var resp events.APIGatewayV2HTTPResponse
	switch status := statusOf(e.Kind); {
	case e.ReturnURL != "":
		resp = Redirect(e.ReturnURL)
	case e.Program:
		resp = JSON(status, map[string]string{"error": string(e.Code)})
	default:
		resp = ErrorPage(status, e.Message)
	}
	level := slog.LevelInfo
	if resp.StatusCode >= 500 {
		level = slog.LevelError
	}
	b.Logger().Log(ctx, level, flow+" rejected", "status", resp.StatusCode, "code", string(e.Code), "cause", string(e.Cause), "detail", detailOf(e))
	return resp
}

// malformed is the refusal of a query string that ParseQuery rejects.
func malformed(message string, err error) *broker.Error {
	return &broker.Error{Kind: broker.KindMalformed, Code: broker.CodeBadRequest, Cause: broker.CauseQueryMalformed, Message: message, Err: err}
}

func detailOf(e *broker.Error) string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}
