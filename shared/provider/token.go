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

// tokenJSON holds the RFC 6749 §5.1 members of a token response (and the
// §5.2 error some providers send with a 200), as x/oauth2's internal
// tokenJSON does. Each member is kept as it came, so that one of the
// wrong type is refused by name rather than failing the whole decode.
type tokenJSON struct {
	Error        member `json:"error"`
	AccessToken  member `json:"access_token"`
	RefreshToken member `json:"refresh_token"`
	TokenType    member `json:"token_type"`
	ExpiresIn    member `json:"expires_in"`
	Scope        member `json:"scope"`
}

// memberKind is what JSON value a member held.
type memberKind uint8

const (
	memberAbsent memberKind = iota // absent or null
	memberString
	memberNumber
	memberList  // an array; its string items are kept
	memberOther // true, false or an object
)

// member is one response member: its kind and, for a string or a number,
// its text (a number's as written, never rounded through a float).
type member struct {
	kind  memberKind
	text  string
	items []string
}

// UnmarshalJSON records the kind of b. It is only called with one whole,
// valid JSON value.
func (m *member) UnmarshalJSON(b []byte) error {
	*m = member{} // a repeated member: the last one counts
	switch b[0] {
	case 'n':
	case '"':
		m.kind = memberString
		return json.Unmarshal(b, &m.text)
	case '[':
		m.kind = memberList
		var xs []any
		if err := json.Unmarshal(b, &xs); err != nil {
			return err
		}
		for _, x := range xs {
			if s, ok := x.(string); ok {
				m.items = append(m.items, s)
			}
		}
	case 't', 'f', '{':
		m.kind = memberOther
	default:
		m.kind, m.text = memberNumber, string(b)
	}
	return nil
}

// str is the member's value when it is a string.
func (m member) str() (string, bool) { return m.text, m.kind == memberString }

// formMember is the member a form-encoded response gives key.
func formMember(v url.Values, key string) member {
	if !v.Has(key) {
		return member{}
	}
	return member{kind: memberString, text: v.Get(key)}
}

// parseToken validates a 2xx token response body (RFC 6749 §5.1, S14) for
// provider p; sent is when the request was sent, the base of expires_in.
func parseToken(p *Provider, contentType string, body []byte, sent time.Time) (*Token, error) {
	bad := func(reason string) (*Token, error) {
		return nil, &Error{Failure: FailureResponse, Status: 200, Reason: reason}
	}
	var (
		tj tokenJSON
		// extra holds the members the catalog names beyond §5.1
		// (metadata_fields, expiry.issued_at_field), read only when it
		// names some.
		extra     map[string]any
		wantExtra = len(p.MetadataFields) > 0 || p.Expiry.IssuedAtField != ""
	)
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case isJSON(contentType, body):
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&tj); err != nil {
			return bad("token response is not a JSON object")
		}
		if wantExtra {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if err := dec.Decode(&extra); err != nil {
				return bad("token response is not a JSON object")
			}
		}
	case mt == "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return bad("token response is not form-encoded")
		}
		tj = tokenJSON{
			Error: formMember(v, "error"), AccessToken: formMember(v, "access_token"),
			RefreshToken: formMember(v, "refresh_token"), TokenType: formMember(v, "token_type"),
			ExpiresIn: formMember(v, "expires_in"), Scope: formMember(v, "scope"),
		}
		if wantExtra {
			extra = make(map[string]any, len(v))
			for k := range v {
				extra[k] = v.Get(k)
			}
		}
	default:
		return bad("token response has an unexpected content type")
	}
	if code, _ := tj.Error.str(); code != "" {
		// Some providers answer 200 with an error object.
		e := &Error{Failure: FailureRequest, Status: 200, Code: oauthErrorCode("application/json", []byte(`{"error":`+strconv.Quote(code)+`}`)), Reason: "provider rejected the request"}
		if e.Code == "invalid_grant" {
			e.Failure, e.Reason = FailureGrant, "grant invalid, expired or revoked"
		}
		return nil, e
	}
	t := &Token{}
	var ok bool
	if t.AccessToken, ok = tj.AccessToken.str(); !ok || t.AccessToken == "" {
		return bad("token response has no access_token")
	}
	if tj.RefreshToken.kind != memberAbsent {
		if t.RefreshToken, ok = tj.RefreshToken.str(); !ok {
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
	switch tj.TokenType.kind {
	case memberString:
		if !strings.EqualFold(tj.TokenType.text, "bearer") {
			return bad("token_type is not bearer")
		}
		t.TokenType = "Bearer"
	case memberAbsent:
		if !p.TokenTypeOptional {
			return bad("token response has no token_type")
		}
		t.TokenType = "Bearer"
	default:
		return bad("token_type is not a string")
	}
	switch tj.Scope.kind {
	case memberString:
		t.Scope = tj.Scope.text
	case memberList: // some providers send a list
		t.Scope = strings.Join(tj.Scope.items, " ")
	}
	lifetime, err := expiresIn(p, tj.ExpiresIn)
	if err != nil {
		return bad(err.Error())
	}
	if lifetime > 0 {
		t.Lifetime = lifetime
		t.ExpiresAt = issuedAt(p, extra, sent).Add(lifetime).Truncate(time.Second)
	}
	for _, f := range p.MetadataFields {
		switch v := extra[f].(type) {
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
func expiresIn(p *Provider, m member) (time.Duration, error) {
	var s string
	switch m.kind {
	case memberAbsent:
		return time.Duration(p.Expiry.DefaultSeconds) * time.Second, nil
	case memberNumber:
		s = m.text
	case memberString:
		s = strings.TrimSpace(m.text)
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
