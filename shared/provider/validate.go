package provider

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

// Names of parameters and token headers (provider names follow
// signing.ProviderNamePattern). Each is a character class plus a length
// bound checked apart: a counted repetition such as {1,64} compiles into
// one instruction per repetition, which cost every cold start about a
// millisecond of package initialisation.
var (
	paramRE      = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	headerNameRE = regexp.MustCompile(`^[A-Za-z0-9-]+$`)
)

// validParam reports whether s matches ^[A-Za-z0-9_.-]{1,64}$.
func validParam(s string) bool { return len(s) <= 64 && paramRE.MatchString(s) }

// validHeaderName reports whether s matches ^[A-Za-z0-9-]{1,64}$.
func validHeaderName(s string) bool { return len(s) <= 64 && headerNameRE.MatchString(s) }

// reserved parameters that catalog extras must not override.
var reserved = []string{"response_type", "client_id", "client_secret", "redirect_uri", "state", "code",
	"code_challenge", "code_challenge_method", "code_verifier", "grant_type", "refresh_token", "scope",
	"response_mode", "request", "request_uri", "nonce", "client_assertion", "client_assertion_type", "iss"}

func (p *Provider) normalize() error {
	if !signing.ValidProviderName(p.Name) {
		return errors.New("name must match " + signing.ProviderNamePattern)
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

var reservedHeaders = []string{"authorization", "proxy-authorization", "content-type", "content-length", "host",
	"cookie", "user-agent", "accept", "transfer-encoding", "connection", "te", "trailer", "upgrade", "expect"}

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
