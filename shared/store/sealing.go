package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/oauthbroker/oauthbroker/shared/envelope"
)

// Credentials are the secret fields of a stored record. Stores seal them
// together, as one value bound to the record's key, and keep every other
// field readable (S20): an operator can query statuses and due times, but a
// copy of the table opens nothing without the key manager.
type Credentials struct {
	AccessToken  string `json:"access_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	PKCEVerifier string `json:"pkce_verifier,omitempty"`
}

// ConnectionRecordKey and StateRecordKey name records in sealing (as
// associated data) and are DynamoDB's partition keys: a credential sealed
// for one record opens only for that record.
func ConnectionRecordKey(provider, connectionID string) string {
	return "conn#" + provider + "#" + connectionID
}

// StateRecordKey names a pending state's record, like ConnectionRecordKey.
func StateRecordKey(id string) string { return "state#" + id }

// LinkRecordKey names a connect link's use record (LinkUse), like
// ConnectionRecordKey; it holds nothing sealed.
func LinkRecordKey(id string) string { return "link#" + id }

// IsZero reports whether c holds no credential.
func (c Credentials) IsZero() bool { return c == Credentials{} }

// SealCredentials seals c for the record named recordKey.
func SealCredentials(ctx context.Context, s *envelope.Sealer, recordKey string, c Credentials) ([]byte, error) {
	if s == nil {
		return nil, errors.New("store: no sealer for credentials")
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return s.Seal(ctx, recordKey, b)
}

// OpenCredentials opens what SealCredentials sealed for recordKey.
func OpenCredentials(ctx context.Context, s *envelope.Sealer, recordKey string, sealed []byte) (Credentials, error) {
	if s == nil {
		return Credentials{}, errors.New("store: no sealer for sealed credentials")
	}
	b, err := s.Open(ctx, recordKey, sealed)
	if err != nil {
		return Credentials{}, fmt.Errorf("open credentials: %w", err)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return Credentials{}, errors.New("open credentials: not a credentials record")
	}
	return c, nil
}
