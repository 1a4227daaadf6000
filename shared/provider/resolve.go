package provider

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

var placeholderRE = regexp.MustCompile(`\{([^{}]*)\}`)

// sampleParams gives every declared parameter a value, for checking the
// shape of templated URLs when the catalog loads.
func (p *Provider) sampleParams() map[string]string {
	out := map[string]string{}
	for name, prm := range p.ConnectionParams {
		out[name] = prm.Default
		if out[name] == "" {
			out[name] = "example"
		}
	}
	return out
}

// expand substitutes {name} placeholders; every one must be a declared
// parameter with a value.
func (p *Provider) expand(tmpl string, vals map[string]string) (string, error) {
	var bad error
	out := placeholderRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := vals[name]
		if _, declared := p.ConnectionParams[name]; !declared || !ok {
			bad = fmt.Errorf("placeholder %s is not a declared connection parameter", m)
		}
		return v
	})
	if bad == nil && strings.ContainsAny(out, "{}") {
		bad = errors.New("unbalanced braces")
	}
	return out, bad
}

func (p *Provider) checkTemplateURL(field, tmpl string) error {
	u, err := p.expand(tmpl, p.sampleParams())
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return checkURL(field, u)
}

// hostOf is the host part (placeholders unexpanded) of a catalog URL.
func (p *Provider) hostOf(tmpl string) string {
	rest := tmpl[strings.Index(tmpl, "://")+3:]
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// NeedsParams reports whether the entry declares connection parameters,
// so that it must be Resolved before use.
func (p *Provider) NeedsParams() bool { return len(p.ConnectionParams) > 0 }

// Resolve checks a connection's parameters against the declarations —
// no unknown name, every required one present, every value matching its
// pattern — fills in defaults, and returns a copy of the entry with the
// values templated into its URLs and token headers, and the full set of
// values. An entry without parameters resolves to itself.
func (p *Provider) Resolve(params map[string]string) (*Provider, map[string]string, error) {
	for name := range params {
		if _, ok := p.ConnectionParams[name]; !ok {
			return nil, nil, fmt.Errorf("provider %s takes no connection parameter %q", p.Name, name)
		}
	}
	if !p.NeedsParams() {
		return p, nil, nil
	}
	vals := make(map[string]string, len(p.ConnectionParams))
	for name, prm := range p.ConnectionParams {
		v, ok := params[name]
		if !ok || v == "" {
			v = prm.Default
		}
		if v == "" {
			return nil, nil, fmt.Errorf("provider %s needs connection parameter %q (%s)", p.Name, name, prm.Description)
		}
		if !prm.matches(v) {
			return nil, nil, fmt.Errorf("connection parameter %q does not match the pattern the catalog allows", name)
		}
		vals[name] = v
	}
	r := *p
	var err error
	fields := []struct {
		name string
		f    *string
	}{{"authorization_url", &r.AuthorizationURL}, {"token_url", &r.TokenURL}, {"revocation_url", &r.RevocationURL}}
	for _, fl := range fields {
		if *fl.f == "" {
			continue
		}
		if *fl.f, err = p.expand(*fl.f, vals); err != nil {
			return nil, nil, err
		}
		if err := checkURL(fl.name, *fl.f); err != nil {
			return nil, nil, err
		}
	}
	r.TokenHeaders = make(map[string]string, len(p.TokenHeaders))
	for k, v := range p.TokenHeaders {
		if r.TokenHeaders[k], err = p.expand(v, vals); err != nil {
			return nil, nil, err
		}
	}
	r.ConnectionParams = nil // resolved: nothing left to template
	return &r, vals, nil
}
