package secrets

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// Manager is a Source backed by AWS Secrets Manager. It reads the current
// version (AWSCURRENT) of a secret with GetSecretValue and returns its
// SecretString, or its SecretBinary if it has no string.
//
// Manager does not cache; wrap it in a Cache.
type Manager struct {
	client *secretsmanager.Client
}

// NewManager returns a Manager that reads secrets with c.
func NewManager(c *secretsmanager.Client) *Manager {
	if c == nil {
		panic("secrets: NewManager with nil client")
	}
	return &Manager{client: c}
}

// Secret implements Source. name is a secret name or ARN. A missing secret
// (ResourceNotFoundException) yields an error wrapping ErrNotFound.
func (m *Manager) Secret(ctx context.Context, name string) ([]byte, error) {
	out, err := m.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
		SecretId: &name,
	})
	if err != nil {
		if _, ok := errors.AsType[*types.ResourceNotFoundException](err); ok {
			return nil, fmt.Errorf("%w: %q (%w)", ErrNotFound, name, err)
		}
		return nil, fmt.Errorf("secrets: get %q: %w", name, err)
	}
	switch {
	case out.SecretString != nil:
		return []byte(*out.SecretString), nil
	case out.SecretBinary != nil:
		return out.SecretBinary, nil
	default:
		return nil, fmt.Errorf("secrets: %q has neither SecretString nor SecretBinary", name)
	}
}
