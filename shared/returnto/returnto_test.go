package returnto

import (
	"net/url"
	"testing"
)

func TestParseOrigins(t *testing.T) {
	for _, bad := range []string{"", "app.example.com", "https://app.example.com/path", "http://app.example.com", "https://u@app.example.com", "https://app.example.com?x", "ftp://x.example"} {
		if _, err := ParseOrigins(bad); err == nil {
			t.Errorf("ParseOrigins(%q) accepted", bad)
		}
	}
	if _, err := ParseOrigins("https://app.example.com, http://localhost:3000,https://b.example.com:8443/"); err != nil {
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	a, err := ParseOrigins("https://app.example.com,http://localhost:3000,http://127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{
		"https://app.example.com",
		"https://app.example.com/",
		"https://app.example.com/connected?tab=integrations",
		"https://app.example.com:443/x",
		"https://app.example.com//evil.example", // a path on the allowed origin
		"http://localhost:3000/cb",
		"http://127.0.0.1:8080/",
	}
	for _, raw := range allowed {
		if _, err := a.Check(raw); err != nil {
			t.Errorf("Check(%q) rejected", raw)
		}
	}
	// A representative slice of public open-redirect bypass payloads
	// (S15); the full corpus is testdata/open-redirect.txt.
	rejected := []string{
		"", "/connected", "//evil.example", "https:evil.example", "https:/evil.example",
		"https://evil.example", "http://app.example.com/", "https://app.example.com.evil.example/",
		"https://app.example.com@evil.example/", "https://user:pw@app.example.com/",
		"https://evil.example#@app.example.com", "https://evil.example?@app.example.com",
		"https://app.example.com\\@evil.example", "https:\\\\evil.example", "https://app.example.com/\\evil",
		"https://app.example.com/%09/evil", "https://app.example.com/\t/evil", " https://app.example.com/",
		"https://app.example.com/\r\nSet-Cookie: x=1", "https://app.example.com/#frag",
		"https://APP.example.com/", "https://app.exampIe.com/", "https://аpp.example.com/", // Cyrillic а
		"https://app.example.com%2F@evil.example", "https://app.example.com%40evil.example",
		"javascript:alert(1)", "data:text/html,<script>alert(1)</script>", "JaVaScRiPt://app.example.com/%0aalert(1)",
		"https://app.example.com:8443/", "https://app.example.com:0443/", "https://app.example.com:/x",
		"http://localhost:3001/", "http://localhost.evil.example:3000/", "https://[::1]:3000/",
		"https://app.example.com/" + string(make([]byte, MaxLength)),
	}
	for _, raw := range rejected {
		if u, err := a.Check(raw); err == nil {
			t.Errorf("Check(%q) accepted as %v", raw, u)
		}
	}
}

func TestWith(t *testing.T) {
	a, _ := ParseOrigins("https://app.example.com")
	u, err := a.Check("https://app.example.com/done?tab=x&status=old")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := url.Parse(With(u, url.Values{"status": {"connected"}, "connection_id": {"c1"}}))
	if got.Host != "app.example.com" || got.Path != "/done" || got.Query().Get("tab") != "x" ||
		got.Query().Get("status") != "connected" || len(got.Query()["status"]) != 1 {
		t.Fatalf("With = %v", got)
	}
}
