package provider

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolveGetResponse360 checks that per-connection values reach only
// the places the catalog templates, and that no value can point the
// token request at a host of its choosing.
func TestResolveGetResponse360(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Get("getresponse360")
	r, err := p.Resolve(map[string]string{"domain": "mail.acme.com"})
	if err != nil {
		t.Fatal(err)
	}
	if r.AuthorizationURL != "https://mail.acme.com/oauth2_authorize.html" || r.TokenURL != "https://api3.getresponse360.com/v3/token" ||
		r.TokenHeaders["X-Domain"] != "mail.acme.com" || r.Params["region"] != "com" || r.Provider != p {
		t.Fatalf("resolved %+v", r)
	}
	if p.AuthorizationURL != "https://{domain}/oauth2_authorize.html" {
		t.Fatal("Resolve changed the catalog entry")
	}
	r, err = p.Resolve(map[string]string{"domain": "mail.acme.pl", "region": "pl"})
	if err != nil || r.TokenURL != "https://api3.getresponse360.pl/v3/token" {
		t.Fatalf("pl: %v %v", r, err)
	}
	for _, bad := range []map[string]string{
		nil, // domain is required
		{"domain": "evil.example/x"},
		{"domain": "evil.example:8443"},
		{"domain": "user@evil.example"},
		{"domain": "evil.example#"},
		{"domain": "evil.example?x="},
		{"domain": "127.0.0.1"},
		{"domain": "localhost"},
		{"domain": "%2e%2e"},
		{"domain": "EVIL.example"},
		{"domain": "a.example", "region": "org"},
		{"domain": "a.example", "region": "com.evil.example"},
		{"domain": "a.example", "host": "evil.example"},
		{"domain": "a.example\r\nX-Injected: 1"},
	} {
		if r, err := p.Resolve(bad); err == nil {
			t.Errorf("Resolve(%q) = %s %s, want an error", bad, r.AuthorizationURL, r.TokenURL)
		}
	}
	// An entry without parameters takes none.
	o, _ := c.Get("omnisend")
	if _, err := o.Resolve(map[string]string{"domain": "a.example"}); err == nil {
		t.Error("omnisend accepted a connection parameter")
	}
}

// TestOperatorNarrowsAHostParameter: an operator restricts GetResponse
// 360's domain — the host a signed link sends the browser to — to the
// domains it serves, by replacing the entry in its PROVIDERS_FILE with a
// narrower pattern (a list, or a suffix); any other host is refused.
func TestOperatorNarrowsAHostParameter(t *testing.T) {
	entry := strings.ReplaceAll(`providers:
  getresponse360:
    display_name: GetResponse 360
    authorization_url: https://{domain}/oauth2_authorize.html
    token_url: https://api3.getresponse360.{region}/v3/token
    token_headers:
      X-Domain: "{domain}"
    connection_params:
      domain:
        pattern: 'PATTERN'
      region:
        pattern: com|pl
        default: com
    grant_types: [authorization_code, refresh_token]
    client_auth: basic
    token_request: form
    pkce: false
`, "\t", "")
	tests := []struct {
		name, pattern string
		ok, refused   []string
	}{
		{"a list", `mail\.acme\.com|mail\.globex\.pl`, []string{"mail.acme.com", "mail.globex.pl"}, []string{"mail.evil.com", "mail.acme.com.evil.com", "xmail.acme.com"}},
		{"a suffix", `[a-z0-9-]+\.customers\.example\.com`, []string{"acme.customers.example.com"}, []string{"customers.example.com", "acme.customers.example.com.evil.com", "a.b.customers.example.com", "evil.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "providers.yaml")
			if err := os.WriteFile(path, []byte(strings.Replace(entry, "PATTERN", tt.pattern, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := c.Get("getresponse360")
			for _, d := range tt.ok {
				if r, err := p.Resolve(map[string]string{"domain": d}); err != nil || r.AuthorizationURL != "https://"+d+"/oauth2_authorize.html" {
					t.Errorf("%s: %v", d, err)
				}
			}
			for _, d := range tt.refused {
				if _, err := p.Resolve(map[string]string{"domain": d}); err == nil {
					t.Errorf("%s was accepted", d)
				}
			}
		})
	}
}
