package e2e

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// Grants the app confirms (S24), through the built functions under the
// emulator with CONFIRM_CONNECTIONS at its default, required.

// pending is a callback that came back pending: where the browser landed
// and the confirmation code it carries.
type pending struct {
	back *url.URL
	code string
}

// pendingConnect runs a whole acme flow for id in a fresh browser and
// checks the callback sent it back pending, with a confirmation code.
func (s *stack) pendingConnect(id string) pending {
	s.T.Helper()
	f := s.Begin(id)
	resp := s.Deliver("acme", f.CallbackQuery, f.Cookie)
	back, err := url.Parse(resp.Headers["Location"])
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(back.String(), strings.Split(returnTo, "?")[0]+"?") {
		s.T.Fatalf("callback: %d %v, want a redirect to the return URL", resp.StatusCode, resp.Headers)
	}
	q := back.Query()
	code := q.Get("confirmation")
	s.remember(code)
	if q.Get("status") != "pending" || q.Get("connection_id") != id || len(code) < 43 || q.Has("code") || q.Has("state") {
		s.T.Fatalf("return URL %s: want status=pending, connection_id=%s and a confirmation code of ≥ 256 bits, nothing else", back, id)
	}
	return pending{back: back, code: code}
}

// confirm invokes the confirm route for id with body through fn (the
// stack's token function when nil).
func (s *stack) confirm(fn *lambdarie.Function, id, body string) events.APIGatewayV2HTTPResponse {
	s.T.Helper()
	if fn == nil {
		fn = s.token
	}
	path := "/connections/acme/" + id + "/confirm"
	return invoke(s.T, fn, sampleevent.Load(s.T, "confirm.json", func(ev *events.APIGatewayV2HTTPRequest) {
		ev.PathParameters = map[string]string{"provider": "acme", "connection_id": id}
		ev.RawPath, ev.RequestContext.HTTP.Path = path, path
		ev.Body = body
	}))
}

func confirmBody(code string) string { return `{"confirmation":"` + code + `"}` }

// wantConfirmed checks a 200 answer of the confirm route.
func wantConfirmed(t *testing.T, resp events.APIGatewayV2HTTPResponse, id string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Body, `"connection_id":"`+id+`"`) ||
		!strings.Contains(resp.Body, `"status":"connected"`) || strings.Contains(resp.Body, "token") {
		t.Fatalf("confirm: %d %s, want 200 with the connection's status and no token", resp.StatusCode, resp.Body)
	}
}

// pendingItems returns the sort keys of id's pending grants in the table.
func (s *stack) pendingItems(id string) []string {
	s.T.Helper()
	var out []string
	for k := range s.aws.Items(s.T) {
		if strings.HasPrefix(k, store.ConnectionRecordKey("acme", id)+"|pending#") {
			out = append(out, k)
		}
	}
	return out
}

// expirePending moves the expiry of id's pending grant ten minutes back,
// as the table stands once PendingTTL has passed (the functions' clock is
// the real one).
func (s *stack) expirePending(id, code string) {
	s.T.Helper()
	past := &types.AttributeValueMemberN{Value: strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)}
	_, err := s.aws.DynamoDB.Client.UpdateItem(s.T.Context(), &dynamodb.UpdateItemInput{
		TableName: &s.aws.Table,
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: store.ConnectionRecordKey("acme", id)},
			"sk": &types.AttributeValueMemberS{Value: "pending#" + signing.Hash(code)},
		},
		UpdateExpression:          strp("SET pending_until = :p, refresh_due = :p"),
		ConditionExpression:       strp("attribute_exists(pk)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": past},
	})
	if err != nil {
		s.T.Fatal(err)
	}
}

func strp(s string) *string { return &s }

