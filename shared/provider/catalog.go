// Package provider describes OAuth providers as data and speaks their token
// endpoints.
//
// A provider is an entry in a YAML catalog: the embedded providers.yaml,
// optionally extended or overridden by an operator's file (PROVIDERS_FILE).
// Every difference between providers — token request method and encoding,
// where the client secret goes, scope parameter and separator, expiry rules —
// is a field here, read by the one wire layer in wire.go. Adding a provider
// is adding an entry, never a branch on its name.
package provider

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

//go:embed providers.yaml
var embedded []byte

// Grant types a provider may declare (RFC 6749 §4.1, §6, §4.4). The implicit
// and password grants are deliberately absent (RFC 9700 §2.1.2, §2.4).
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// ClientAuth says where the client credentials travel in a token request.
type ClientAuth string

// Client authentication methods (RFC 6749 §2.3.1).
const (
	// ClientAuthBasic sends client_id and client_secret in an HTTP Basic
	// Authorization header.
	ClientAuthBasic ClientAuth = "basic"
	// ClientAuthBody sends them as request parameters.
	ClientAuthBody ClientAuth = "body"
)

// TokenRequest says how the token request is encoded.
type TokenRequest string

// Token request encodings.
const (
	// TokenRequestForm is the RFC 6749 §4.1.3 POST with an
	// application/x-www-form-urlencoded body.
	TokenRequestForm TokenRequest = "form"
	// TokenRequestJSON is a POST with an application/json object body.
	TokenRequestJSON TokenRequest = "json"
	// TokenRequestQuery is a GET with the parameters in the query string.
	TokenRequestQuery TokenRequest = "query"
)

// Defaults applied to catalog entries that leave a field out.
const (
	// DefaultRefreshMargin is two ticks of the default 5-minute refresh
	// schedule, so one failed attempt still leaves a second before expiry.
	DefaultRefreshMargin = 10 * time.Minute
	// DefaultMaxLifetime is the longest expires_in taken at face value;
	// a longer one (Omnisend sends 9223372036 s) means "does not expire".
	DefaultMaxLifetime = 10 * 365 * 24 * time.Hour
)

// Provider is one catalog entry.
type Provider struct {
	// Name is the catalog key, used in URLs (/connect/{name}) and secret
	// names ({prefix}provider/{name}).
	Name string `yaml:"-"`
	// DisplayName is shown on pages; it defaults to Name.
	DisplayName string `yaml:"display_name"`
	// AuthorizationURL is the authorization endpoint (RFC 6749 §3.1).
	// Required for the authorization_code grant.
	AuthorizationURL string `yaml:"authorization_url"`
	// TokenURL is the token endpoint (RFC 6749 §3.2).
	TokenURL string `yaml:"token_url"`
	// RevocationURL is the token revocation endpoint (RFC 7009), called
	// when a connection is deleted; empty when the provider has none.
	RevocationURL string `yaml:"revocation_url"`
	// RevokeOnReconnect revokes, at RevocationURL, the grant a reconnect
	// replaces. Off by default: many servers keep one grant per user and
	// client, which a new authorization joins (panva's oidc-provider within
	// one browser session does), and revoking any token of it — the
	// replaced one included — ends the new connection too. Set it only for
	// a provider that makes a new grant per authorization and revokes only
	// the grant of the token it is given.
	RevokeOnReconnect bool `yaml:"revoke_on_reconnect"`
	// GrantTypes lists the grants the broker may use with this provider.
	GrantTypes []string `yaml:"grant_types"`
	// ClientAuth is where the client secret goes; default basic.
	ClientAuth ClientAuth `yaml:"client_auth"`
	// TokenRequest is how token requests are encoded; default form.
	TokenRequest TokenRequest `yaml:"token_request"`
	// ScopeParam names the authorization request's scope parameter; default
	// "scope". ScopeSeparator joins scopes; default a space.
	ScopeParam     string `yaml:"scope_param"`
	ScopeSeparator string `yaml:"scope_separator"`
	// DefaultScopes are requested when a connect link names none.
	DefaultScopes []string `yaml:"default_scopes"`
	// AuthorizeParams and TokenParams are fixed extra parameters added to
	// authorization and token requests.
	AuthorizeParams map[string]string `yaml:"authorize_params"`
	TokenParams     map[string]string `yaml:"token_params"`
	// PKCE turns RFC 7636 S256 on (the default) or off.
	PKCE *bool `yaml:"pkce"`
	// Issuer is the provider's RFC 9207 issuer identifier. When set, an
	// `iss` callback parameter must equal it; with RequireIssuer it must
	// also be present.
	Issuer        string `yaml:"issuer"`
	RequireIssuer bool   `yaml:"require_issuer"`
	// TokenTypeOptional accepts token responses without token_type
	// (RFC 6749 §5.1 requires it; some providers omit it).
	TokenTypeOptional bool `yaml:"token_type_optional"`
	// MetadataFields lists non-secret token-response fields kept on the
	// connection (e.g. a provider-side user id). Nothing else is kept.
	MetadataFields []string `yaml:"metadata_fields"`
	// Expiry says how to read token lifetimes.
	Expiry Expiry `yaml:"expiry"`
	// TokenHeaders are extra headers sent with every token request; values
	// may name connection parameters ("{domain}").
	TokenHeaders map[string]string `yaml:"token_headers"`
	// ConnectionParams declares per-connection values supplied in the
	// signed connect link, stored on the connection and templated as
	// {name} into AuthorizationURL, TokenURL and TokenHeaders.
	ConnectionParams map[string]*Param `yaml:"connection_params"`
	// RateLimit caps the broker's own token requests to the provider.
	RateLimit RateLimit `yaml:"rate_limit"`
}

