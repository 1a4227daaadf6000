package httpapi

import (
	"net/http"
	"time"
)

// BindingCookiePrefix starts the name of every browser-binding cookie. The
// __Host- prefix makes browsers insist on Secure, Path=/ and no Domain, so
// no sibling subdomain can plant one (S2).
const BindingCookiePrefix = "__Host-oauthbroker-"

// BindingCookieName is the cookie that holds the binding of the flow whose
// state record id is flow (broker.Binding). One name per flow, so two
// tabs can connect at once.
func BindingCookieName(flow string) string { return BindingCookiePrefix + flow[:16] }

// LinkCookiePrefix starts the name of the cookie by which a browser
// shows it is the one that first used a connect link (broker.ConnectResult.Link).
const LinkCookiePrefix = BindingCookiePrefix + "link-"

// LinkCookieName is the cookie that holds the secret for the link whose
// use record id is id. One per link, kept until the link expires.
func LinkCookieName(id string) string { return LinkCookiePrefix + id[:16] }

// linkCookie sets a link's secret for lifetime, with the attributes of a
// binding cookie: it comes back on the top-level navigation that opens
// the link again (SameSite=Lax), as a link from the app is.
func linkCookie(id, secret string, lifetime time.Duration) *http.Cookie {
	c := bindingCookie(id, secret, lifetime)
	c.Name = LinkCookieName(id)
	return c
}

// bindingCookie sets a flow's binding secret for lifetime, or with a
// negative lifetime deletes it: sent back only to this host over HTTPS,
// unreadable by scripts, and on top-level navigations from the provider
// (SameSite=Lax), which is how the callback arrives.
func bindingCookie(flow, secret string, lifetime time.Duration) *http.Cookie {
	maxAge := -1
	if lifetime >= 0 {
		maxAge = int(lifetime.Seconds())
	}
	return &http.Cookie{
		Name:     BindingCookieName(flow),
		Value:    secret,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}
