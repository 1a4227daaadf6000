// Package secrets reads oauthbroker's secrets — OAuth client secrets and
// signing keys — from AWS Secrets Manager, or from a local JSON file during
// development.
//
// Secret values never belong in environment variables, logs or error
// messages: errors from this package name the secret, never its value, and
// ClientCredentials redacts its secret whenever it is printed or logged.
package secrets

import (
	"context"
	"errors"
)

// ErrNotFound is returned (wrapped; test with errors.Is) when a secret does
// not exist.
var ErrNotFound = errors.New("secrets: not found")

// Source reads a secret's value by name.
//
// Implementations return an error wrapping ErrNotFound when the secret does
// not exist. They are safe for concurrent use.
type Source interface {
	Secret(ctx context.Context, name string) ([]byte, error)
}
