package signing

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxLinkLifetime bounds how far ahead a connect link may expire.
const MaxLinkLifetime = time.Hour

// linkTag starts every connect link's canonical string.
const linkTag = "oauthbroker-connect-v1"

var (
	connectionIDRE = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,128}$`)
	providerRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// Link is what an app authorizes when it signs a connect link: this
// customer's connection (ConnectionID) to this provider, these scopes, and
// where to send the browser afterwards.
type Link struct {
	Provider     string
	ConnectionID string
	ReturnTo     string
	// Scopes may be empty: the provider's default scopes are used.
	Scopes  []string
	Expires time.Time
}

// Canonical returns the string a connect link's signature covers: these
// seven lines joined by "\n", no trailing newline —
//
//	oauthbroker-connect-v1
//	<kid>
//	<provider>
//	<connection_id>
//	<return_to>            (exactly as in the query, after URL-decoding)
//	<scope>                (scopes joined by one space; empty line if none)
//	<exp>                  (expiry, decimal Unix seconds)
//
// The signature is HMAC-SHA256 under the key named by kid, encoded as
// unpadded base64url (RFC 4648 §5). No field may contain a newline.
func (l Link) Canonical(kid string) string {
	return strings.Join([]string{linkTag, kid, l.Provider, l.ConnectionID, l.ReturnTo,
		strings.Join(l.Scopes, " "), strconv.FormatInt(l.Expires.Unix(), 10)}, "\n")
}

func (l Link) check() error {
	switch {
	case !providerRE.MatchString(l.Provider):
		return errors.New("provider name is invalid")
	case !connectionIDRE.MatchString(l.ConnectionID):
		return fmt.Errorf("connection_id must match %s", connectionIDRE)
	case l.ReturnTo == "" || strings.ContainsAny(l.ReturnTo, "\r\n"):
		return errors.New("return_to is required and must be one line")
	}
	for _, s := range l.Scopes {
		if s == "" || strings.ContainsAny(s, " \r\n\t") {
			return errors.New("a scope is empty or contains white space")
		}
	}
	return nil
}

// SignLink returns the query string of a connect link for l; the link is
// BASE_URL + "/connect/" + l.Provider + "?" + the result.
func SignLink(ks *Keyset, l Link) (string, error) {
	if err := l.check(); err != nil {
		return "", err
	}
	kid, sig := ks.sign(l.Canonical)
	q := url.Values{
		"connection_id": {l.ConnectionID},
		"return_to":     {l.ReturnTo},
		"exp":           {strconv.FormatInt(l.Expires.Unix(), 10)},
		"kid":           {kid},
		"sig":           {sig},
	}
	if len(l.Scopes) > 0 {
		q.Set("scope", strings.Join(l.Scopes, " "))
	}
	return q.Encode(), nil
}

// VerifyLink checks a connect link's parameters (already parsed, one value
// each) for provider at time now: all fields present and well formed, a
// known key id, a valid signature, and an expiry in the future but not
// further than MaxLinkLifetime. It returns the authorized Link.
func VerifyLink(ks *Keyset, provider string, q url.Values, now time.Time) (Link, error) {
	exp, err := strconv.ParseInt(q.Get("exp"), 10, 64)
	if err != nil {
		return Link{}, ErrMalformed
	}
	l := Link{
		Provider:     provider,
		ConnectionID: q.Get("connection_id"),
		ReturnTo:     q.Get("return_to"),
		Expires:      time.Unix(exp, 0),
	}
	if s := q.Get("scope"); s != "" {
		l.Scopes = strings.Split(s, " ")
	}
	if l.check() != nil || q.Get("kid") == "" || q.Get("sig") == "" {
		return Link{}, ErrMalformed
	}
	if err := ks.verify(q.Get("kid"), l.Canonical(q.Get("kid")), q.Get("sig")); err != nil {
		return Link{}, err
	}
	if !now.Before(l.Expires) || l.Expires.Sub(now) > MaxLinkLifetime {
		return Link{}, ErrExpired
	}
	return l, nil
}

// ConnectURL returns the full connect link for l under baseURL (the
// broker's BASE_URL): the URL an app puts behind its "Connect" button.
func ConnectURL(ks *Keyset, baseURL string, l Link) (string, error) {
	q, err := SignLink(ks, l)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(baseURL, "/") + "/connect/" + l.Provider + "?" + q, nil
}
