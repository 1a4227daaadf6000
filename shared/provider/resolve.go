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

// Endpoint is a catalog entry resolved for one connection: every
// placeholder of its URLs and token headers filled with the connection's
// parameter values. Only Resolve makes one, and the Client's methods take
// an Endpoint rather than a *Provider, so an unresolved template never
// reaches the wire.
type Endpoint struct {
	// Provider is the catalog entry, its URLs and headers still templates.
	Provider *Provider
	// AuthorizationURL, TokenURL, RevocationURL and TokenHeaders are the
	// entry's, with the parameter values filled in.
	AuthorizationURL string
	TokenURL         string
	RevocationURL    string
	TokenHeaders     map[string]string
	// Params is the full set of the connection's parameter values,
	// defaults included; nil for an entry that declares none.
	Params map[string]string
}

// Resolve checks a connection's parameters against the declarations —
// no unknown name, every required one present, every value matching its
// pattern — fills in defaults, and returns the entry's endpoint, the
// values templated into its URLs and token headers.
func (p *Provider) Resolve(params map[string]string) (*Endpoint, error) {
	for name := range params {
		if _, ok := p.ConnectionParams[name]; !ok {
			return nil, fmt.Errorf("provider %s takes no connection parameter %q", p.Name, name)
		}
	}
	e := &Endpoint{Provider: p, AuthorizationURL: p.AuthorizationURL, TokenURL: p.TokenURL,
		RevocationURL: p.RevocationURL, TokenHeaders: p.TokenHeaders}
	if len(p.ConnectionParams) == 0 {
		return e, nil // nothing to template: the entry's own values
	}
	vals := make(map[string]string, len(p.ConnectionParams))
	for name, prm := range p.ConnectionParams {
		v, ok := params[name]
		if !ok || v == "" {
			v = prm.Default
		}
		if v == "" {
			return nil, fmt.Errorf("provider %s needs connection parameter %q (%s)", p.Name, name, prm.Description)
		}
		if !prm.matches(v) {
			return nil, fmt.Errorf("connection parameter %q does not match the pattern the catalog allows", name)
		}
		vals[name] = v
	}
	var err error
	fields := []struct {
		name string
		f    *string
	}{{"authorization_url", &e.AuthorizationURL}, {"token_url", &e.TokenURL}, {"revocation_url", &e.RevocationURL}}
	for _, fl := range fields {
		if *fl.f == "" {
			continue
		}
		if *fl.f, err = p.expand(*fl.f, vals); err != nil {
			return nil, err
		}
		if err := checkURL(fl.name, *fl.f); err != nil {
			return nil, err
		}
	}
	e.TokenHeaders = make(map[string]string, len(p.TokenHeaders))
	for k, v := range p.TokenHeaders {
		if e.TokenHeaders[k], err = p.expand(v, vals); err != nil {
			return nil, err
		}
	}
	e.Params = vals
	return e, nil
}
