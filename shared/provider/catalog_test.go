package provider

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const acme = `
providers:
  acme:
    authorization_url: https://acme.example/oauth/authorize
    token_url: https://acme.example/oauth/token
    grant_types: [authorization_code, refresh_token]
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse("test", []byte(acme))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := c.Get("acme")
	if !ok {
		t.Fatal("acme missing")
	}
	if p.ClientAuth != ClientAuthBasic || p.TokenRequest != TokenRequestForm || p.ScopeParam != "scope" ||
		p.ScopeSeparator != " " || !p.UsesPKCE() || p.DisplayName != "acme" || p.MaxLifetime() != DefaultMaxLifetime {
		t.Fatalf("defaults not applied: %+v", p)
	}
	if got := p.RefreshMargin(2 * time.Hour); got != DefaultRefreshMargin {
		t.Errorf("margin(2h) = %v", got)
	}
	if got := p.RefreshMargin(5 * time.Minute); got != 150*time.Second {
		t.Errorf("margin(5m) = %v, want half the lifetime", got)
	}
}

func TestParseRejects(t *testing.T) {
	entry := func(extra string) string {
		return "providers:\n  acme:\n    authorization_url: https://acme.example/a\n    token_url: https://acme.example/t\n    grant_types: [authorization_code]\n" + extra
	}
	tests := []struct{ name, doc, want string }{
		{"unknown field", entry("    tokn_url: x\n"), "field tokn_url not found"},
		{"missing token url", "providers:\n  acme:\n    authorization_url: https://a.example/a\n    grant_types: [authorization_code]\n", "token_url is required"},
		{"missing authorization url", "providers:\n  acme:\n    token_url: https://a.example/t\n    grant_types: [authorization_code]\n", "authorization_url is required"},
		{"http url", strings.Replace(entry(""), "https://acme.example/t", "http://acme.example/t", 1), "must be https"},
		{"userinfo url", strings.Replace(entry(""), "https://acme.example/t", "https://u:p@acme.example/t", 1), "without userinfo"},
		{"implicit grant", strings.Replace(entry(""), "[authorization_code]", "[implicit]", 1), "not allowed"},
		{"password grant", strings.Replace(entry(""), "[authorization_code]", "[password]", 1), "not allowed"},
		{"no grants", strings.Replace(entry(""), "[authorization_code]", "[]", 1), "grant_types is required"},
		{"bad client_auth", entry("    client_auth: header\n"), "client_auth"},
		{"bad token_request", entry("    token_request: xml\n"), "token_request"},
		{"query with basic", entry("    token_request: query\n    client_auth: basic\n"), "needs client_auth body"},
		{"reserved extra param", entry("    authorize_params: {redirect_uri: x}\n"), "not allowed"},
		{"bad scope", entry("    default_scopes: [\"a b\"]\n"), "scope token"},
		{"bad name", "providers:\n  Acme!:\n    token_url: https://a.example/t\n    grant_types: [client_credentials]\n", "name must match"},
		{"credential as metadata", entry("    metadata_fields: [refresh_token]\n"), "credential"},
		{"credential-like metadata", entry("    metadata_fields: [bot_access_Token]\n"), "credential"},
		{"scope as extra param", entry("    authorize_params: {scope: all}\n"), "not allowed"},
		{"request object as extra param", entry("    authorize_params: {request_uri: x}\n"), "not allowed"},
		{"huge expiry", entry("    expiry: {max_seconds: 99999999999}\n"), "100 years"},
		{"require_issuer without issuer", entry("    require_issuer: true\n"), "needs issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestLoopbackHTTPAllowed(t *testing.T) {
	for _, host := range []string{"127.0.0.1:9", "localhost:9", "[::1]:9"} {
		doc := "providers:\n  dev:\n    token_url: http://" + host + "/t\n    grant_types: [client_credentials]\n"
		if _, err := Parse("test", []byte(doc)); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
}

func TestLoadOverlaysOperatorFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "providers.yaml")
	if err := os.WriteFile(path, []byte(acme), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("acme"); !ok {
		t.Fatalf("operator entry missing; have %v", c.Names())
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing PROVIDERS_FILE accepted")
	}
	if _, err := Load(""); err != nil {
		t.Fatalf("embedded catalog invalid: %v", err)
	}
}
