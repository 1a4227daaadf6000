package broker_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// badTokenAnswers are 200 token responses whose access or refresh token is
// not RFC 6749 Appendix A syntax: stored, they would reach an app's
// Authorization header with a line break in it.
var badTokenAnswers = []struct{ name, body string }{
	{"CR LF in access_token", `{"access_token":"at-bad\r\nX-Injected: yes","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-fine-0123456789"}`},
	{"LF in refresh_token", `{"access_token":"at-fine-0123456789","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-bad\nsecond-line"}`},
	{"non-ASCII access_token", `{"access_token":"at-bad-\u00e9-0123456789","token_type":"Bearer","expires_in":3600}`},
}

func init() {
	logcheck.Register("at-bad\r\nX-Injected: yes", "rt-fine-0123456789", "at-fine-0123456789", "rt-bad\nsecond-line", "at-bad-\u00e9-0123456789")
}

// A code exchange (or client_credentials mint) answered with a malformed
// token ends in provider_error and stores nothing: no connection is
// created, and a reconnect leaves the existing connection as it was.
func TestCallbackRefusesMalformedToken(t *testing.T) {
	ccEntry := "    token_url: TOKEN_URL\n    grant_types: [client_credentials]\n    client_auth: body\n"
	for _, answer := range badTokenAnswers {
		t.Run(answer.name, func(t *testing.T) {
			for _, tt := range []struct {
				name      string
				cfg       providertest.Config
				entry     string
				reconnect bool
			}{
				{"first connect", providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, codeEntry, false},
				{"reconnect", providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, codeEntry, true},
				{"client_credentials", providertest.Config{AccessTokenTTL: time.Hour, ClientAuth: "body"}, ccEntry, false},
			} {
				t.Run(tt.name, func(t *testing.T) {
					f := newFixture(t, tt.cfg, tt.entry)
					var before store.Connection
					if tt.reconnect {
						before = f.connect(t, "c1")
					}
					res, err := f.start("c1")
					if err != nil {
						t.Fatal(err)
					}
					loc, _ := url.Parse(res.Location)
					if !strings.HasPrefix(res.Location, base+"/callback/") {
						loc = f.prov.Authorize(t, res.Location)
					}
					f.prov.FailNext(1, http.StatusOK, "application/json", answer.body, nil)
					_, err = f.finish(res, loc.Query())
					var be *broker.Error
					if !errors.As(err, &be) || be.Code != broker.CodeProviderError || be.Kind != broker.KindProviderRefused || !strings.Contains(be.ReturnURL, "error="+string(broker.CodeProviderError)) {
						t.Fatalf("err = %v, want a provider_error redirect", err)
					}
					got, err := f.Store.GetConnection(context.Background(), "acme", "c1")
					switch {
					case !tt.reconnect && !errors.Is(err, store.ErrNotFound):
						t.Fatalf("a connection was stored: version %d, err %v", got.Version, err)
					case tt.reconnect && (err != nil || got.Version != before.Version || got.AccessToken != before.AccessToken || got.RefreshToken != before.RefreshToken):
						t.Fatalf("the connection changed: version %d → %d, err %v", before.Version, got.Version, err)
					}
				})
			}
		})
	}
}

// A refresh answered with a malformed token fails like any unusable
// response (bad_response, retried with backoff) and keeps the tokens the
// connection had: neither new value is stored.
func TestRefreshRefusesMalformedToken(t *testing.T) {
	for _, answer := range badTokenAnswers {
		t.Run(answer.name, func(t *testing.T) {
			f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour, RotateRefreshTokens: true}, codeEntry)
			c := f.connect(t, "c1")
			f.prov.FailNext(1, http.StatusOK, "application/json", answer.body, nil)
			if sum := f.sweepAt(t, 56*time.Minute); sum.Failed != 1 || sum.Refreshed != 0 {
				t.Fatalf("sweep %+v", sum)
			}
			got := f.get(t, "c1")
			// A well-formed refresh token beside a refused access token is
			// kept (a rotating provider retired the old one); nothing else.
			wantRefresh := c.RefreshToken
			if strings.Contains(answer.body, `"refresh_token":"rt-fine-`) {
				wantRefresh = "rt-fine-0123456789"
			}
			if got.AccessToken != c.AccessToken || got.RefreshToken != wantRefresh || got.FailureClass != string(broker.ClassBadResponse) ||
				got.Status != store.StatusConnected || got.FailureCount != 1 {
				t.Fatalf("after the refresh: same tokens %v/%v, class %q, status %s, count %d",
					got.AccessToken == c.AccessToken, got.RefreshToken == wantRefresh, got.FailureClass, got.Status, got.FailureCount)
			}
		})
	}
}
