package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// tokenCall invokes the token function as API Gateway would after IAM
// authorization: GET …/token (with rawQuery) or DELETE on the connection.
func (s *stack) tokenCall(method, provider, id, rawQuery string) events.APIGatewayV2HTTPResponse {
	s.T.Helper()
	file, path := "token.json", "/connections/"+provider+"/"+id+"/token"
	if method == http.MethodDelete {
		file, path = "delete.json", "/connections/"+provider+"/"+id
	}
	return invoke(s.T, s.token, sampleevent.Load(s.T, file, func(ev *events.APIGatewayV2HTTPRequest) {
		ev.PathParameters = map[string]string{"provider": provider, "connection_id": id}
		ev.RawPath, ev.RequestContext.HTTP.Path = path, path
		ev.RawQueryString = rawQuery
	}))
}

// connectAcme runs a whole acme connect for id through the functions.
func (s *stack) connectAcme(id string) store.Connection {
	s.T.Helper()
	f := s.Begin(id)
	if resp := s.Deliver("acme", f.CallbackQuery, f.Cookie); !strings.Contains(resp.Headers["Location"], "status=connected") {
		s.T.Fatalf("connect %s: %d %v", id, resp.StatusCode, resp.Headers)
	}
	c, err := s.Conn(id)
	if err != nil {
		s.T.Fatal(err)
	}
	return c
}

// tokenBody decodes a 200 answer of the token route.
type tokenBody struct {
	AccessToken string            `json:"access_token"`
	TokenType   string            `json:"token_type"`
	ExpiresAt   string            `json:"expires_at"`
	Scope       string            `json:"scope"`
	Metadata    map[string]string `json:"metadata"`
}

func decodeToken(t *testing.T, resp events.APIGatewayV2HTTPResponse) tokenBody {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token route: %d %s", resp.StatusCode, resp.Body)
	}
	if resp.Headers["Cache-Control"] != "no-store" || resp.Headers["Content-Type"] != "application/json" {
		t.Errorf("token answer headers %v, want Cache-Control: no-store and JSON", resp.Headers)
	}
	var b tokenBody
	dec := json.NewDecoder(strings.NewReader(resp.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("token body: %v", err)
	}
	return b
}

// wantError checks a JSON error answer of the token route.
func wantError(t *testing.T, resp events.APIGatewayV2HTTPResponse, status int, code string) {
	t.Helper()
	var b map[string]string
	if resp.StatusCode != status || json.Unmarshal([]byte(resp.Body), &b) != nil || b["error"] != code || len(b) != 1 {
		t.Fatalf("answer %d %s, want %d {\"error\":%q}", resp.StatusCode, resp.Body, status, code)
	}
	if resp.Headers["Cache-Control"] != "no-store" {
		t.Errorf("error answer without Cache-Control: no-store")
	}
}

// describe names each lifecycle event as connection type/status.
func describe(evs []moto.Event) string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%v %s/%v", e.Detail["connection_id"], strings.TrimPrefix(e.DetailType, "oauthbroker.connection."), e.Detail["status"]))
	}
	return strings.Join(out, ", ")
}

