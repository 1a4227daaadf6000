package provider

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
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

// parseDoc builds a catalog from one YAML document only, without the
// embedded entries, so a test sees just the entries it wrote.
func parseDoc(name string, doc []byte) (*Catalog, error) {
	return parse(source{name, doc})
}

// names returns c's provider names in order.
func names(c *Catalog) []string {
	return slices.Sorted(maps.Keys(c.providers))
}

func TestParseDefaults(t *testing.T) {
	c, err := parseDoc("test", []byte(acme))
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
		t.Fatalf("operator entry missing; have %v", names(c))
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing PROVIDERS_FILE accepted")
	}
	if _, err := Load(""); err != nil {
		t.Fatalf("embedded catalog invalid: %v", err)
	}
}

// TestSeedEntries pins the embedded catalog to the providers' public
// documents (each value is quoted in docs/providers.md).
func TestSeedEntries(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		auth, token       string
		grants            []string
		clientAuth        ClientAuth
		request           TokenRequest
		pkce              bool
		scopeParam        string
		metadata          []string
		issuedAt          string
		defaultExpiry     int64
		tokenTypeOptional bool
	}
	tests := map[string]want{
		// "GET https://app.omnisend.com/oauth2/authorize?...&scope=RESOURCEX%20RESOURCEY";
		// "POST https://app.omnisend.com/oauth2/token Content-Type: application/x-www-form-urlencoded client_id=...&client_secret=..."
		"omnisend": {auth: "https://app.omnisend.com/oauth2/authorize", token: "https://app.omnisend.com/oauth2/token",
			grants: []string{GrantAuthorizationCode}, clientAuth: ClientAuthBody, request: TokenRequestForm, scopeParam: "scope"},
		// "POST https://app.outstand.com/oauth/token with a body of: { "client_id": ..., "client_secret": ... }"
		"outstand": {auth: "https://app.outstand.com/oauth/authorize", token: "https://app.outstand.com/oauth/token",
			grants: []string{GrantAuthorizationCode, GrantRefreshToken}, clientAuth: ClientAuthBody, request: TokenRequestJSON, scopeParam: "scope", issuedAt: "created_at"},
		// "performing a GET request to https://vrapi.verticalresponse.com/api/v1/oauth/access_token, passing in the client ID, client secret"
		"verticalresponse": {auth: "https://vrapi.verticalresponse.com/api/v1/oauth/authorize", token: "https://vrapi.verticalresponse.com/api/v1/oauth/access_token",
			grants: []string{GrantAuthorizationCode}, clientAuth: ClientAuthBody, request: TokenRequestQuery, scopeParam: "scope", metadata: []string{"user_id"}},
		// "grant_type (sent as "client_credentials") client_id client_secret"; "The token will expire in 5 minutes (300 seconds)."
		"kaisa": {token: "https://auth.freespee.com/oauth2/token", grants: []string{GrantClientCredentials}, clientAuth: ClientAuthBody,
			request: TokenRequestJSON, scopeParam: "scope", defaultExpiry: 300, tokenTypeOptional: true},
		// "curl -u client_id:client_secret https://api.getresponse.com/v3/token -d 'grant_type=authorization_code&code=...'"
		"getresponse": {auth: "https://app.getresponse.com/oauth2_authorize.html", token: "https://api.getresponse.com/v3/token",
			grants: []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}, clientAuth: ClientAuthBasic, request: TokenRequestForm, scopeParam: "scope"},
		"getresponse360": {auth: "https://{domain}/oauth2_authorize.html", token: "https://api3.getresponse360.{region}/v3/token",
			grants: []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}, clientAuth: ClientAuthBasic, request: TokenRequestForm, scopeParam: "scope"},
	}
	for name, w := range tests {
		t.Run(name, func(t *testing.T) {
			p, ok := c.Get(name)
			if !ok {
				t.Fatalf("%s not in the embedded catalog", name)
			}
			if p.AuthorizationURL != w.auth || p.TokenURL != w.token || !slices.Equal(p.GrantTypes, w.grants) || p.ClientAuth != w.clientAuth ||
				p.TokenRequest != w.request || p.UsesPKCE() != w.pkce || p.ScopeParam != w.scopeParam || !slices.Equal(p.MetadataFields, w.metadata) ||
				p.Expiry.IssuedAtField != w.issuedAt || p.Expiry.DefaultSeconds != w.defaultExpiry || p.TokenTypeOptional != w.tokenTypeOptional {
				t.Fatalf("entry %+v", p)
			}
			if p.Supports("implicit") || p.Supports("password") {
				t.Fatal("implicit or password grant offered")
			}
		})
	}
	gr, _ := c.Get("getresponse360")
	if gr.TokenHeaders["X-Domain"] != "{domain}" || gr.ConnectionParams["region"].Pattern != "com|pl" || gr.ConnectionParams["region"].Default != "com" ||
		gr.ConnectionParams["domain"].Default != "" {
		t.Errorf("getresponse360 headers %v params %+v", gr.TokenHeaders, gr.ConnectionParams)
	}
	if om, _ := c.Get("omnisend"); om.ScopeSeparator != " " {
		t.Errorf("omnisend scope separator %q", om.ScopeSeparator)
	}
	if len(names(c)) != len(tests) {
		t.Errorf("embedded catalog has %v", names(c))
	}
}
