// Package testcatalog loads provider catalogs that tests write, by the
// production path: an operator's file (PROVIDERS_FILE) over the embedded
// catalog, read by provider.Load.
package testcatalog

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/oauthbroker/oauthbroker/shared/provider"
)

// Load writes doc, a providers file, to t's temporary directory and
// returns provider.Load of it. Its entries replace embedded ones of the
// same name; the embedded others stay, as they do in a deployment.
func Load(t testing.TB, doc []byte) (*provider.Catalog, error) {
	t.Helper()
	return provider.Load(File(t, doc))
}

// File writes doc, a providers file, to t's temporary directory and
// returns its path: a function's PROVIDERS_FILE.
func File(t testing.TB, doc []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "providers.yaml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
