package provider

import (
	"regexp"
	"strings"
	"testing"
)

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
			_, err := parseDoc("test", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestLoopbackHTTPAllowed(t *testing.T) {
	for _, host := range []string{"127.0.0.1:9", "localhost:9", "[::1]:9"} {
		doc := "providers:\n  dev:\n    token_url: http://" + host + "/t\n    grant_types: [client_credentials]\n"
		if _, err := parseDoc("test", []byte(doc)); err != nil {
			t.Errorf("%s: %v", host, err)
		}
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
