// Package seedproviders runs test servers that behave as the five seed
// providers document their OAuth 2.0 endpoints (shared/seeds/*.txt): each is
// a providertest.Server configured from its provider's document, serving
// every real URL at Mount(server.URL, realURL).
//
// Where a document contradicts itself the server follows its example; the
// configuration quotes the line relied on.
package seedproviders

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
)

// Real endpoint URLs, as the documents give them.
const (
	OmnisendAuthorizeURL         = "https://app.omnisend.com/oauth2/authorize"
	OmnisendTokenURL             = "https://app.omnisend.com/oauth2/token"
	OutstandAuthorizeURL         = "https://app.outstand.com/oauth/authorize"
	OutstandTokenURL             = "https://app.outstand.com/oauth/token"
	OutstandTokenInfoURL         = "https://app.outstand.com/oauth/token/info"
	VerticalResponseAuthorizeURL = "https://vrapi.verticalresponse.com/api/v1/oauth/authorize"
	VerticalResponseTokenURL     = "https://vrapi.verticalresponse.com/api/v1/oauth/access_token"
	KaisaTokenURL                = "https://auth.freespee.com/oauth2/token"
	GetResponseAuthorizeURL      = "https://app.getresponse.com/oauth2_authorize.html"
	GetResponseTokenURL          = "https://api.getresponse.com/v3/token"
)

// VerticalResponseUserID is the VR user id the VerticalResponse server
// returns with every token.
const VerticalResponseUserID = 1234567

// OmnisendExpiresIn is the expires_in Omnisend sends for tokens that never
// expire.
const OmnisendExpiresIn int64 = 9223372036

// GetResponse360AuthorizeURL is a GetResponse 360 customer's authorization
// endpoint, on the customer's own domain.
func GetResponse360AuthorizeURL(domain string) string {
	return "https://" + domain + "/oauth2_authorize.html"
}

// GetResponse360TokenURL is the GetResponse 360 token endpoint of a region
// ("com" or "pl").
func GetResponse360TokenURL(region string) string {
	return "https://api3.getresponse360." + region + "/v3/token"
}

// Client is the registration the broker holds at a provider.
type Client struct{ ID, Secret, RedirectURI string }

// serve runs cfg with c registered: its id and secret, and its redirect URI
// where cfg has an authorization endpoint.
func (c Client) serve(t testing.TB, cfg providertest.Config) *providertest.Server {
	t.Helper()
	cfg.ClientID, cfg.ClientSecret = c.ID, c.Secret
	if cfg.AuthorizePath != "" {
		cfg.RedirectURI = c.RedirectURI
	}
	return providertest.New(t, cfg)
}

// Mount returns where a test server serves a real provider URL: real
// "https://HOST/PATH" → serverURL + "/HOST/PATH" (the host becomes the first path
// segment, so one catalog URL rewrite rule works for every provider). Query kept.
// It panics if realURL is not an absolute URL with a host.
func Mount(serverURL, realURL string) string {
	u, err := url.Parse(realURL)
	if err != nil || u.Host == "" || u.Opaque != "" {
		panic(fmt.Sprintf("seedproviders.Mount: %q is not an absolute URL", realURL))
	}
	out := strings.TrimSuffix(serverURL, "/") + "/" + u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out
}

// mountPath is the path at which Mount serves realURL.
func mountPath(realURL string) string { return Mount("", realURL) }

