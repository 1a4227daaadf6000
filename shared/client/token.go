package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/client/tokenapi"
)

// Token is a connection's access token as the token route returns it.
//
// Printing a Token (fmt's %v, %+v, %s, %#v) or logging it with log/slog
// shows every field but the access token, which is redacted. The access
// token is in AccessToken only.
type Token struct {
	// AccessToken is the credential for the provider's API.
	AccessToken string
	// TokenType is the authorization scheme, "Bearer" (any case of
	// "bearer" is normalised to "Bearer").
	TokenType string
	// ExpiresAt is when the token expires; the zero time if it does not.
	ExpiresAt time.Time
	// Scope is the granted scope, space-separated; empty if the broker did
	// not record one.
	Scope string
	// Metadata holds the provider's extra token fields the catalog keeps
	// (a user id, an account domain); nil if none.
	Metadata map[string]string
}

// Valid reports whether the token has an access token and has not expired
// at now.
func (t *Token) Valid(now time.Time) bool {
	return t != nil && t.AccessToken != "" && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

// validFor reports whether the token stays valid for at least d after now.
func (t *Token) validFor(now time.Time, d time.Duration) bool {
	return t.Valid(now) && (t.ExpiresAt.IsZero() || now.Add(d).Before(t.ExpiresAt))
}

// authorization is the value of the Authorization header for the token.
func (t *Token) authorization() string {
	return t.TokenType + " " + t.AccessToken
}

// redacted stands for an access token in printed and logged output.
const redacted = "[redacted]"

// String shows the token with its access token redacted.
func (t Token) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Token{TokenType: %q, AccessToken: %s", t.TokenType, redacted)
	if !t.ExpiresAt.IsZero() {
		fmt.Fprintf(&b, ", ExpiresAt: %s", t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if t.Scope != "" {
		fmt.Fprintf(&b, ", Scope: %q", t.Scope)
	}
	if len(t.Metadata) > 0 {
		fmt.Fprintf(&b, ", Metadata: %v", t.Metadata)
	}
	b.WriteString("}")
	return b.String()
}

// GoString is String, so that %#v redacts the access token too.
func (t Token) GoString() string { return t.String() }

// LogValue makes log/slog log the token with its access token redacted.
func (t Token) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("token_type", t.TokenType),
		slog.String("access_token", redacted),
	}
	if !t.ExpiresAt.IsZero() {
		attrs = append(attrs, slog.Time("expires_at", t.ExpiresAt))
	}
	if t.Scope != "" {
		attrs = append(attrs, slog.String("scope", t.Scope))
	}
	if len(t.Metadata) > 0 {
		attrs = append(attrs, slog.Any("metadata", t.Metadata))
	}
	return slog.GroupValue(attrs...)
}

// decodeToken parses and checks a 200 body. Its errors never quote the
// body.
func decodeToken(body []byte) (*Token, error) {
	var w tokenapi.Token
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, errors.New("oauthbroker client: the token route's answer is not a token object")
	}
	if w.AccessToken == "" {
		return nil, errors.New("oauthbroker client: the token route's answer has no access_token")
	}
	if !headerSafe(w.AccessToken) {
		return nil, errors.New("oauthbroker client: the access token has characters that cannot go in a header")
	}
	t := &Token{AccessToken: w.AccessToken, TokenType: w.TokenType, Scope: w.Scope, Metadata: w.Metadata}
	switch {
	case t.TokenType == "" || strings.EqualFold(t.TokenType, "bearer"):
		t.TokenType = "Bearer"
	case !isTokenChars(t.TokenType):
		return nil, errors.New("oauthbroker client: the token route's answer has an invalid token_type")
	}
	if w.ExpiresAt != "" {
		at, err := time.Parse(time.RFC3339, w.ExpiresAt)
		if err != nil {
			return nil, errors.New("oauthbroker client: the token route's answer has an invalid expires_at")
		}
		t.ExpiresAt = at
	}
	if len(t.Metadata) == 0 {
		t.Metadata = nil
	}
	return t, nil
}

// headerSafe reports whether s is visible ASCII without spaces.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// isTokenChars reports whether s is an HTTP token (RFC 9110 tchar).
func isTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}
