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

// ConnectRequest is a connect link as the browser brought it.
type ConnectRequest struct {
	Provider string
	// Query holds the link's parameters, one value each.
	Query url.Values
	// LinkSecret returns the secret the browser keeps for the link whose
	// use is recorded under id (ConnectResult.Link's Flow), if any.
	LinkSecret func(id string) (string, bool)
}

// ConnectResult tells the browser where to go next.
type ConnectResult struct {
	// Location is the provider's authorization URL, or for the
	// client_credentials grant (no consent step) the broker's callback.
	Location string
	// Binding is what the browser must keep for the callback; nil for
	// client_credentials, where there is no user at the provider to bind.
	Binding *Binding
	// Link is what the browser must keep to use the link again (S23):
	// Flow names the link's use record, Secret is the value whose hash it
	// holds, Lifetime runs to the link's expiry.
	Link *Binding
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
// the link, records its use by this browser (a link works from the first
// browser that uses it only, S23), records a single-use state bound to
// the browser, and returns the authorization URL (S1, S2, S6, S17, S18).
// Only a client_credentials state is recorded unbound (below).
//
// A client_credentials connect has no consent step: the signed link is the
// consent. Connect then records an unbound single-use state and sends the
// caller on to the callback, which mints and stores the token. Minting
// here instead would save one redirect but give this function the right to
// write tokens; keeping it to "PutItem state#*" is worth the hop. A caller
// that follows redirects (a browser, curl -L, Go's http.Client) lands on
// the link's return_to, or on a 201 JSON answer when the link has none.
func (b *Broker) Connect(ctx context.Context, req ConnectRequest) (ConnectResult, error) {
	q := req.Query
	p, ok := b.Catalog.Get(req.Provider)
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
	use, err := b.useLink(ctx, link, req.LinkSecret, now)
	if err != nil {
		return ConnectResult{}, err
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
		return ConnectResult{Location: b.RedirectURI(p.Name) + "?" + url.Values{"state": {st.Value}}.Encode(), Link: use}, nil
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
		Link:     use,
	}, nil
}

// useLink records the use of link by this browser, before anything else
// is written (S23): the first use claims the link for the browser, which
// keeps the returned secret until the link expires; a later use from the
// same browser (it brings the secret back) is let through, so a customer
// who went back and clicked again is not stopped; any other is refused.
func (b *Broker) useLink(ctx context.Context, link signing.Link, secretOf func(string) (string, bool), now time.Time) (*Binding, error) {
	id := signing.Hash(link.Nonce)
	secret, ok := "", false
	if secretOf != nil {
		secret, ok = secretOf(id)
	}
	if !ok || secret == "" {
		var err error
		if secret, err = signing.RandomString(32); err != nil {
			return nil, Unavailable(err)
		}
	}
	err := b.Store.UseLink(ctx, store.LinkUse{ID: id, BindingHash: signing.Hash(secret), ExpiresAt: link.Expires})
	switch {
	case errors.Is(err, store.ErrConflict):
		return nil, fail(KindForbidden, CodeForbidden, CauseLinkUsed, "This link was already used. Please start again from the application.", nil)
	case err != nil:
		return nil, Unavailable(err)
	}
	return &Binding{Flow: id, Secret: secret, Lifetime: link.Expires.Sub(now)}, nil
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