// Omnisend serves Omnisend's authorization code flow (omnisend-oauth.txt);
// scopes are the scope values it knows (the document's RESOURCEX RESOURCEY).
func Omnisend(t testing.TB, c Client, scopes []string) *providertest.Server {
	t.Helper()
	return c.serve(t, providertest.Config{
		AuthorizePath: mountPath(OmnisendAuthorizeURL),
		TokenPath:     mountPath(OmnisendTokenURL),
		// "your app must implement Authorization Code Grant flow"; no
		// refresh request is documented.
		GrantTypes: []string{providertest.GrantAuthorizationCode},
		// "POST https://app.omnisend.com/oauth2/token
		//  Content-Type: application/x-www-form-urlencoded
		//  client_id=YOUR_CLIENT_ID
		//  &client_secret=YOUR_CLIENT_SECRET"
		ClientAuth:   providertest.AuthBody,
		TokenRequest: providertest.RequestForm,
		// The table says "scopes | ... Values separated by spaces" but the
		// example sends "&scope=RESOURCEX%20RESOURCEY": the example wins.
		Scopes:         scopes,
		ScopeParam:     "scope",
		ScopeSeparator: " ",
		// "it will never expire (unless the user will decide to revoke it)",
		// yet the response says "expires_in": 9223372036.
		AccessTokenTTL: 0,
		// PKCE is not mentioned.
		RequirePKCE: false,
		// "refresh_token": "RANDOMLY_GENERATED_REFRESH_TOKEN" is issued
		// (NoRefreshTokens false) although no refresh request is documented.
		ExtraResponse: map[string]any{"expires_in": OmnisendExpiresIn},
	})
}

// Outstand serves Outstand's authorization code and refresh flows, its token
// info endpoint and its rate limit (outstand-api-docs.txt).
func Outstand(t testing.TB, c Client) *providertest.Server {
	t.Helper()
	return c.serve(t, providertest.Config{
		AuthorizePath: mountPath(OutstandAuthorizeURL),
		TokenPath:     mountPath(OutstandTokenURL),
		// "Try making an authorized request to https://app.outstand.com/oauth/token/info"
		ResourcePath: mountPath(OutstandTokenInfoURL),
		GrantTypes:   []string{providertest.GrantAuthorizationCode, providertest.GrantRefreshToken},
		// "POST https://app.outstand.com/oauth/token ... with a body of:
		//  {"client_id": [client_id], "client_secret": [client_secret], ...}"
		ClientAuth:   providertest.AuthBody,
		TokenRequest: providertest.RequestJSON,
		// "Access tokens are valid for 2 hours." / "expires_in": 7200
		AccessTokenTTL: 2 * time.Hour,
		// "created_at": 1447820578
		CreatedAt: true,
		// "You'll receive a 200 OK with a new access_token and refresh_token"
		RotateRefreshTokens: true,
		// "This authorization code is good for 10 minutes."
		CodeTTL: 10 * time.Minute,
		// "a default rate limit of 300 requests per 5 minute window ...
		//  the Retry-After header included in all 429 responses"
		RateLimit:  300,
		RateWindow: 5 * time.Minute,
		// "token_type": "bearer"
		ExtraResponse: map[string]any{"token_type": "bearer"},
	})
}

// VerticalResponse serves VerticalResponse's authorization code flow with its
// GET token exchange (verticalresponse-oauth.txt).
func VerticalResponse(t testing.TB, c Client) *providertest.Server {
	t.Helper()
	return c.serve(t, providertest.Config{
		AuthorizePath: mountPath(VerticalResponseAuthorizeURL),
		TokenPath:     mountPath(VerticalResponseTokenURL),
		GrantTypes:    []string{providertest.GrantAuthorizationCode},
		// "request an access token by performing a GET request to
		//  https://vrapi.verticalresponse.com/api/v1/oauth/access_token, passing
		//  in the client ID, client secret, and the redirect URI with the
		//  authorization code" — no grant_type is mentioned, so a request
		//  without one is a code exchange; one that sends it is accepted too.
		ClientAuth:       providertest.AuthBody,
		TokenRequest:     providertest.RequestQuery,
		DefaultGrantType: providertest.GrantAuthorizationCode,
		// "Currently access tokens do not expire. ... If this changes in the
		//  future to use refresh tokens, we will let you know"
		AccessTokenTTL:  0,
		NoRefreshTokens: true,
		// "the authorization code is only valid for five minutes"
		CodeTTL: 5 * time.Minute,
		// "containing the access token type and the access token itself. In
		//  addition the response also includes the VR userid"; the example
		//  body is missing from the document, so the member name and type
		//  (user_id, a number) are assumptions.
		ExtraResponse: map[string]any{"token_type": "bearer", "user_id": VerticalResponseUserID},
	})
}

