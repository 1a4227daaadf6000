package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/shared/signing"
)

// The binding cookie is set on connect and deleted by the callback that
// uses it up, with the same attributes: the flow's name under the __Host-
// prefix, Path=/, Secure, HttpOnly, SameSite=Lax, and Max-Age the flow's
// lifetime (10 minutes by default), or 0 to delete it.
func TestBindingCookie(t *testing.T) {
	f := newRefusals(t)
	resp, err := Authorize(f.Broker)(context.Background(), events.APIGatewayV2HTTPRequest{
		PathParameters: map[string]string{"provider": "acme"}, RawQueryString: f.link(t, nil, nil)})
	if err != nil || resp.StatusCode != http.StatusFound || len(resp.Cookies) != 2 {
		t.Fatalf("connect answered %d %v, %v", resp.StatusCode, resp.Cookies, err)
	}
	set, err := http.ParseSetCookie(resp.Cookies[0])
	if err != nil {
		t.Fatal(err)
	}
	f.secret(set.Value)
	state, _ := url.Parse(resp.Headers["Location"])
	nonce := strings.Split(state.Query().Get("state"), ".")[1]
	if want := BindingCookiePrefix + signing.Hash(nonce)[:16]; set.Name != want || len(set.Value) < 32 {
		t.Fatalf("cookie %s, want the name %s and a value of 32 characters or more", set.Name, want)
	}
	if got, want := resp.Cookies[0], set.Name+"="+set.Value+"; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax"; got != want {
		t.Errorf("Set-Cookie %q, want %q", got, want)
	}

	back := f.acme.Authorize(t, resp.Headers["Location"]).Query()
	f.secret(back.Get("state"), back.Get("code"))
	resp, err = Callback(f.Broker)(context.Background(), events.APIGatewayV2HTTPRequest{
		PathParameters: map[string]string{"provider": "acme"}, RawQueryString: back.Encode(), Cookies: []string{set.Name + "=" + set.Value}})
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Headers["Location"], refusalReturnTo+"?") {
		t.Fatalf("callback answered %d %v, %v", resp.StatusCode, resp.Headers, err)
	}
	if want := []string{set.Name + "=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"}; len(resp.Cookies) != 1 || resp.Cookies[0] != want[0] {
		t.Errorf("callback cookies %q, want %q", resp.Cookies, want)
	}
}
