package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// redacted replaces a secret wherever ClientCredentials is printed.
const redacted = "[REDACTED]"

// ClientCredentials are an OAuth 2.0 client's credentials at a provider.
//
// Printing or logging a ClientCredentials never shows ClientSecret: fmt
// (every verb), log/slog and encoding/json all see it redacted. Pass the
// field itself where the secret is needed.
type ClientCredentials struct {
	ClientID     string
	ClientSecret string
}

// ClientCredentialsName is the name of provider's client credentials
// secret: prefix + "provider/" + provider.
func ClientCredentialsName(prefix, provider string) string { return prefix + "provider/" + provider }

// LoadClientCredentials reads the credentials of provider from the secret
// named ClientCredentialsName(prefix, provider), a JSON object
//
//	{"client_id": "…", "client_secret": "…"}
//
// Both fields are required. Errors name the secret, never its value.
func LoadClientCredentials(ctx context.Context, src Source, prefix, provider string) (ClientCredentials, error) {
	if provider == "" {
		return ClientCredentials{}, errors.New("secrets: client credentials: empty provider")
	}
	name := ClientCredentialsName(prefix, provider)
	data, err := src.Secret(ctx, name)
	if err != nil {
		return ClientCredentials{}, fmt.Errorf("secrets: client credentials %q: %w", name, err)
	}
	var v struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return ClientCredentials{}, fmt.Errorf(`secrets: %q: %s (want {"client_id": "…", "client_secret": "…"})`,
			name, describeJSONError(err, "a JSON object"))
	}
	var missing []string
	if strings.TrimSpace(v.ClientID) == "" {
		missing = append(missing, `"client_id"`)
	}
	if strings.TrimSpace(v.ClientSecret) == "" {
		missing = append(missing, `"client_secret"`)
	}
	if len(missing) > 0 {
		return ClientCredentials{}, fmt.Errorf("secrets: %q: missing or empty %s", name, strings.Join(missing, " and "))
	}
	return ClientCredentials{ClientID: v.ClientID, ClientSecret: v.ClientSecret}, nil
}

func (c ClientCredentials) redactedSecret() string {
	if c.ClientSecret == "" {
		return ""
	}
	return redacted
}

// String returns the credentials with the secret redacted.
func (c ClientCredentials) String() string {
	return fmt.Sprintf("{ClientID:%s ClientSecret:%s}", c.ClientID, c.redactedSecret())
}

// GoString returns the credentials as Go syntax with the secret redacted.
func (c ClientCredentials) GoString() string {
	return fmt.Sprintf("secrets.ClientCredentials{ClientID:%q, ClientSecret:%q}", c.ClientID, c.redactedSecret())
}

// Format implements fmt.Formatter so that no verb (%d, %x, …) prints the
// secret: %#v prints GoString, every other verb String.
func (c ClientCredentials) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = fmt.Fprint(f, c.GoString())
		return
	}
	_, _ = fmt.Fprint(f, c.String())
}

// LogValue implements slog.LogValuer: a group with client_id and the secret
// redacted.
func (c ClientCredentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("client_id", c.ClientID),
		slog.String("client_secret", c.redactedSecret()),
	)
}

// MarshalJSON encodes the credentials with the secret redacted, so they do
// not leak when nested in a logged or encoded value. The encoding is for
// display only: it does not round-trip.
func (c ClientCredentials) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"client_id":     c.ClientID,
		"client_secret": c.redactedSecret(),
	})
}
