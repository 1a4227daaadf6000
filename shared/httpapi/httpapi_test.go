package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

func TestParseQuery(t *testing.T) {
	tests := []struct {
		raw string
		ok  bool
	}{
		{"code=a&state=b", true},
		{"", true},
		{"state=a&state=b", false}, // S11
		{"code=a&code=a&state=b", false},
		{"state=a;b", false},
		{"state=%zz", false},
	}
	for _, tt := range tests {
		if _, err := ParseQuery(tt.raw); (err == nil) != tt.ok {
			t.Errorf("ParseQuery(%q) err = %v, want ok=%v", tt.raw, err, tt.ok)
		}
	}
}

func TestCookie(t *testing.T) {
	tests := []struct {
		cookies []string
		want    string
		ok      bool
	}{
		{[]string{"a=1", "__Host-x=v"}, "v", true},
		{[]string{"a=1; __Host-x=v"}, "v", true},
		{[]string{"a=1"}, "", false},
		{[]string{"__Host-x=v", "__Host-x=w"}, "", false}, // ambiguous: reject
		{nil, "", false},
	}
	for _, tt := range tests {
		got, ok := Cookie(tt.cookies, "__Host-x")
		if got != tt.want || ok != tt.ok {
			t.Errorf("Cookie(%q) = %q, %v", tt.cookies, got, ok)
		}
	}
}

func TestErrorPageEscapesAndHeaders(t *testing.T) {
	resp := ErrorPage(403, `<svg/onload=alert(1)>`)
	if strings.Contains(resp.Body, "<svg") || !strings.Contains(resp.Body, "&lt;svg") {
		t.Fatalf("body not escaped: %s", resp.Body)
	}
	for k, want := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "Content-Type": "text/html; charset=utf-8"} {
		if resp.Headers[k] != want {
			t.Errorf("%s = %q", k, resp.Headers[k])
		}
	}
	if r := Redirect("https://app.example.com/"); r.StatusCode != 302 || r.Headers["Location"] != "https://app.example.com/" || r.Headers["Cache-Control"] != "no-store" {
		t.Fatalf("redirect %+v", r)
	}
}

func TestCreatedCarriesNoToken(t *testing.T) {
	c := &broker.Connection{Provider: "kaisa", ConnectionID: "svc", Status: store.StatusConnected, AccessToken: "tok-secret",
		TokenType: "Bearer", ExpiresAt: time.Unix(1_800_000_300, 0), Scope: "read"}
	resp := Created(c)
	if resp.StatusCode != http.StatusCreated || resp.Headers["Content-Type"] != "application/json" || resp.Headers["Cache-Control"] != "no-store" {
		t.Fatalf("response %+v", resp)
	}
	want := `{"provider":"kaisa","connection_id":"svc","status":"connected","expires_at":"2027-01-15T08:05:00Z","scope":"read"}`
	if resp.Body != want {
		t.Fatalf("body %s, want %s", resp.Body, want)
	}
	if resp := Created(&broker.Connection{Provider: "p", ConnectionID: "c", Status: store.StatusConnected}); strings.Contains(resp.Body, "expires_at") {
		t.Fatalf("non-expiring token reported an expiry: %s", resp.Body)
	}
}
