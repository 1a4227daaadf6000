package provider

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
		{"revoke_on_reconnect without revocation_url", entry("    revoke_on_reconnect: true\n"), "needs revocation_url"},
		{"undeclared placeholder", strings.Replace(entry(""), "https://acme.example/t", "https://{tenant}.acme.example/t", 1), "not a declared connection parameter"},
		{"stray brace", strings.Replace(entry("    connection_params: {tenant: {pattern: '[a-z]+'}}\n"), "https://acme.example/t", "https://{tenant.acme.example/t", 1), "unbalanced"},
		{"param without pattern", entry("    connection_params: {tenant: {default: a}}\n"), "needs a pattern"},
		{"param bad name", entry("    connection_params: {Tenant: {pattern: '[a-z]+'}}\n"), "lower-case letter"},
		{"open token host", strings.Replace(entry("    connection_params: {tenant: {pattern: '[a-z]+'}}\n"), "https://acme.example/t", "https://{tenant}.acme.example/t", 1), "lists its values"},
		{"wildcard token host", strings.Replace(entry("    connection_params: {tenant: {pattern: 'a.c|pl'}}\n"), "https://acme.example/t", "https://api.acme.{tenant}/t", 1), "lists its values"},
		{"param bad pattern", entry("    connection_params: {tenant: {pattern: '[a-z'}}\n"), "pattern"},
		{"param default off pattern", entry("    connection_params: {tenant: {pattern: '[a-z]+', default: A1}}\n"), "default does not match"},
		{"templated http host", strings.Replace(entry("    connection_params: {tenant: {pattern: '[a-z]+'}}\n"), "https://acme.example/t", "http://{tenant}.example/t", 1), "must be https"},
		{"authorization header", entry("    token_headers: {Authorization: x}\n"), "not allowed"},
		{"host header", entry("    token_headers: {host: x}\n"), "not allowed"},
		{"header undeclared placeholder", entry("    token_headers: {X-Domain: '{domain}'}\n"), "bad value"},
		{"issued_at as access_token", entry("    expiry: {issued_at_field: access_token}\n"), "not allowed"},
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
	if len(c.Names()) != len(tests) {
		t.Errorf("embedded catalog has %v", c.Names())
	}
}

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

// The name checks split each pattern into a character class and a length
// bound (cheaper to compile); they must accept exactly what the bounded
// patterns accept.
func TestNameChecksMatchBoundedPatterns(t *testing.T) {
	checks := []struct {
		pattern string
		valid   func(string) bool
	}{
		{namePattern, validName},
		{`^[A-Za-z0-9_.-]{1,64}$`, validParam},
		{`^[A-Za-z0-9-]{1,64}$`, validHeaderName},
	}
	var inputs []string
	for n := range 70 {
		for _, c := range []string{"a", "Z", "0", "-", "_", ".", "é", " ", "\n"} {
			inputs = append(inputs, strings.Repeat(c, n), "a"+strings.Repeat(c, n), strings.Repeat("b", n)+c)
		}
	}
	for _, c := range checks {
		re := regexp.MustCompile(c.pattern)
		for _, s := range inputs {
			if got, want := c.valid(s), re.MatchString(s); got != want {
				t.Errorf("%s: check(%q) = %v, pattern says %v", c.pattern, s, got, want)
			}
		}
	}
}
