package signing

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxLinkLifetime bounds how far ahead a connect link may expire.
const MaxLinkLifetime = time.Hour

// linkTag starts every connect link's canonical string. v2 added the grant
// and connection parameters, v3 the nonce that makes a link single-use; a
// signature of one version never verifies as another.
const linkTag = "oauthbroker-connect-v3"

// NonceBytes is how many random bytes SignLink puts in a link's nonce:
// 128 bits, so that no two links an app mints share one.
const NonceBytes = 16

// ParamPrefix starts the query name of each connection parameter in a
// connect link: param.domain=mail.example.com.
const ParamPrefix = "param."

// The provider-name rule, the one definition of it: the catalog accepts
// only such names (package provider, which imports this one), and a
// connect link's provider field only such names. A name is a path segment
// of every route and part of secret names and store keys, so it is short
// and made of lower-case letters, digits, "_" and "-".
const (
	// MaxProviderName is the longest a provider name may be, in bytes.
	MaxProviderName = 63
	// ProviderNamePattern is the rule as a regular expression, as error
	// messages quote it; ValidProviderName checks it without compiling it.
	ProviderNamePattern = "^" + providerNameShape + "$"

	providerNameShape = "[a-z0-9][a-z0-9_-]{0,62}"
)

// ValidProviderName reports whether s matches ProviderNamePattern.
func ValidProviderName(s string) bool { return providerField.match(s) }

// The fields' shapes, as the patterns error messages quote. They are
// checked by field.match, not by regexp: bounded repetitions such as
// {1,253} make a regexp slow to compile, and every function would pay for
// it at each cold start.
var (
	connectionIDField = field{"[A-Za-z0-9._:@-]{1,128}", 1, 128, "", alnum + "._:@-"}
	providerField     = field{providerNameShape, 1, MaxProviderName, lowerDigits, lowerDigits + "_-"}
	grantField        = field{"[a-z_]{1,32}", 1, 32, "", lower + "_"}
	paramNameField    = field{"[a-z][a-z0-9_]{0,31}", 1, 32, lower, lowerDigits + "_"}
	paramValueField   = field{"[A-Za-z0-9._-]{1,253}", 1, 253, "", alnum + "._-"}
	// A nonce is base64url (RFC 4648 §5, unpadded) of at least NonceBytes
	// bytes: 22 characters carry 132 bits.
	nonceField = field{"[A-Za-z0-9_-]{22,64}", 22, 64, "", alnum + "_-"}
)

const (
	lower       = "abcdefghijklmnopqrstuvwxyz"
	lowerDigits = lower + "0123456789"
	alnum       = lowerDigits + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

// field is a string of min to max bytes from rest, whose first byte is
// from first (rest when first is empty).
type field struct {
	pattern     string
	min, max    int
	first, rest string
}

func (f field) match(s string) bool {
	if len(s) < f.min || len(s) > f.max {
		return false
	}
	for i := range len(s) {
		set := f.rest
		if i == 0 && f.first != "" {
			set = f.first
		}
		if strings.IndexByte(set, s[i]) < 0 {
			return false
		}
	}
	return true
}

func (f field) String() string { return "^" + f.pattern + "$" }

// ValidParamName reports whether name may name a connection parameter:
// a lower-case letter, then up to 31 lower-case letters, digits or "_".
func ValidParamName(name string) bool { return paramNameField.match(name) }

// ValidParamValue reports whether v may be a connection parameter value.
// Values are spliced into provider URLs and headers, so only letters,
// digits, ".", "_" and "-" are allowed (nothing that ends a host, starts a
// path, query, port or userinfo, or a header line), and never "..", which
// could climb a path. The catalog's own pattern narrows each one further.
func ValidParamValue(v string) bool { return paramValueField.match(v) && !strings.Contains(v, "..") }

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
	// Nonce makes the link single-use: authorize records the first use
	// of each nonce and refuses the link from any other browser. SignLink
	// draws a random one (NonceBytes) when it is empty; an app signing in
	// another language draws its own, at least 128 random bits.
	Nonce string
}

