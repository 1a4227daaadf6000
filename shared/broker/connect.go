package broker

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// ConnectResult tells the browser where to go next.
type ConnectResult struct {
	// Location is the provider's authorization URL, or for the
	// client_credentials grant (no consent step) the broker's callback.
	Location string
	// Binding is what the browser must keep for the callback; nil for
	// client_credentials, where there is no user at the provider to bind.
	Binding *Binding
}

// Binding ties a flow to the browser that started it (S2): the browser
// keeps Secret for Lifetime (the adapter sets it as a cookie that no
// script and no other site can read) and brings it back to the callback,
// which takes the flow's state only with it. One binding per flow, so two
// tabs can connect at once.
type Binding struct {
	// Flow is the id of the flow's state record, which names the binding.
	Flow string
	// Secret is the random value whose hash the state record holds.
	Secret string
	// Lifetime is how long the flow may take.
	Lifetime time.Duration
}

// Connect starts a flow for a connect link the app signed: it verifies
// the link, records a single-use state bound to the browser, and returns
// the authorization URL (S1, S2, S6, S17, S18). Only a client_credentials
// state is recorded unbound (below).
//
// A client_credentials connect has no consent step: the signed link is the
// consent. Connect then records an unbound single-use state and sends the
// caller on to the callback, which mints and stores the token. Minting
// here instead would save one redirect but give this function the right to
// write tokens; keeping it to "PutItem state#*" is worth the hop. A caller
// that follows redirects (a browser, curl -L, Go's http.Client) lands on
// the link's return_to, or on a 201 JSON answer when the link has none.
func (b *Broker) Connect(ctx context.Context, providerName string, q url.Values) (ConnectResult, error) {
	p, ok := b.Catalog.Get(providerName)
	if !ok {
		return ConnectResult{}, fail(KindNotFound, CodeNotFound, CauseUnknownProvider, "Unknown provider.", nil)
	}
	ks, err := b.keyset(ctx)
	if err != nil {
		return ConnectResult{}, Unavailable(err)
	}
	now := b.now()
	var link signing.Link
	ks, err = b.verifySigned(ctx, ks, func(ks *signing.Keyset) (err error) {
		link, err = signing.VerifyLink(ks, p.Name, q, now)
		return err
	})
	if err != nil {
		return ConnectResult{}, fail(KindForbidden, CodeForbidden, linkCause(err), "This connect link is not valid or has expired. Please start again from the application.", err)
	}
	grant, err := connectGrant(p, link.Grant)
	if err != nil {
		return ConnectResult{}, fail(KindForbidden, CodeForbidden, CauseGrantNotOffered, "This connect link asks for a grant the provider does not offer.", err)
	}
	if link.ReturnTo == "" && grant == provider.GrantAuthorizationCode {
		return ConnectResult{}, fail(KindForbidden, CodeForbidden, CauseReturnToMissing, "This connect link has no return address.", nil)
	}
	if link.ReturnTo != "" {
		if _, err := b.Config.ReturnTo.Check(link.ReturnTo); err != nil {
			return ConnectResult{}, fail(KindForbidden, CodeForbidden, CauseReturnToNotAllowed, "This connect link's return address is not allowed.", err)
		}
	}
	ep, err := p.Resolve(link.Params)
	if err != nil {
		return ConnectResult{}, fail(KindForbidden, CodeForbidden, CauseParamsInvalid, "This connect link's connection parameters are not valid for this provider.", err)
	}
	scopes := link.Scopes
	if len(scopes) == 0 {
		scopes = p.DefaultScopes
	}
	for _, s := range scopes {
		if !provider.ValidScope(s) {
			return ConnectResult{}, fail(KindForbidden, CodeForbidden, CauseScopeInvalid, "This connect link asks for an invalid scope.", nil)
		}
	}
	st, err := signing.NewState(ks, p.Name, now, b.stateTTL())
	if err != nil {
		return ConnectResult{}, Unavailable(err)
	}
	rec := store.StateRecord{
		ID:           st.ID,
		Provider:     p.Name,
		ConnectionID: link.ConnectionID,
		ReturnTo:     link.ReturnTo,
		Scopes:       scopes,
		Grant:        grant,
		Params:       ep.Params,
		ExpiresAt:    st.Expires,
	}
	if grant == provider.GrantClientCredentials {
		rec.BindingHash = store.Unbound
		if err := b.Store.PutState(ctx, rec); err != nil {
			return ConnectResult{}, Unavailable(err)
		}
		b.Logger().InfoContext(ctx, "connect started", "provider", p.Name, "connection_id", link.ConnectionID, "grant", grant)
		return ConnectResult{Location: b.RedirectURI(p.Name) + "?" + url.Values{"state": {st.Value}}.Encode()}, nil
	}

	creds, err := b.credentials(ctx, p)
	if err != nil {
		return ConnectResult{}, Unavailable(err)
	}
	binding, err := signing.RandomString(32)
	if err != nil {
		return ConnectResult{}, Unavailable(err)
	}
	rec.BindingHash = signing.Hash(binding)
	cfg := oauth2.Config{
		ClientID:    creds.ClientID,
		RedirectURL: b.RedirectURI(p.Name),
		Endpoint:    oauth2.Endpoint{AuthURL: ep.AuthorizationURL},
	}
	var opts []oauth2.AuthCodeOption
	if p.UsesPKCE() {
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
		return ConnectResult{}, Unavailable(err)
	}
	b.Logger().InfoContext(ctx, "connect started", "provider", p.Name, "connection_id", link.ConnectionID, "grant", grant)
	return ConnectResult{
		Location: cfg.AuthCodeURL(st.Value, opts...),
		Binding:  &Binding{Flow: st.ID, Secret: binding, Lifetime: b.stateTTL()},
	}, nil
}

// connectGrant picks the grant for a connect: the link's, which the
// provider must offer, or the provider's default — authorization_code when
// it has one, else client_credentials.
func connectGrant(p *provider.Provider, asked string) (string, error) {
	switch {
	case asked == "" && p.Supports(provider.GrantAuthorizationCode):
		return provider.GrantAuthorizationCode, nil
	case asked == "" && p.Supports(provider.GrantClientCredentials):
		return provider.GrantClientCredentials, nil
	case (asked == provider.GrantAuthorizationCode || asked == provider.GrantClientCredentials) && p.Supports(asked):
		return asked, nil
	}
	return "", errors.New("grant not offered by the provider")
}