// RateLimit is a request budget: at most Requests per PeriodSeconds. The
// zero value means no budget.
type RateLimit struct {
	Requests      int   `yaml:"requests"`
	PeriodSeconds int64 `yaml:"period_seconds"`
}

// Every returns the steady interval between requests (0 without a budget).
func (r RateLimit) Every() time.Duration {
	if r.Requests <= 0 || r.PeriodSeconds <= 0 {
		return 0
	}
	return time.Duration(r.PeriodSeconds) * time.Second / time.Duration(r.Requests)
}

// Param is a declared connection parameter. Its value must match Pattern
// (anchored at both ends), on top of signing.ValidParamValue: letters,
// digits, ".", "_" and "-" only and no "..", so no value can end a URL's
// host, add a port, userinfo, path segment, query or fragment, or start a
// new header line. A value in a host position can still add DNS labels:
// that is why a placeholder in the token URL's host must have a pattern
// that lists its values (see normalize).
type Param struct {
	// Pattern is a regular expression the whole value must match.
	Pattern string `yaml:"pattern"`
	// Default is used when the link gives no value; without one the
	// parameter is required.
	Default string `yaml:"default"`
	// Description says what the value is, for docs and error messages.
	Description string `yaml:"description"`

	re *regexp.Regexp
}

// Expiry holds a provider's token lifetime rules.
type Expiry struct {
	// DefaultSeconds is assumed when a response has no expires_in; 0 means
	// such a token does not expire.
	DefaultSeconds int64 `yaml:"default_seconds"`
	// MaxSeconds is the longest expires_in taken at face value; longer means
	// "does not expire". Default DefaultMaxLifetime.
	MaxSeconds int64 `yaml:"max_seconds"`
	// RefreshMarginSeconds is how long before expiry the schedule renews a
	// token; default DefaultRefreshMargin, never more than half the lifetime.
	RefreshMarginSeconds int64 `yaml:"refresh_margin_seconds"`
	// IssuedAtField names a response member holding the token's issue time
	// in Unix seconds (Outstand's created_at). When present and within
	// IssuedAtSkew of the request, expires_in counts from it.
	IssuedAtField string `yaml:"issued_at_field"`
}

// IssuedAtSkew is how far an issued-at time may be from the moment the
// token request was sent and still be believed.
const IssuedAtSkew = 5 * time.Minute

// UsesPKCE reports whether authorization requests carry an S256 challenge.
func (p *Provider) UsesPKCE() bool {
	return p.Supports(GrantAuthorizationCode) && (p.PKCE == nil || *p.PKCE)
}

// Supports reports whether the provider declares the grant type.
func (p *Provider) Supports(grant string) bool { return slices.Contains(p.GrantTypes, grant) }

// MaxLifetime is the longest token lifetime taken at face value.
func (p *Provider) MaxLifetime() time.Duration {
	if p.Expiry.MaxSeconds > 0 {
		return time.Duration(p.Expiry.MaxSeconds) * time.Second
	}
	return DefaultMaxLifetime
}

// RefreshMargin returns how long before expiry a token of the given
// lifetime should be renewed.
func (p *Provider) RefreshMargin(lifetime time.Duration) time.Duration {
	m := DefaultRefreshMargin
	if p.Expiry.RefreshMarginSeconds > 0 {
		m = time.Duration(p.Expiry.RefreshMarginSeconds) * time.Second
	}
	return min(m, lifetime/2)
}

// Catalog is a validated set of providers.
type Catalog struct {
	providers map[string]*Provider
}

// Get returns the named provider.
func (c *Catalog) Get(name string) (*Provider, bool) {
	p, ok := c.providers[name]
	return p, ok
}

