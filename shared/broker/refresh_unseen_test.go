package broker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// answerLost delivers requests to the provider, which acts on them, and
// then loses the answer: the broker sees err instead.
type answerLost struct {
	next http.RoundTripper
	err  error
}

func (a *answerLost) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return nil, a.err
}

// lostTimeout is a network timeout (net.Error).
type lostTimeout struct{}

func (lostTimeout) Error() string   { return "i/o timeout" }
func (lostTimeout) Timeout() bool   { return true }
func (lostTimeout) Temporary() bool { return true }

// TestInvalidGrantAfterNoAnswer: the provider rotates the refresh token
// but its answer never reaches the broker (a timeout, or the connection
// cut after the request was sent). The attempt is a transient failure of
// its own class; the next attempt replays the old token and gets
// invalid_grant, which is recorded as invalid_grant_after_no_answer — not
// as the plain invalid_grant of a customer's revocation. (The needs_reauth
// lifecycle event carries the connection's failure class.)
func TestInvalidGrantAfterNoAnswer(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		class broker.FailureClass
	}{
		{"timeout", lostTimeout{}, broker.ClassTimeout},
		{"connection cut after sending", io.ErrUnexpectedEOF, broker.ClassNoAnswer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFaultEnv(t, faultOptions{providers: []brokertest.Provider{{
				Name: "acme", Config: providertest.Config{AccessTokenTTL: time.Hour, RotateRefreshTokens: true},
			}}})
			prov := e.Servers["acme"]
			seeded := e.seed(t, "acme", "c1")
			real := e.net.next
			e.net.next = &answerLost{next: real, err: tt.err}
			if sum, _ := e.sweep(t); sum.Failed != 1 {
				t.Fatalf("sweep with the answer lost: %+v", sum)
			}
			e.net.next = real
			c := e.get(t, "acme", "c1")
			if c.FailureClass != string(tt.class) || c.Status != store.StatusConnected || c.RefreshToken != seeded.RefreshToken {
				t.Fatalf("after the lost answer: class %q status %s", c.FailureClass, c.Status)
			}
			if prov.ValidRefresh(seeded.RefreshToken) {
				t.Fatal("test setup: the provider did not rotate the refresh token")
			}
			e.Clock.Add(2 * time.Hour) // past any backoff
			if sum, _ := e.sweep(t); sum.NeedsReauth != 1 {
				t.Fatalf("replaying sweep: %+v", sum)
			}
			c = e.get(t, "acme", "c1")
			if c.Status != store.StatusNeedsReauth || c.FailureClass != string(broker.ClassInvalidGrantAfterNoAnswer) {
				t.Errorf("after the replay: status %s class %q, want needs_reauth %q", c.Status, c.FailureClass, broker.ClassInvalidGrantAfterNoAnswer)
			}
			e.assertNoCredentialLogged(t)
		})
	}
}

// accessTokenBroken delivers the request, and the provider acts on it, but
// the access token of its answer comes back with a line break in it.
type accessTokenBroken struct{ next http.RoundTripper }

func (a *accessTokenBroken) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		m["access_token"] = fmt.Sprint(m["access_token"]) + "\r\nX-Injected: yes"
		body, _ = json.Marshal(m)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// TestMalformedAccessTokenKeepsRotatedRefreshToken: a rotating provider
// answers a refresh with a malformed access token (refused, never stored)
// and a new refresh token, having retired the old one. The new refresh
// token is kept, so the next attempt renews the connection instead of
// replaying a retired token into needs_reauth.
func TestMalformedAccessTokenKeepsRotatedRefreshToken(t *testing.T) {
	e := newFaultEnv(t, faultOptions{providers: []brokertest.Provider{{
		Name: "acme", Config: providertest.Config{AccessTokenTTL: time.Hour, RotateRefreshTokens: true},
	}}})
	prov := e.Servers["acme"]
	seeded := e.seed(t, "acme", "c1")
	real := e.net.next
	e.net.next = &accessTokenBroken{next: real}
	if sum, _ := e.sweep(t); sum.Failed != 1 {
		t.Fatalf("sweep with the broken access token: %+v", sum)
	}
	e.net.next = real
	c := e.get(t, "acme", "c1")
	if c.FailureClass != string(broker.ClassBadResponse) || c.AccessToken != seeded.AccessToken || strings.ContainsAny(c.AccessToken, "\r\n") {
		t.Fatalf("after the refused answer: class %q, access token changed %v", c.FailureClass, c.AccessToken != seeded.AccessToken)
	}
	if prov.ValidRefresh(seeded.RefreshToken) || !prov.ValidRefresh(c.RefreshToken) {
		t.Fatalf("the rotated refresh token was not kept (old still valid %v, stored valid %v)", prov.ValidRefresh(seeded.RefreshToken), prov.ValidRefresh(c.RefreshToken))
	}
	e.Clock.Add(2 * time.Hour)
	if sum, _ := e.sweep(t); sum.Refreshed != 1 {
		t.Fatalf("next sweep: %+v, want the connection renewed", sum)
	}
	if c := e.get(t, "acme", "c1"); c.Status != store.StatusConnected || !prov.Valid(c.AccessToken) {
		t.Errorf("after recovery: status %s", c.Status)
	}
}