// TestS24_PhishedLinkIsNotConfirmed — S24, the phishing attack: a user of
// the app forwards the link minted for their own connection; the victim
// opens it (its first use) and approves at the real provider. The
// victim's grant is stored pending, never under the attacker's connection:
// the token route serves nothing for that id. The app's return handler
// finds that its signed-in user (the victim) does not own the
// connection and does not confirm; once the code expires the refresh
// function revokes the grant at the provider, drops it, and publishes
// abandoned; the code no longer works.
func TestS24_PhishedLinkIsNotConfirmed(t *testing.T) {
	s := newConfirmingStack(t)
	const attacker = "s24-attacker"
	p := s.pendingConnect(attacker) // completed in the victim's browser
	wantError(t, s.tokenCall(http.MethodGet, "acme", attacker, ""), http.StatusNotFound, "not_found")
	if _, err := s.Conn(attacker); err == nil {
		t.Fatal("the victim's grant is stored as the attacker's connection")
	}
	if items := s.pendingItems(attacker); len(items) != 1 {
		t.Fatalf("pending grants %v, want one", items)
	}
	// The pending grant's tokens: the refresh token the provider issued
	// for the victim's consent.
	g, err := s.store.TakePending(t.Context(), store.Key{Provider: "acme", ConnectionID: attacker, Pending: signing.Hash(p.code)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.remember(g.Connection.AccessToken, g.Connection.RefreshToken)
	if err := s.store.PutPending(t.Context(), g); err != nil {
		t.Fatal(err)
	}
	if !s.prov.ValidRefresh(g.Connection.RefreshToken) {
		t.Fatal("the pending grant's refresh token is not valid at the provider")
	}

	s.expirePending(attacker, p.code)
	sum := s.runRefresh()
	if sum["due"] != 1 || sum["revoked"] != 1 {
		t.Fatalf("refresh summary %v, want the unconfirmed grant due and revoked", sum)
	}
	if s.prov.ValidRefresh(g.Connection.RefreshToken) {
		t.Error("the unconfirmed grant is still valid at the provider")
	}
	item := s.aws.Item(t, store.ConnectionRecordKey("acme", attacker), "pending#"+signing.Hash(p.code))
	if _, sealed := item["sealed"]; sealed || item["refresh_due"] != nil {
		t.Errorf("the unconfirmed grant's item still holds credentials or a due time: %v", item)
	}
	evs := s.events.Receive(t, 1, 10*time.Second)
	if len(evs) != 1 || evs[0].DetailType != "oauthbroker.connection.abandoned" || evs[0].Detail["connection_id"] != attacker {
		t.Errorf("events %s, want one abandoned for %s", describe(evs), attacker)
	}
	wantError(t, s.confirm(nil, attacker, confirmBody(p.code)), http.StatusGone, "confirmation_invalid")
	wantError(t, s.tokenCall(http.MethodGet, "acme", attacker, ""), http.StatusNotFound, "not_found")
	if sum := s.runRefresh(); sum["due"] != 0 {
		t.Errorf("a second sweep found %v due", sum)
	}
}

// TestS24_ConfirmationCode — S24: a confirmation code promotes its grant
// once, for its own connection, before it expires; everything else is
// 410 confirmation_invalid and changes nothing; of concurrent
// confirmations exactly one promotes (one created event).
func TestS24_ConfirmationCode(t *testing.T) {
	s := newConfirmingStack(t)
	p := s.pendingConnect("s24-code")
	other := s.pendingConnect("s24-other")

	refused := []struct{ name, id, body string }{
		{"wrong code", "s24-code", confirmBody(strings.Repeat("A", len(p.code)))},
		{"another connection's code", "s24-code", confirmBody(other.code)},
		{"this code for another connection", "s24-other", confirmBody(p.code)},
		{"the code's hash", "s24-code", confirmBody(signing.Hash(p.code))},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			s.Within(t)
			snap := s.Snapshot()
			wantError(t, s.confirm(nil, tt.id, tt.body), http.StatusGone, "confirmation_invalid")
			s.AssertUnchanged(snap)
		})
	}
	for _, body := range []string{"", "{}", `{"confirmation":""}`, confirmBody(p.code) + "x", `{"confirmation":"` + p.code + `","extra":1}`} {
		wantError(t, s.confirm(nil, "s24-code", body), http.StatusBadRequest, "invalid_request")
	}

	// Two confirmations at once: one promotes, the other is refused.
	answers := make([]events.APIGatewayV2HTTPResponse, 2)
	fns := []*lambdarie.Function{s.token, s.extraFunction("./functions/token", nil)}
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() { answers[i] = s.confirm(fns[i], "s24-code", confirmBody(p.code)) })
	}
	wg.Wait()
	ok := 0
	for _, a := range answers {
		switch a.StatusCode {
		case http.StatusOK:
			ok++
			wantConfirmed(t, a, "s24-code")
		default:
			wantError(t, a, http.StatusGone, "confirmation_invalid")
		}
	}
	if ok != 1 {
		t.Fatalf("%d of two concurrent confirmations promoted, want exactly one", ok)
	}
	evs := s.events.Receive(t, 1, 10*time.Second)
	if len(evs) != 1 || evs[0].DetailType != "oauthbroker.connection.created" {
		t.Errorf("events %s, want one created", describe(evs))
	}
	tok := decodeToken(t, s.tokenCall(http.MethodGet, "acme", "s24-code", ""))
	s.remember(tok.AccessToken)
	if !s.prov.Valid(tok.AccessToken) {
		t.Error("the confirmed connection serves no valid token")
	}
	// Used: the code works no more.
	wantError(t, s.confirm(nil, "s24-code", confirmBody(p.code)), http.StatusGone, "confirmation_invalid")

	// Expired: refused though its item is still in the table.
	s.expirePending("s24-other", other.code)
	wantError(t, s.confirm(nil, "s24-other", confirmBody(other.code)), http.StatusGone, "confirmation_invalid")
}

// TestS24_ReconnectWaitsForConfirmation — S24: a reconnect that is still
// pending leaves the connection serving the tokens it held; the pending
// grant lives in the table only, so a token function that never saw the
// callback (a new instance: nothing survives a crash but the table)
// confirms it, and from then on the connection serves the new grant.
func TestS24_ReconnectWaitsForConfirmation(t *testing.T) {
	s := newConfirmingStack(t)
	first := s.pendingConnect("s24-re")
	wantConfirmed(t, s.confirm(nil, "s24-re", confirmBody(first.code)), "s24-re")
	before := decodeToken(t, s.tokenCall(http.MethodGet, "acme", "s24-re", ""))
	s.remember(before.AccessToken)
	s.events.Receive(t, 1, 10*time.Second) // created

	again := s.pendingConnect("s24-re")
	still := decodeToken(t, s.tokenCall(http.MethodGet, "acme", "s24-re", ""))
	if still.AccessToken != before.AccessToken || !s.prov.Valid(still.AccessToken) {
		t.Fatal("a pending reconnect changed the tokens the connection serves")
	}
	fresh := s.extraFunction("./functions/token", nil)
	wantConfirmed(t, s.confirm(fresh, "s24-re", confirmBody(again.code)), "s24-re")
	after := decodeToken(t, s.tokenCall(http.MethodGet, "acme", "s24-re", ""))
	s.remember(after.AccessToken)
	if after.AccessToken == before.AccessToken || !s.prov.Valid(after.AccessToken) {
		t.Fatal("after the confirmation the connection does not serve the new grant")
	}
	if items := s.pendingItems("s24-re"); len(items) != 0 {
		t.Errorf("pending grants left after the confirmations: %v", items)
	}
}
