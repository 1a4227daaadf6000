package signing

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxLinkLifetime bounds how far ahead a connect link may expire.
const MaxLinkLifetime = time.Hour

// linkTag starts every connect link's canonical string. v2 added the grant
// and connection parameters; a v1 signature never verifies as v2.
const linkTag = "oauthbroker-connect-v2"

// ParamPrefix starts the query name of each connection parameter in a
// connect link: param.domain=mail.example.com.
const ParamPrefix = "param."

var (
	connectionIDRE = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,128}$`)
	providerRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	grantRE        = regexp.MustCompile(`^[a-z_]{1,32}$`)
	paramNameRE    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	paramValueRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,253}$`)
)

// ValidParamName reports whether name may name a connection parameter:
// a lower-case letter, then up to 31 lower-case letters, digits or "_".
func ValidParamName(name string) bool { return paramNameRE.MatchString(name) }

// ValidParamValue reports whether v may be a connection parameter value.
// Values are spliced into provider URLs and headers, so only letters,
// digits, ".", "_" and "-" are allowed (nothing that ends a host, starts a
// path, query, port or userinfo, or a header line), and never "..", which
// could climb a path. The catalog's own pattern narrows each one further.
func ValidParamValue(v string) bool { return paramValueRE.MatchString(v) && !strings.Contains(v, "..") }

// MaxParams bounds the connection parameters of one link.
const MaxParams = 8

// Link is what an app authorizes when it signs a connect link: this
// customer's connection (ConnectionID) to this provider, these scopes,
// this grant and these connection parameters, and where to send the
// browser afterwards.
type Link struct {
	Provider     string
	ConnectionID string
	// ReturnTo is where the browser goes afterwards. It may be empty only
	// for a client_credentials connect, which then answers 201 JSON.
	ReturnTo string
	// Scopes may be empty: the provider's default scopes are used.
	Scopes []string
	// Grant may be empty: the provider's default grant (authorization_code
	// when it has one) is used.
	Grant string
	// Params are per-connection values the provider's catalog entry
	// declares (GetResponse 360's customer domain), templated into its
	// URLs and headers.
	Params  map[string]string
	Expires time.Time
}

// Canonical returns the string a connect link's signature covers: these
// nine lines joined by "\n", no trailing newline —
//
//	oauthbroker-connect-v2
//	<kid>
//	<provider>
//	<connection_id>
//	<return_to>            (exactly as in the query, after URL-decoding; may be empty)
//	<scope>                (scopes joined by one space; empty line if none)
//	<grant>                (empty line if none)
//	<params>               (name=value pairs sorted by name, joined by "&"; empty line if none)
//	<exp>                  (expiry, decimal Unix seconds)
//
// The signature is HMAC-SHA256 under the key named by kid, encoded as
// unpadded base64url (RFC 4648 §5). No field may contain a newline;
// parameter names and values use only characters that need no escaping.
func (l Link) Canonical(kid string) string {
	return strings.Join([]string{linkTag, kid, l.Provider, l.ConnectionID, l.ReturnTo,
		strings.Join(l.Scopes, " "), l.Grant, canonicalParams(l.Params), strconv.FormatInt(l.Expires.Unix(), 10)}, "\n")
}

func canonicalParams(p map[string]string) string {
	names := make([]string, 0, len(p))
	for k := range p {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k + "=" + p[k])
	}
	return b.String()
}

func (l Link) check() error {
	switch {
	case !providerRE.MatchString(l.Provider):
		return errors.New("provider name is invalid")
	case !connectionIDRE.MatchString(l.ConnectionID):
		return fmt.Errorf("connection_id must match %s", connectionIDRE)
	case l.ConnectionID == "." || l.ConnectionID == "..":
		// A dot segment could not be named in the token route's URL path.
		return errors.New(`connection_id must not be "." or ".."`)
	case strings.ContainsAny(l.ReturnTo, "\r\n"):
		return errors.New("return_to must be one line")
	case l.Grant != "" && !grantRE.MatchString(l.Grant):
		return errors.New("grant is invalid")
	case len(l.Params) > MaxParams:
		return fmt.Errorf("at most %d connection parameters", MaxParams)
	}
	for _, s := range l.Scopes {
		if s == "" || strings.ContainsAny(s, " \r\n\t") {
			return errors.New("a scope is empty or contains white space")
		}
	}
	for k, v := range l.Params {
		if !ValidParamName(k) || !ValidParamValue(v) {
			return fmt.Errorf("connection parameter names must match %s and values %s without \"..\"", paramNameRE, paramValueRE)
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
	if l.ReturnTo == "" {
		delete(q, "return_to")
	}
	if len(l.Scopes) > 0 {
		q.Set("scope", strings.Join(l.Scopes, " "))
	}
	if l.Grant != "" {
		q.Set("grant", l.Grant)
	}
	for k, v := range l.Params {
		q.Set(ParamPrefix+k, v)
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
	l.Grant = q.Get("grant")
	for k := range q {
		if name, ok := strings.CutPrefix(k, ParamPrefix); ok {
			if l.Params == nil {
				l.Params = map[string]string{}
			}
			l.Params[name] = q.Get(k)
		}
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
