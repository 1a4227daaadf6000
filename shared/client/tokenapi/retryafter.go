package tokenapi

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retry-After is read and written here, in the one package that both the
// broker (its provider client reads providers' 429s and 5xx, its token
// route writes the header) and the Go client (which reads the token
// route's) import: the contract package already owns the header for the
// token route, it imports only the standard library, and a package of its
// own for one header would be one more for an app's backend to pull in.

// MaxRetryAfter caps the wait ParseRetryAfter returns: a longer one (or a
// number too large to read) is taken as a day, not as no wait at all.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): either
// delay-seconds (digits only) or an HTTP-date, compared with now. A date
// gives the wait until it rounded up to whole seconds, so that the caller
// never asks again before the date. An empty, malformed or negative value,
// or a date not after now, is 0; anything longer than MaxRetryAfter is
// MaxRetryAfter. The value comes from the internet: it never panics and
// never returns a negative wait.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if isDigits(v) {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(MaxRetryAfter/time.Second) { // only ErrRange is possible
			return MaxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil || !t.After(now) {
		return 0
	}
	d := t.Sub(now) // saturates rather than overflows
	if d >= MaxRetryAfter {
		return MaxRetryAfter
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// FormatRetryAfter is the Retry-After value for a wait of d: delay-seconds
// (RFC 9110 §10.2.3), rounded up, at least 1.
func FormatRetryAfter(d time.Duration) string {
	return strconv.FormatInt(int64(max(1, math.Ceil(d.Seconds()))), 10)
}
