package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Token is a validated token response.
type Token struct {
	AccessToken  string
	RefreshToken string // empty when the response had none
	TokenType    string
	// ExpiresAt is zero when the token does not expire.
	ExpiresAt time.Time
	// Lifetime is the lifetime the expiry was computed from (zero when
	// the token does not expire).
	Lifetime time.Duration
	// Scope is the granted scope as the provider stated it, or "" when it
	// did not say (RFC 6749 §5.1: then it equals the requested scope).
	Scope    string
	Metadata map[string]string
}

func isJSON(contentType string, body []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		return true
	}
	// Some providers send JSON as text/plain or text/javascript.
	t := bytes.TrimSpace(body)
	return (mt == "" || strings.HasPrefix(mt, "text/plain") || mt == "text/javascript") && len(t) > 0 && t[0] == '{'
}

// parseToken validates a 2xx token response body (RFC 6749 §5.1, S14) for
// provider p; sent is when the request was sent, the base of expires_in.
func parseToken(p *Provider, contentType string, body []byte, sent time.Time) (*Token, error) {
	bad := func(reason string) (*Token, error) {
		return nil, &Error{Failure: FailureResponse, Status: 200, Reason: reason}
	}
	fields := map[string]any{}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case isJSON(contentType, body):
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&fields); err != nil {
			return bad("token response is not a JSON object")
		}
	case mt == "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return bad("token response is not form-encoded")
		}
		for k := range v {
			fields[k] = v.Get(k)
		}
	default:
		return bad("token response has an unexpected content type")
	}
	if code, _ := fields["error"].(string); code != "" {
		// Some providers answer 200 with an error object.
		e := &Error{Failure: FailureRequest, Status: 200, Code: oauthErrorCode("application/json", []byte(`{"error":`+strconv.Quote(code)+`}`)), Reason: "provider rejected the request"}
		if e.Code == "invalid_grant" {
			e.Failure, e.Reason = FailureGrant, "grant invalid, expired or revoked"
		}
		return nil, e
	}
	t := &Token{}
	var ok bool
	if t.AccessToken, ok = fields["access_token"].(string); !ok || t.AccessToken == "" {
		return bad("token response has no access_token")
	}
	if v, present := fields["refresh_token"]; present && v != nil {
		if t.RefreshToken, ok = v.(string); !ok {
			return bad("refresh_token is not a string")
		}
	}
	// Never stored nor handed out unless well formed; the value itself
	// stays out of the error.
	if !validTokenValue(t.AccessToken) {
		e := &Error{Failure: FailureTokenSyntax, Status: 200, Reason: "access_token has characters outside RFC 6749 Appendix A (VSCHAR)"}
		if t.RefreshToken != "" && validTokenValue(t.RefreshToken) {
			// A rotating provider retired the refresh token it was sent
			// when it issued this one: hand back the well-formed new one
			// alone (it is never given to apps), so the connection is not
			// lost over an access token nobody will see.
			return &Token{RefreshToken: t.RefreshToken}, e
		}
		return nil, e
	}
	if t.RefreshToken != "" && !validTokenValue(t.RefreshToken) {
		return nil, &Error{Failure: FailureTokenSyntax, Status: 200, Reason: "refresh_token has characters outside RFC 6749 Appendix A (VSCHAR)"}
	}
	switch tt := fields["token_type"].(type) {
	case string:
		if !strings.EqualFold(tt, "bearer") {
			return bad("token_type is not bearer")
		}
		t.TokenType = "Bearer"
	case nil:
		if !p.TokenTypeOptional {
			return bad("token response has no token_type")
		}
		t.TokenType = "Bearer"
	default:
		return bad("token_type is not a string")
	}
	switch s := fields["scope"].(type) {
	case string:
		t.Scope = s
	case []any: // some providers send a list
		parts := make([]string, 0, len(s))
		for _, x := range s {
			if str, ok := x.(string); ok {
				parts = append(parts, str)
			}
		}
		t.Scope = strings.Join(parts, " ")
	}
	lifetime, err := expiresIn(p, fields["expires_in"])
	if err != nil {
		return bad(err.Error())
	}
	if lifetime > 0 {
		t.Lifetime = lifetime
		t.ExpiresAt = issuedAt(p, fields, sent).Add(lifetime).Truncate(time.Second)
	}
	for _, f := range p.MetadataFields {
		switch v := fields[f].(type) {
		case string:
			t.setMeta(f, v)
		case json.Number:
			t.setMeta(f, v.String())
		case bool:
			t.setMeta(f, strconv.FormatBool(v))
		}
	}
	return t, nil
}

// validTokenValue reports whether v may be stored and handed to apps as an
// access or refresh token: one or more VSCHAR (%x20-7E, printable ASCII),
// the syntax RFC 6749 Appendix A.12 (access-token) and A.17
// (refresh-token) give the values a token endpoint returns.
//
// The narrower RFC 6750 §2.1 b64token (letters, digits, "-._~+/", then
// only trailing "=") is the syntax of one way to present a token, the
// Authorization header, not of what a token endpoint may issue, and
// providers' tokens do stray outside it (Salesforce's access tokens carry
// "!", Facebook's app tokens "|"): enforcing it would lock such providers
// out while adding no protection. What must never pass is what VSCHAR
// already excludes: CR and LF (they would split the app's Authorization
// header or a line of its logs), other control characters, DEL and
// non-ASCII (no header carries them unchanged). A space passes, as in
// VSCHAR: it cannot split a header line. The usual shapes (JWTs, base64
// with "+/=", hex, "-._~", prefixed ids) pass either rule.
func validTokenValue(v string) bool {
	if v == "" {
		return false
	}
	for i := range len(v) {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// issuedAt is the base of expires_in: the provider's own issue time
// (Expiry.IssuedAtField) when it is within IssuedAtSkew of sent — never
// later than sent, so a fast provider clock cannot lengthen a lifetime —
// and otherwise sent. A response delayed in transit or a provider clock
// running behind then shortens the lifetime instead of outliving the
// token; an absurd value (Outstand's own example says 2015) is ignored.
func issuedAt(p *Provider, fields map[string]any, sent time.Time) time.Time {
	if p.Expiry.IssuedAtField == "" {
		return sent
	}
	var s string
	switch x := fields[p.Expiry.IssuedAtField].(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	default:
		return sent
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return sent
	}
	at := time.Unix(secs, 0)
	if at.Before(sent.Add(-IssuedAtSkew)) || at.After(sent) {
		return sent
	}
	return at
}

func (t *Token) setMeta(k, v string) {
	if t.Metadata == nil {
		t.Metadata = map[string]string{}
	}
	t.Metadata[k] = v
}

// expiresIn reads expires_in (a number, or a numeric string as some
// providers send) and applies the catalog's rules: absent or 0 → the
// default; absurdly long → no expiry; negative or fractional garbage →
// error. It never overflows a time.Duration.
func expiresIn(p *Provider, v any) (time.Duration, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return time.Duration(p.Expiry.DefaultSeconds) * time.Second, nil
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, errors.New("expires_in is not a number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != f {
		return 0, errors.New("expires_in is not a number")
	}
	switch {
	case f < 0:
		return 0, errors.New("expires_in is negative")
	case f == 0:
		return time.Duration(p.Expiry.DefaultSeconds) * time.Second, nil
	case f > p.MaxLifetime().Seconds():
		return 0, nil // "never expires" (Omnisend's 9223372036)
	}
	return time.Duration(math.Ceil(f)) * time.Second, nil // 0.5 s is a lifetime, not "never"
}
