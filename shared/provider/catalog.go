// Package provider describes OAuth providers as data and speaks their token
// endpoints.
//
// A provider is an entry in a YAML catalog: the embedded providers.yaml,
// optionally extended or overridden by an operator's file (PROVIDERS_FILE).
// Every difference between providers — token request method and encoding,
// where the client secret goes, scope parameter and separator, expiry rules —
// is a field here, read by the one wire layer. Adding a provider is adding
// an entry, never a branch on its name.
//
// The package holds, one concept a file: the catalog and its loading
// (catalog.go), the entry's schema (schema.go) and its validation
// (validate.go), the templating of connection parameters (resolve.go), the
// HTTP client and the requests it sends (client.go, request.go), the
// failure classes of a token request (errors.go) and the parsing of token
// responses (token.go).
package provider

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

//go:embed providers.yaml
var embedded []byte

// Catalog is a validated set of providers.
type Catalog struct {
	providers map[string]*Provider
}

// Get returns the named provider.
func (c *Catalog) Get(name string) (*Provider, bool) {
	p, ok := c.providers[name]
	return p, ok
}

// Load returns the embedded catalog overlaid with the operator's file at
// path (skipped when path is empty). An entry in the file replaces the
// embedded entry of the same name as a whole.
func Load(path string) (*Catalog, error) {
	sources := []source{{"embedded providers.yaml", embedded}}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("provider catalog: %w", err)
		}
		sources = append(sources, source{path, b})
	}
	return parse(sources...)
}

type source struct {
	name string
	doc  []byte
}

type file struct {
	Providers map[string]*Provider `yaml:"providers"`
}

func parse(sources ...source) (*Catalog, error) {
	c := &Catalog{providers: map[string]*Provider{}}
	for _, s := range sources {
		dec := yaml.NewDecoder(bytes.NewReader(s.doc))
		dec.KnownFields(true)
		var f file
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("provider catalog %s: %w", s.name, err)
		}
		for name, p := range f.Providers {
			if p == nil {
				return nil, fmt.Errorf("provider catalog %s: provider %q: empty entry", s.name, name)
			}
			p.Name = name
			if err := p.normalize(); err != nil {
				return nil, fmt.Errorf("provider catalog %s: provider %q: %w", s.name, name, err)
			}
			c.providers[name] = p
		}
	}
	return c, nil
}