// TestTokenFunction drives functions/token as the app's backend does,
// through API Gateway's IAM-authorized routes, and checks the lifecycle
// events every function publishes on the way. (Requests the route refuses
// from its contract alone are shared/httpapi's TestTokenRouteRefusesBadRequests.)
func TestTokenFunction(t *testing.T) {
	s := newStack(t)
	c := s.connectAcme("tok-1")
	prov := s.prov

	t.Run("created event", func(t *testing.T) {
		e := s.events.Receive(t, 1, 5*time.Second)[0]
		if e.Source != "oauthbroker" || e.DetailType != "oauthbroker.connection.created" {
			t.Errorf("event %s/%s", e.Source, e.DetailType)
		}
		if e.Detail["provider"] != "acme" || e.Detail["connection_id"] != "tok-1" || e.Detail["status"] != "connected" || e.Detail["timestamp"] == nil {
			t.Errorf("event %s", e.Body)
		}
		for _, secret := range []string{c.AccessToken, c.RefreshToken} {
			if strings.Contains(e.Body, secret) {
				t.Fatal("an event carries a token")
			}
		}
	})

	t.Run("token", func(t *testing.T) {
		before := prov.TokenRequests()
		b := decodeToken(t, s.tokenCall(http.MethodGet, "acme", "tok-1", ""))
		if b.AccessToken != c.AccessToken || b.TokenType != "Bearer" || b.Scope != c.Scope {
			t.Errorf("token answer does not match the stored connection")
		}
		if at, err := time.Parse(time.RFC3339, b.ExpiresAt); err != nil || !at.Equal(c.ExpiresAt) {
			t.Errorf("expires_at %q, stored %v", b.ExpiresAt, c.ExpiresAt)
		}
		if prov.TokenRequests() != before {
			t.Error("a valid token was renewed")
		}
		if !prov.Valid(b.AccessToken) {
			t.Error("the provider does not accept the token handed out")
		}
	})

	t.Run("renewed when due", func(t *testing.T) {
		s.makeDue("tok-1")
		before := prov.TokenRequests()
		b := decodeToken(t, s.tokenCall(http.MethodGet, "acme", "tok-1", ""))
		if prov.TokenRequests() != before+1 || b.AccessToken == c.AccessToken || !prov.Valid(b.AccessToken) {
			t.Fatalf("due token: %d requests, new token %v", prov.TokenRequests()-before, b.AccessToken != c.AccessToken)
		}
		stored, _ := s.Conn("tok-1")
		if stored.AccessToken != b.AccessToken || !stored.Lease.Free(time.Now()) || stored.NextRefresh.Before(time.Now()) {
			t.Errorf("after an on-demand renewal the store holds another token, a lease or a due refresh")
		}
		c = stored
	})

	t.Run("force_refresh", func(t *testing.T) {
		before := prov.TokenRequests()
		b := decodeToken(t, s.tokenCall(http.MethodGet, "acme", "tok-1", "force_refresh=true"))
		if prov.TokenRequests() != before+1 || b.AccessToken == c.AccessToken {
			t.Fatalf("forced refresh: %d requests", prov.TokenRequests()-before)
		}
		if prov.Valid(c.AccessToken) && c.RefreshToken != "" && prov.ValidRefresh(c.RefreshToken) {
			t.Error("the rotated refresh token is still valid")
		}
		c, _ = s.Conn("tok-1")
		decodeToken(t, s.tokenCall(http.MethodGet, "acme", "tok-1", "force_refresh=false"))
		if prov.TokenRequests() != before+1 {
			t.Error("force_refresh=false renewed")
		}
	})

	t.Run("provider down", func(t *testing.T) {
		prov.FailNext(1, http.StatusServiceUnavailable, "text/html", "<html>down</html>", http.Header{"Retry-After": {"30"}})
		resp := s.tokenCall(http.MethodGet, "acme", "tok-1", "force_refresh=true")
		wantError(t, resp, http.StatusServiceUnavailable, "provider_unavailable")
		if ra, err := strconv.Atoi(resp.Headers["Retry-After"]); err != nil || ra < 1 {
			t.Errorf("Retry-After %q", resp.Headers["Retry-After"])
		}
		stored, _ := s.Conn("tok-1")
		if stored.AccessToken != c.AccessToken || stored.RefreshToken != c.RefreshToken || stored.Status != store.StatusConnected || stored.FailureClass != "unavailable" || stored.FailureCount != 1 {
			t.Errorf("after a provider outage: status %s, class %q, count %d, tokens kept %v", stored.Status, stored.FailureClass, stored.FailureCount, stored.AccessToken == c.AccessToken)
		}
		// A plain read still gets the valid token.
		if b := decodeToken(t, s.tokenCall(http.MethodGet, "acme", "tok-1", "")); b.AccessToken != c.AccessToken {
			t.Error("a plain read after the outage did not get the stored token")
		}
	})

	t.Run("provider refuses", func(t *testing.T) {
		prov.FailNext(1, http.StatusBadRequest, "application/json", `{"error":"invalid_scope"}`, nil)
		wantError(t, s.tokenCall(http.MethodGet, "acme", "tok-1", "force_refresh=true"), http.StatusBadGateway, "provider_error")
		stored, _ := s.Conn("tok-1")
		if stored.AccessToken != c.AccessToken || stored.FailureClass != "rejected" {
			t.Errorf("after a refused refresh: class %q, tokens kept %v", stored.FailureClass, stored.AccessToken == c.AccessToken)
		}
	})

	t.Run("provider hangs past the invocation", func(t *testing.T) {
		// The function has 25 s; the provider would answer after 30 s. The
		// answer must be a 503 in time, not a Lambda timeout (API
		// Gateway's bare 500), and the connection must stay renewable.
		prov.Delay(30 * time.Second)
		start := time.Now()
		resp := s.tokenCall(http.MethodGet, "acme", "tok-1", "force_refresh=true")
		prov.Delay(0)
		wantError(t, resp, http.StatusServiceUnavailable, "provider_unavailable")
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("answered after %v", d)
		}
		stored, _ := s.Conn("tok-1")
		if stored.AccessToken != c.AccessToken || stored.RefreshToken != c.RefreshToken || !stored.Lease.Free(time.Now()) || stored.FailureClass != "timeout" {
			t.Errorf("after a hung provider: class %q, lease free %v, tokens kept %v", stored.FailureClass, stored.Lease.Free(time.Now()), stored.AccessToken == c.AccessToken)
		}
	})

	t.Run("reauth", func(t *testing.T) {
		prov.RevokeRefresh(c.RefreshToken) // the user disconnected the app at the provider
		wantError(t, s.tokenCall(http.MethodGet, "acme", "tok-1", "force_refresh=true"), http.StatusConflict, "reauth_required")
		stored, _ := s.Conn("tok-1")
		// The attempt before this one timed out (the hung provider above),
		// so the refusal is recorded as one that may follow a rotation the
		// broker never saw, not as a plain revocation.
		if stored.Status != store.StatusNeedsReauth || stored.FailureClass != string(broker.ClassInvalidGrantAfterNoAnswer) {
			t.Errorf("after invalid_grant: %s/%s", stored.Status, stored.FailureClass)
		}
		before := prov.TokenRequests()
		wantError(t, s.tokenCall(http.MethodGet, "acme", "tok-1", ""), http.StatusConflict, "reauth_required")
		wantError(t, s.tokenCall(http.MethodGet, "acme", "tok-1", "force_refresh=true"), http.StatusConflict, "reauth_required")
		if prov.TokenRequests() != before {
			t.Error("a needs_reauth connection reached the provider")
		}
		// Nothing since the created event: an outage, a refusal and a
		// timeout do not change the status.
		if got := describe(s.events.Receive(t, 1, 5*time.Second)); got != "tok-1 needs_reauth/needs_reauth" {
			t.Errorf("events: %s", got)
		}
	})

	t.Run("delete", func(t *testing.T) {
		d := s.connectAcme("tok-2")
		if !prov.ValidRefresh(d.RefreshToken) {
			t.Fatal("fresh grant not valid")
		}
		resp := s.tokenCall(http.MethodDelete, "acme", "tok-2", "")
		if resp.StatusCode != http.StatusNoContent || resp.Body != "" {
			t.Fatalf("DELETE: %d %s", resp.StatusCode, resp.Body)
		}
		if _, err := s.Conn("tok-2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("connection after DELETE: %v", err)
		}
		if prov.ValidRefresh(d.RefreshToken) || prov.Valid(d.AccessToken) {
			t.Error("the grant was not revoked at the provider (RFC 7009)")
		}
		wantError(t, s.tokenCall(http.MethodDelete, "acme", "tok-2", ""), http.StatusNotFound, "not_found")
		wantError(t, s.tokenCall(http.MethodGet, "acme", "tok-2", ""), http.StatusNotFound, "not_found")
		if got := describe(s.events.Receive(t, 2, 5*time.Second)); got != "tok-2 created/connected, tok-2 deleted/deleted" {
			t.Errorf("events: %s", got)
		}
	})

	t.Run("delete with the provider down", func(t *testing.T) {
		d := s.connectAcme("tok-3")
		prov.FailRevocations(true)
		resp := s.tokenCall(http.MethodDelete, "acme", "tok-3", "")
		prov.FailRevocations(false)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE with the provider hanging: %d %s", resp.StatusCode, resp.Body)
		}
		if _, err := s.Conn("tok-3"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("connection after DELETE: %v", err)
		}
		if !strings.Contains(s.token.Logs(), "revocation failed") {
			t.Error("a failed revocation was not logged")
		}
		if !prov.ValidRefresh(d.RefreshToken) {
			t.Error("the provider was down, yet the grant is revoked")
		}
		if got := describe(s.events.Receive(t, 2, 5*time.Second)); got != "tok-3 created/connected, tok-3 deleted/deleted" {
			t.Errorf("events: %s", got)
		}
	})

	t.Run("recovered and failing events from the schedule", func(t *testing.T) {
		s.connectAcme("tok-4")
		prov.FailNext(1, http.StatusBadGateway, "", "", nil)
		s.makeDue("tok-4")
		s.runRefresh()
		if got, _ := s.Conn("tok-4"); got.FailureCount != 1 {
			t.Fatalf("after a failed sweep: failure count %d", got.FailureCount)
		}
		s.makeDue("tok-4")
		s.runRefresh()
		if got, _ := s.Conn("tok-4"); got.FailureCount != 0 || got.Status != store.StatusConnected {
			t.Fatalf("after a good sweep: %s, %d failures", got.Status, got.FailureCount)
		}
		if got := describe(s.events.Receive(t, 2, 5*time.Second)); got != "tok-4 created/connected, tok-4 recovered/connected" {
			t.Errorf("events: %s", got)
		}
	})
}