// Kaisa serves Kaisa's (Freespee's) client credentials token endpoint
// (kaisa-freespee-oauth.txt); it has no authorization endpoint, so
// c.RedirectURI is not used.
func Kaisa(t testing.TB, c Client) *providertest.Server {
	t.Helper()
	return c.serve(t, providertest.Config{
		TokenPath: mountPath(KaisaTokenURL),
		// "grant_type (sent as "client_credentials") client_id client_secret"
		GrantTypes: []string{providertest.GrantClientCredentials},
		ClientAuth: providertest.AuthBody,
		// "For example, you can send a request as follows (for JSON)" and
		// "Or as follows for url-encoded requests"
		TokenRequest: providertest.RequestJSON,
		AlsoAccept:   providertest.RequestForm,
		// "The token will expire in 5 minutes (300 seconds)." The document
		// shows no response body: the RFC 6749 §5.1 members are sent.
		AccessTokenTTL:  300 * time.Second,
		NoRefreshTokens: true,
	})
}

// GetResponse serves GetResponse's authorization code, refresh and client
// credentials flows (getresponse-oauth.txt).
func GetResponse(t testing.TB, c Client) *providertest.Server {
	t.Helper()
	return c.serve(t, getResponseConfig(mountPath(GetResponseAuthorizeURL), mountPath(GetResponseTokenURL)))
}

// GetResponse360 serves one customer's domain; region is "com" or "pl"
// (token endpoint https://api3.getresponse360.com/v3/token or https://api3.getresponse360.pl/v3/token),
// and requires the header X-Domain: domain on token requests.
func GetResponse360(t testing.TB, c Client, domain, region string) *providertest.Server {
	t.Helper()
	if !hostName.MatchString(domain) {
		t.Fatalf("seedproviders: GetResponse 360 domain %q is not a host name", domain)
	}
	if region != "com" && region != "pl" {
		t.Fatalf("seedproviders: GetResponse 360 region %q: want com or pl", region)
	}
	// The seed document stops at "There are some differences when
	// authenticating GetResponse 360 users:"; the URLs and X-Domain header
	// are those of the catalog entry (shared/provider/providers.yaml).
	cfg := getResponseConfig(mountPath(GetResponse360AuthorizeURL(domain)), mountPath(GetResponse360TokenURL(region)))
	cfg.RequireHeaders = map[string]string{"X-Domain": domain}
	return c.serve(t, cfg)
}

var hostName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

func getResponseConfig(authorizePath, tokenPath string) providertest.Config {
	return providertest.Config{
		AuthorizePath: authorizePath,
		TokenPath:     tokenPath,
		// The document also shows the implicit flow; providertest refuses
		// response_type=token (RFC 9700 §2.1.2).
		GrantTypes: []string{providertest.GrantAuthorizationCode, providertest.GrantRefreshToken, providertest.GrantClientCredentials},
		// "curl -u client_id:client_secret https://api.getresponse.com/v3/token
		//  -d 'grant_type=authorization_code&code=ed17c4...'"
		ClientAuth:   providertest.AuthBasic,
		TokenRequest: providertest.RequestForm,
		// "https://app.getresponse.com/oauth2_authorize.html?response_type=code&client_id=_your_client_id_&state=xyz"
		// has no redirect_uri: "we will redirect the browser to redirect url
		// you specify during applicatnio registration".
		RedirectURIOptional: true,
		// "the authorisation_code that should be exchange for the
		//  access_token in the next 10 minutes"
		CodeTTL: 10 * time.Minute,
		// The code exchange answers "expires_in":3600, refresh and client
		// credentials "expires_in": 86400; one lifetime, the code grant's.
		AccessTokenTTL: time.Hour,
		// The refresh text says "issue a new pair of access_token and
		// refresh_token" but its example answers the very refresh_token sent
		// ("170d9f64e781aaa6b3ba036083faba71b2fc4e6c" both times): the
		// example wins.
		EchoRefreshToken: true,
		// "token_type":"bearer", "scope":null in the code exchange example
		// (the refresh and client credentials examples say "Bearer").
		ExtraResponse: map[string]any{"token_type": "bearer", "scope": nil},
	}
}
