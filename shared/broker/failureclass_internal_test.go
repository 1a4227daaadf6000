package broker

import (
	"errors"
	"testing"

	"github.com/oauthbroker/oauthbroker/shared/provider"
)

// TestFailureClass: the class of a transient failure is decided on the
// provider error's typed kinds, never on its Reason prose.
func TestFailureClass(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want FailureClass
	}{
		{"broker's own", internalFailure("x"), ClassInternal},
		{"catalog", catalogFailure("x"), ClassCatalog},
		{"not a provider error", errors.New("x"), ClassInternal},
		{"429", &provider.Error{Failure: provider.FailureUnavailable, Status: 429}, ClassRateLimited},
		{"sent, timed out", &provider.Error{Failure: provider.FailureUnavailable, Transport: provider.TransportTimeout, Unanswered: true}, ClassTimeout},
		{"sent, cut off", &provider.Error{Failure: provider.FailureUnavailable, Transport: provider.TransportNetwork, Unanswered: true}, ClassNoAnswer},
		{"sent, cut off, whatever the prose", &provider.Error{Failure: provider.FailureUnavailable, Transport: provider.TransportNetwork, Unanswered: true, Reason: "timeout"}, ClassNoAnswer},
		{"timed out before sending", &provider.Error{Failure: provider.FailureUnavailable, Transport: provider.TransportTimeout}, ClassUnavailable},
		{"cancelled after sending", &provider.Error{Failure: provider.FailureUnavailable, Transport: provider.TransportCancelled, Unanswered: true}, ClassNoAnswer},
		{"503", &provider.Error{Failure: provider.FailureUnavailable, Status: 503}, ClassUnavailable},
		{"rejected", &provider.Error{Failure: provider.FailureRequest, Status: 400, Code: "invalid_scope"}, ClassRejected},
		{"bad response", &provider.Error{Failure: provider.FailureResponse, Status: 200}, ClassBadResponse},
		{"bad token syntax", &provider.Error{Failure: provider.FailureTokenSyntax, Status: 200}, ClassBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := failureClass(tt.err); got != tt.want {
				t.Errorf("failureClass = %s, want %s", got, tt.want)
			}
		})
	}
}
