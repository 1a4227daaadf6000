// Package returnto decides where the broker may send a browser back to.
//
// A return URL must be absolute, https (http only for loopback origins,
// for local development), and its origin must exactly equal one of the
// configured origins (RETURN_ORIGINS). Anything a browser might read
// differently from Go's parser — backslashes, control or non-ASCII
// characters, userinfo, white space — is refused outright rather than
// normalised (RFC 9700 §4.11, S15).
package returnto

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// MaxLength bounds a return URL.
const MaxLength = 2048

// ErrNotAllowed is returned for every rejected return URL.
var ErrNotAllowed = errors.New("return_to is not an allowed URL")

// Allowlist is a set of exact origins ("https://app.example.com",
// "http://localhost:3000").
type Allowlist struct {
	origins map[string]bool
}

// ParseOrigins reads a comma-separated list of origins. Each must be
// scheme://host[:port] with nothing else; https, or http on a loopback host.
func ParseOrigins(csv string) (Allowlist, error) {
	a := Allowlist{origins: map[string]bool{}}
	for _, raw := range strings.Split(csv, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := parse(raw)
		if err != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery {
			return Allowlist{}, fmt.Errorf("RETURN_ORIGINS: %q is not an origin (scheme://host[:port])", raw)
		}
		a.origins[origin(u)] = true
	}
	if len(a.origins) == 0 {
		return Allowlist{}, errors.New("RETURN_ORIGINS: no origin configured")
	}
	return a, nil
}

// Check returns the parsed return URL if it may be redirected to.
func (a Allowlist) Check(raw string) (*url.URL, error) {
	u, err := parse(raw)
	if err != nil || !a.origins[origin(u)] {
		return nil, ErrNotAllowed
	}
	return u, nil
}

// With returns u with the query parameters set (replacing any of the same
// names), as a string for a Location header.
func With(u *url.URL, params url.Values) string {
	c := *u
	q := c.Query()
	for k, v := range params {
		q[k] = v
	}
	c.RawQuery = q.Encode()
	return c.String()
}

func parse(raw string) (*url.URL, error) {
	if len(raw) == 0 || len(raw) > MaxLength {
		return nil, ErrNotAllowed
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c >= 0x7f || c == '\\' {
			return nil, ErrNotAllowed
		}
	}
	// The scheme as sent, lowercase: url.Parse would fold "Https:" into
	// "https", and the allowlist takes only the canonical spelling, as it
	// does for hosts.
	if !strings.HasPrefix(raw, "https://") && !strings.HasPrefix(raw, "http://") {
		return nil, ErrNotAllowed
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Fragment != "" || u.Host == "" {
		return nil, ErrNotAllowed
	}
	// The authority is what Go parsed as host; anything hiding in it (an
	// "@" or a percent-encoding) is refused.
	if strings.ContainsAny(u.Host, "@%") || u.Host != strings.ToLower(u.Host) {
		return nil, ErrNotAllowed
	}
	if u.Path != "" && !strings.HasPrefix(u.Path, "/") || strings.HasSuffix(u.Host, ":") {
		return nil, ErrNotAllowed
	}
	// Decoded, the path must still be free of control characters and
	// backslashes (the "/%09/" and "/%5C" families of bypasses).
	for i := 0; i < len(u.Path); i++ {
		if c := u.Path[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return nil, ErrNotAllowed
		}
	}
	host := u.Hostname()
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && IsLoopback(host):
	default:
		return nil, ErrNotAllowed
	}
	if port := u.Port(); port != "" {
		if strings.TrimLeft(port, "0123456789") != "" || len(port) > 5 || port[0] == '0' {
			return nil, ErrNotAllowed
		}
	}
	return u, nil
}

func origin(u *url.URL) string {
	host, port := u.Hostname(), u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return u.Scheme + "://" + host
}

// IsLoopback reports whether host is localhost or a loopback IP address:
// the only hosts allowed plain http, for local development and tests.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