// Canonical returns the string a connect link's signature covers: these
// ten lines joined by "\n", no trailing newline —
//
//	oauthbroker-connect-v3
//	<kid>
//	<provider>
//	<connection_id>
//	<return_to>            (exactly as in the query, after URL-decoding; may be empty)
//	<scope>                (scopes joined by one space; empty line if none)
//	<grant>                (empty line if none)
//	<params>               (name=value pairs sorted by name, joined by "&"; empty line if none)
//	<exp>                  (expiry, decimal Unix seconds: no sign, no leading zero)
//	<nonce>                (22 to 64 base64url characters, at least 128 random bits)
//
// The signature is HMAC-SHA256 under the key named by kid, encoded as
// unpadded base64url (RFC 4648 §5). No field may contain a newline;
// parameter names and values use only characters that need no escaping.
func (l Link) Canonical(kid string) string {
	return strings.Join([]string{linkTag, kid, l.Provider, l.ConnectionID, l.ReturnTo,
		strings.Join(l.Scopes, " "), l.Grant, canonicalParams(l.Params), strconv.FormatInt(l.Expires.Unix(), 10), l.Nonce}, "\n")
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
	case !providerField.match(l.Provider):
		return errors.New("provider name is invalid")
	case !connectionIDField.match(l.ConnectionID):
		return fmt.Errorf("connection_id must match %s", connectionIDField)
	case l.ConnectionID == "." || l.ConnectionID == "..":
		// A dot segment could not be named in the token route's URL path.
		return errors.New(`connection_id must not be "." or ".."`)
	case strings.ContainsAny(l.ReturnTo, "\r\n"):
		return errors.New("return_to must be one line")
	case l.Grant != "" && !grantField.match(l.Grant):
		return errors.New("grant is invalid")
	case len(l.Params) > MaxParams:
		return fmt.Errorf("at most %d connection parameters", MaxParams)
	case !nonceField.match(l.Nonce):
		return fmt.Errorf("nonce must match %s", nonceField)
	}
	for _, s := range l.Scopes {
		if s == "" || strings.ContainsAny(s, " \r\n\t") {
			return errors.New("a scope is empty or contains white space")
		}
	}
	for k, v := range l.Params {
		if !ValidParamName(k) || !ValidParamValue(v) {
			return fmt.Errorf("connection parameter names must match %s and values %s without \"..\"", paramNameField, paramValueField)
		}
	}
	return nil
}

// SignLink returns the query string of a connect link for l; the link is
// BASE_URL + "/connect/" + l.Provider + "?" + the result. An empty
// l.Nonce is drawn at random, so every link SignLink mints is new.
func SignLink(ks *Keyset, l Link) (string, error) {
	if l.Nonce == "" {
		n, err := RandomString(NonceBytes)
		if err != nil {
			return "", err
		}
		l.Nonce = n
	}
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
		"nonce":         {l.Nonce},
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
// each) for provider at time now: all fields present and well formed (exp
// in its canonical spelling), a known key id, a valid signature, and an
// expiry in the future (else ErrExpired) but not further than
// MaxLinkLifetime (else ErrTooFarAhead). It returns the authorized Link.
func VerifyLink(ks *Keyset, provider string, q url.Values, now time.Time) (Link, error) {
	exp, ok := parseExp(q.Get("exp"))
	if !ok {
		return Link{}, ErrMalformed
	}
	l := Link{
		Provider:     provider,
		ConnectionID: q.Get("connection_id"),
		ReturnTo:     q.Get("return_to"),
		Expires:      time.Unix(exp, 0),
		Nonce:        q.Get("nonce"),
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
	switch {
	case !now.Before(l.Expires):
		return Link{}, ErrExpired
	case l.Expires.Sub(now) > MaxLinkLifetime:
		return Link{}, ErrTooFarAhead
	}
	return l, nil
}

// ClickLinkLifetime is the life of a link ConnectURL mints without an
// expiry: long enough for a redirect and a slow consent page, short
// enough that a leaked link is soon worthless.
const ClickLinkLifetime = 5 * time.Minute

// ConnectURL returns the full connect link for l under baseURL (the
// broker's BASE_URL). The easy and safe path is to call it when the
// customer clicks "Connect" — in a backend route of the app that checks
// its own session, signs and redirects — rather than when a page renders:
// a zero l.Expires then gives ClickLinkLifetime, and every link is used
// once (its nonce is new).
func ConnectURL(ks *Keyset, baseURL string, l Link) (string, error) {
	if l.Expires.IsZero() {
		l.Expires = time.Now().Add(ClickLinkLifetime)
	}
	q, err := SignLink(ks, l)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(baseURL, "/") + "/connect/" + l.Provider + "?" + q, nil
}
