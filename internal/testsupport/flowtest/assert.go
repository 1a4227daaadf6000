package flowtest

import (
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
)

// FlipSegment changes one character in the middle of the i-th dot-separated
// part of a state (kid.nonce.exp.sig) to another of the same alphabet, so
// that the state stays well formed and only its integrity is broken.
func FlipSegment(state string, i int) string {
	parts := strings.Split(state, ".")
	if i >= len(parts) {
		return state
	}
	b := []byte(parts[i])
	j := len(b) / 2
	switch c := b[j]; {
	case c >= '0' && c <= '9':
		b[j] = '0' + (c-'0'+1)%10
		if j == 0 && b[j] == '0' {
			b[j] = '1'
		}
	case c == 'A':
		b[j] = 'B'
	default:
		b[j] = 'A'
	}
	parts[i] = string(b)
	return strings.Join(parts, ".")
}

// CodeRequests returns the token requests srv received carrying code.
func CodeRequests(srv *providertest.Server, code string) []providertest.Recorded {
	var out []providertest.Recorded
	for _, r := range srv.Requests() {
		if r.Params.Get("code") == code && code != "" {
			out = append(out, r)
		}
	}
	return out
}

// AssertSecurityHeaders fails t unless resp forbids caching and referrers.
func AssertSecurityHeaders(t *testing.T, resp events.APIGatewayV2HTTPResponse) {
	t.Helper()
	if resp.Headers["Cache-Control"] != "no-store" || resp.Headers["Referrer-Policy"] != "no-referrer" {
		t.Errorf("security headers missing: %v", resp.Headers)
	}
}

// AssertNoSecretsIn fails t if s holds any of values, raw or
// query-escaped (codes, states, client secrets).
func AssertNoSecretsIn(t *testing.T, s string, values ...string) {
	t.Helper()
	for _, v := range values {
		if v != "" && (strings.Contains(s, v) || strings.Contains(s, url.QueryEscape(v))) {
			t.Errorf("response contains a code, state or secret (%.6s…)", v)
		}
	}
}
