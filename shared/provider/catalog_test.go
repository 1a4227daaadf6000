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