// Names returns the provider names in order.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.providers))
	for n := range c.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
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

// Parse builds a catalog from YAML documents only (no embedded entries);
// useful for tests and tools.
func Parse(name string, doc []byte) (*Catalog, error) {
	return parse(source{name, doc})
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

// Provider names, and names of parameters and token headers. Each is a
// character class plus a length bound checked apart: a counted repetition
// such as {0,62} compiles into one instruction per repetition, which cost
// every cold start about a millisecond of package initialisation.
const namePattern = `^[a-z0-9][a-z0-9_-]{0,62}$`

var (
	nameRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	paramRE      = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	headerNameRE = regexp.MustCompile(`^[A-Za-z0-9-]+$`)
)

// validName reports whether s matches namePattern.
func validName(s string) bool { return len(s) <= 63 && nameRE.MatchString(s) }

// validParam reports whether s matches ^[A-Za-z0-9_.-]{1,64}$.
func validParam(s string) bool { return len(s) <= 64 && paramRE.MatchString(s) }

// validHeaderName reports whether s matches ^[A-Za-z0-9-]{1,64}$.
func validHeaderName(s string) bool { return len(s) <= 64 && headerNameRE.MatchString(s) }

// reserved parameters that catalog extras must not override.
var reserved = []string{"response_type", "client_id", "client_secret", "redirect_uri", "state", "code",
	"code_challenge", "code_challenge_method", "code_verifier", "grant_type", "refresh_token", "scope",
	"response_mode", "request", "request_uri", "nonce", "client_assertion", "client_assertion_type", "iss"}

func (p *Provider) normalize() error {
	if !validName(p.Name) {
		return errors.New("name must match " + namePattern)
	}
	if p.DisplayName == "" {
		p.DisplayName = p.Name
	}
	if len(p.GrantTypes) == 0 {
		return errors.New("grant_types is required")
	}
	for _, g := range p.GrantTypes {
		switch g {
		case GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials:
		case "implicit", "password":
			return fmt.Errorf("grant type %q is not allowed (RFC 9700 §2.1.2, §2.4)", g)
		default:
			return fmt.Errorf("unknown grant type %q", g)
		}
	}
	if err := p.normalizeParams(); err != nil {
		return err
	}
	if p.Supports(GrantAuthorizationCode) {
		if err := p.checkTemplateURL("authorization_url", p.AuthorizationURL); err != nil {
			return err
		}
	} else if p.Supports(GrantRefreshToken) {
		return errors.New("refresh_token needs authorization_code")
	}
	if err := p.checkTemplateURL("token_url", p.TokenURL); err != nil {
		return err
	}
	if err := p.checkTokenHost(); err != nil {
		return err
	}
	if p.RevocationURL != "" {
		if err := p.checkTemplateURL("revocation_url", p.RevocationURL); err != nil {
			return err
		}
		// The revocation request carries the client secret too.
		if p.hostOf(p.RevocationURL) != p.hostOf(p.TokenURL) {
			return errors.New("revocation_url must be on the token_url's host")
		}
	} else if p.RevokeOnReconnect {
		return errors.New("revoke_on_reconnect needs revocation_url")
	}
	for name, v := range p.TokenHeaders {
		if !validHeaderName(name) || slices.Contains(reservedHeaders, strings.ToLower(name)) {
			return fmt.Errorf("token header %q is not allowed", name)
		}
		if _, err := p.expand(v, p.sampleParams()); err != nil || strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("token header %q: bad value", name)
		}
	}
	switch p.ClientAuth {
	case "":
		p.ClientAuth = ClientAuthBasic
	case ClientAuthBasic, ClientAuthBody:
	default:
		return fmt.Errorf("client_auth %q: want basic or body", p.ClientAuth)
	}
	switch p.TokenRequest {
	case "":
		p.TokenRequest = TokenRequestForm
	case TokenRequestForm, TokenRequestJSON, TokenRequestQuery:
	default:
		return fmt.Errorf("token_request %q: want form, json or query", p.TokenRequest)
	}
	if p.TokenRequest == TokenRequestQuery && p.ClientAuth == ClientAuthBasic {
		// A GET token request with Basic auth is not a combination any
		// documented provider uses; refuse it rather than guess.
		return errors.New("token_request query needs client_auth body")
	}
	if p.ScopeParam == "" {
		p.ScopeParam = "scope"
	} else if !validParam(p.ScopeParam) {
		return fmt.Errorf("scope_param %q is not a parameter name", p.ScopeParam)
	}
	if p.ScopeSeparator == "" {
		p.ScopeSeparator = " "
	}
	for _, s := range p.DefaultScopes {
		if !ValidScope(s) {
			return fmt.Errorf("default scope %q is not an RFC 6749 scope token", s)
		}
	}
	for _, m := range []map[string]string{p.AuthorizeParams, p.TokenParams} {
		for k := range m {
			if !validParam(k) || slices.Contains(reserved, k) || k == p.ScopeParam {
				return fmt.Errorf("extra parameter %q is not allowed", k)
			}
		}
	}
	if p.RequireIssuer && p.Issuer == "" {
		return errors.New("require_issuer needs issuer")
	}
	if p.Issuer != "" {
		if err := checkURL("issuer", p.Issuer); err != nil {
			return err
		}
	}
	if p.Expiry.DefaultSeconds < 0 || p.Expiry.MaxSeconds < 0 || p.Expiry.RefreshMarginSeconds < 0 {
		return errors.New("expiry values must not be negative")
	}
	const century = 100 * 365 * 24 * 3600
	if p.Expiry.DefaultSeconds > century || p.Expiry.MaxSeconds > century || p.Expiry.RefreshMarginSeconds > century {
		return errors.New("expiry values must be at most 100 years")
	}
	if rl := p.RateLimit; (rl.Requests == 0) != (rl.PeriodSeconds == 0) || rl.Requests < 0 || rl.PeriodSeconds < 0 || rl.Requests > 1_000_000 || rl.PeriodSeconds > 86400 {
		return errors.New("rate_limit needs requests (1 to 1000000) and period_seconds (1 to 86400), or neither")
	}
	if f := p.Expiry.IssuedAtField; f != "" && (!validParam(f) || slices.Contains([]string{"access_token", "refresh_token", "expires_in", "token_type", "scope"}, f)) {
		return fmt.Errorf("expiry.issued_at_field %q is not allowed", f)
	}
	for _, f := range p.MetadataFields {
		// Metadata is stored in clear and returned to apps: anything that
		// looks like a credential stays out.
		lf := strings.ToLower(f)
		for _, w := range []string{"token", "secret", "password", "key", "code"} {
			if strings.Contains(lf, w) {
				return fmt.Errorf("metadata field %q looks like a credential", f)
			}
		}
	}
	return nil
}

