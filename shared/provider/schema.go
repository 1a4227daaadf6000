package provider

import (
	"regexp"
	"slices"
	"time"
)

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
