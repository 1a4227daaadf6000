package returnto

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzCheck: whatever Check accepts is an https URL on the allowed origin,
// with nothing a browser could read as another host.
func FuzzCheck(f *testing.F) {
	a, _ := ParseOrigins("https://app.example.com")
	for _, s := range []string{"https://app.example.com/x", "//evil.example", "https://app.example.com@evil.example", "https:\\\\evil", "https://app.example.com/%09/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := a.Check(raw)
		if err != nil {
			return
		}
		again, err := url.Parse(u.String())
		if err != nil || again.Scheme != "https" || again.Hostname() != "app.example.com" || again.User != nil ||
			strings.ContainsAny(raw, "\\\t\r\n ") || !strings.HasPrefix(raw, "https://app.example.com") {
			t.Fatalf("accepted %q as %v", raw, u)
		}
	})
}
