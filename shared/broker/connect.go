package broker

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// BindingCookiePrefix starts the name of every browser-binding cookie. The
// __Host- prefix makes browsers insist on Secure, Path=/ and no Domain, so
// no sibling subdomain can plant one (S2).
const BindingCookiePrefix = "__Host-oauthbroker-"

// BindingCookieName is the cookie that binds the flow with record id to
// the browser. One name per flow, so two tabs can connect at once.
func BindingCookieName(stateID string) string { return BindingCookiePrefix + stateID[:16] }

// ConnectResult tells the browser where to go next.
type ConnectResult struct {
	// Location is the provider's authorization URL, or for providers
	// without a consent step (client_credentials) the broker's callback.
	Location string
	// Cookie is the browser-binding cookie to set.
	Cookie *http.Cookie
}

// Connect starts a flow for a connect link the app signed: it verifies
// the link, records a single-use state bound to the browser, and returns
// the authorization URL (S1, S2, S6, S17, S18).
func (b *Broker) Connect(ctx context.Context, providerName string, q url.Values) (ConnectResult, error) {
	p, ok := b.Catalog.Get(providerName)
	if !ok {
		return ConnectResult{}, fail(http.StatusNotFound, CodeNotFound, "Unknown provider.", nil)
	}
	ks, err := b.keyset(ctx)
	if err != nil {
		return ConnectResult{}, unavailable(err)
	}
	now := b.now()
	link, err := signing.VerifyLink(ks, p.Name, q, now)
	if errors.Is(err, signing.ErrUnknownKey) {
		if fresh, ok := b.reloadKeyset(ctx); ok {
			ks = fresh
			link, err = signing.VerifyLink(ks, p.Name, q, now)
		}
	}
	if err != nil {
		return ConnectResult{}, fail(http.StatusForbidden, CodeForbidden, "This connect link is not valid or has expired. Please start again from the application.", err)
	}
	if _, err := b.Config.ReturnTo.Check(link.ReturnTo); err != nil {
		return ConnectResult{}, fail(http.StatusForbidden, CodeForbidden, "This connect link's return address is not allowed.", err)
	}
	scopes := link.Scopes
	if len(scopes) == 0 {
		scopes = p.DefaultScopes
	}
	for _, s := range scopes {
		if !provider.ValidScope(s) {
			return ConnectResult{}, fail(http.StatusForbidden, CodeForbidden, "This connect link asks for an invalid scope.", nil)
		}
	}
	creds, err := b.credentials(ctx, p)
	if err != nil {
		return ConnectResult{}, unavailable(err)
	}

	st, err := signing.NewState(ks, p.Name, now, b.stateTTL())
	if err != nil {
		return ConnectResult{}, unavailable(err)
	}
	binding, err := signing.RandomString(32)
	if err != nil {
		return ConnectResult{}, unavailable(err)
	}
	rec := store.StateRecord{
		ID:           st.ID,
		Provider:     p.Name,
		ConnectionID: link.ConnectionID,
		ReturnTo:     link.ReturnTo,
		Scopes:       scopes,
		BindingHash:  signing.Hash(binding),
		ExpiresAt:    st.Expires,
	}
	cfg := oauth2.Config{
		ClientID:    creds.ClientID,
		RedirectURL: b.RedirectURI(p.Name),
		Endpoint:    oauth2.Endpoint{AuthURL: p.AuthorizationURL},
	}
	var opts []oauth2.AuthCodeOption
	if p.UsesPKCE() && p.Supports(provider.GrantAuthorizationCode) {
		rec.PKCEVerifier = oauth2.GenerateVerifier() // 32 random bytes (S6)
		opts = append(opts, oauth2.S256ChallengeOption(rec.PKCEVerifier))
	}
	if len(scopes) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam(p.ScopeParam, strings.Join(scopes, p.ScopeSeparator)))
	}
	for k, v := range p.AuthorizeParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	if err := b.Store.PutState(ctx, rec); err != nil {
		return ConnectResult{}, unavailable(err)
	}
	b.log().InfoContext(ctx, "connect started", "provider", p.Name, "connection_id", link.ConnectionID)
	location := cfg.AuthCodeURL(st.Value, opts...)
	if !p.Supports(provider.GrantAuthorizationCode) {
		// No consent step (client_credentials): the signed link is the
		// consent. The browser goes straight to the callback, which mints
		// the token — so only the callback function ever writes tokens.
		location = b.RedirectURI(p.Name) + "?" + url.Values{"state": {st.Value}}.Encode()
	}
	return ConnectResult{
		Location: location,
		Cookie: &http.Cookie{
			Name:     BindingCookieName(st.ID),
			Value:    binding,
			Path:     "/",
			MaxAge:   int(b.stateTTL().Seconds()),
			Secure:   true,
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
		},
	}, nil
}
