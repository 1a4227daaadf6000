package provider

import (
	"errors"
	"testing"
)

// FuzzParseTokenResponse: no body panics the parser or overflows an
// expiry; what it accepts has an access token and a bearer type, and its
// access and refresh tokens are printable ASCII only (RFC 6749 Appendix A
// VSCHAR, checked here independently of the parser's own check).
func FuzzParseTokenResponse(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"a","token_type":"bearer","expires_in":3600}`,
		`{"access_token":"a","token_type":"Bearer","expires_in":9223372036}`,
		`{"access_token":"a","token_type":"bearer","expires_in":"1e308"}`,
		`{"access_token":"a","token_type":"mac"}`, `{"error":"invalid_grant"}`, `<html>`, `{`, `null`, `[]`,
		`{"access_token":"a\r\nb","token_type":"bearer"}`, `{"access_token":"a","refresh_token":"r\u0000","token_type":"bearer"}`,
		`{"access_token":"\u00e9","token_type":"bearer"}`,
	} {
		f.Add("application/json", []byte(s))
	}
	f.Add("application/x-www-form-urlencoded", []byte("access_token=a&token_type=bearer&expires_in=1"))
	f.Add("application/x-www-form-urlencoded", []byte("access_token=a%0D%0Ab&token_type=bearer"))
	f.Add("application/x-www-form-urlencoded", []byte("access_token=a&refresh_token=%7F&token_type=bearer"))
	c, err := parseDoc("fuzz", []byte("providers:\n  p:\n    token_url: https://p.example/t\n    grant_types: [client_credentials]\n"))
	if err != nil {
		f.Fatal(err)
	}
	p, _ := c.Get("p")
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		tok, err := parseToken(p, contentType, body, t0)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error of type %T", err)
			}
			// Beside an error, at most a well-formed refresh token alone.
			if tok != nil && (pe.Failure != FailureTokenSyntax || tok.AccessToken != "" || tok.RefreshToken == "" || !printable(tok.RefreshToken)) {
				t.Fatalf("error %v returned with %+v", err, tok)
			}
			return
		}
		if tok.AccessToken == "" || tok.TokenType != "Bearer" || (!tok.ExpiresAt.IsZero() && tok.ExpiresAt.Before(t0)) {
			t.Fatalf("accepted %+v", tok)
		}
		for _, v := range []string{tok.AccessToken, tok.RefreshToken} {
			for i := range len(v) {
				if v[i] < 0x20 || v[i] > 0x7e {
					t.Fatalf("accepted a token with byte %#x at %d", v[i], i)
				}
			}
		}
	})
}

// printable reports whether v is all printable ASCII, checked here
// independently of the parser's own check.
func printable(v string) bool {
	for i := range len(v) {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return v != ""
}