var (
	placeholderRE   = regexp.MustCompile(`\{([^{}]*)\}`)
	reservedHeaders = []string{"authorization", "proxy-authorization", "content-type", "content-length", "host",
		"cookie", "user-agent", "accept", "transfer-encoding", "connection", "te", "trailer", "upgrade", "expect"}
)

func (p *Provider) normalizeParams() error {
	for name, prm := range p.ConnectionParams {
		if prm == nil || prm.Pattern == "" {
			return fmt.Errorf("connection parameter %q needs a pattern", name)
		}
		if !signing.ValidParamName(name) {
			return fmt.Errorf("connection parameter name %q must be a lower-case letter and up to 31 of [a-z0-9_]", name)
		}
		re, err := regexp.Compile(`^(?:` + prm.Pattern + `)$`)
		if err != nil {
			return fmt.Errorf("connection parameter %q: pattern: %w", name, err)
		}
		prm.re = re
		if prm.Default != "" && !prm.matches(prm.Default) {
			return fmt.Errorf("connection parameter %q: default does not match its pattern", name)
		}
	}
	return nil
}

func (prm *Param) matches(v string) bool { return signing.ValidParamValue(v) && prm.re.MatchString(v) }

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

// literalAlternation matches patterns that list their values: "com|pl".
var literalAlternation = regexp.MustCompile(`^[a-z0-9-]+(\|[a-z0-9-]+)*$`)

// checkTokenHost keeps the token request — which carries the client
// secret — on hosts the catalog names: a placeholder in the token URL's
// host is allowed only when its pattern lists every value it accepts, so
// no connection can send the secret to a host of its choosing.
func (p *Provider) checkTokenHost() error {
	for _, m := range placeholderRE.FindAllStringSubmatch(p.hostOf(p.TokenURL), -1) {
		if prm := p.ConnectionParams[m[1]]; prm == nil || !literalAlternation.MatchString(prm.Pattern) {
			return fmt.Errorf("token_url: placeholder %s in the host needs a pattern that lists its values (like com|pl)", m[0])
		}
	}
	return nil
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

// ValidScope reports whether s is an RFC 6749 §3.3 scope-token.
func ValidScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// checkURL accepts absolute https URLs, and http ones on a loopback host
// (for local providers in tests and development).
func checkURL(field, raw string) error {
	if raw == "" {
		return fmt.Errorf("%s is required", field)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%s %q is not an absolute URL without userinfo or fragment", field, raw)
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && returnto.IsLoopback(u.Hostname()):
		return nil
	default:
		return fmt.Errorf("%s %q must be https (http only on a loopback address)", field, raw)
	}
}
