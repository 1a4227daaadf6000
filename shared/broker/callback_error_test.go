package broker_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/broker"
)

// TestCallbackProviderError: an RFC 6749 §4.1.2.1 error from the provider
// goes back to the app as one code of the fixed set (never the provider's
// own text), with the connection id, and stores nothing.
func TestCallbackProviderError(t *testing.T) {
	for _, tc := range []struct {
		sent string
		want broker.Code
	}{
		{"access_denied", broker.CodeAccessDenied},
		{"invalid_scope", broker.CodeInvalidScope},
		{"temporarily_unavailable", broker.CodeProviderUnavailable},
		{"server_error", broker.CodeProviderUnavailable},
		{"unauthorized_client", broker.CodeProviderError},
		{"<script>alert(1)</script>", broker.CodeProviderError},
	} {
		t.Run(tc.sent, func(t *testing.T) {
			f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, codeEntry)
			res, err := f.start("c1")
			if err != nil {
				t.Fatal(err)
			}
			state := queryOf(t, res.Location).Get("state")
			_, err = f.finish(res, url.Values{"state": {state}, "error": {tc.sent}, "error_description": {"the provider's own words"}})
			var e *broker.Error
			if !errors.As(err, &e) {
				t.Fatalf("Callback: %v, want a *broker.Error", err)
			}
			if e.Kind != broker.KindAuthorizationFailed || e.Code != tc.want || e.Cause != broker.CauseAuthorizationError {
				t.Errorf("got kind %s code %s cause %s, want %s %s %s", e.Kind, e.Code, e.Cause, broker.KindAuthorizationFailed, tc.want, broker.CauseAuthorizationError)
			}
			back := queryOf(t, e.ReturnURL)
			if back.Get("error") != string(tc.want) || back.Get("connection_id") != "c1" || len(back) != 2 {
				t.Errorf("return URL query %v, want error=%s and connection_id=c1 only", back, tc.want)
			}
			if s := e.Error(); !strings.Contains(s, string(tc.want)) || strings.Contains(s, "own words") {
				t.Errorf("Error() = %q: want the code, not the provider's text", s)
			}
			if _, err := f.Store.GetConnection(t.Context(), "acme", "c1"); !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("a connection was stored: %v", err)
			}
		})
	}
}

// TestCallbackForgedState: a state that is not the broker's, names a key
// it does not have, or carries another signature is refused before
// anything is read, each with its own cause.
func TestCallbackForgedState(t *testing.T) {
	f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, codeEntry)
	res, err := f.start("c1")
	if err != nil {
		t.Fatal(err)
	}
	state := queryOf(t, res.Location).Get("state")
	parts := strings.Split(state, ".") // kid.nonce.exp.sig
	if len(parts) != 4 {
		t.Fatalf("state %d parts, want 4", len(parts))
	}
	// Another letter of the base64url alphabet (XOR 1 turned a "-" or "_"
	// into a character outside it, about one run in thirty: malformed).
	otherSig := []byte(parts[3])
	otherSig[0] = map[bool]byte{true: 'B', false: 'A'}[otherSig[0] == 'A']
	for _, tc := range []struct {
		name, state string
		want        broker.Cause
	}{
		{"not the broker's form", "garbage", broker.CauseStateMalformed},
		{"unknown key", strings.Join([]string{"nokid", parts[1], parts[2], parts[3]}, "."), broker.CauseUnknownKey},
		{"another signature", strings.Join([]string{parts[0], parts[1], parts[2], string(otherSig)}, "."), broker.CauseBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.finish(res, url.Values{"state": {tc.state}, "code": {"a-code"}})
			var e *broker.Error
			if !errors.As(err, &e) || e.Kind != broker.KindForbidden || e.Cause != tc.want {
				t.Fatalf("Callback: %v, want forbidden with cause %s", err, tc.want)
			}
			if errors.Unwrap(e) == nil || !strings.Contains(e.Error(), string(tc.want)) {
				t.Errorf("Error() = %q, Unwrap() = %v: want the cause and the signing error", e.Error(), errors.Unwrap(e))
			}
		})
	}
	// The real state still works: nothing above consumed it.
	if _, err := f.finish(res, f.prov.Authorize(t, res.Location).Query()); err != nil {
		t.Fatalf("the genuine callback after the forgeries: %v", err)
	}
}

func queryOf(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}
