package moto

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// PutSecret stores value as the current SecretString of the secret name,
// creating the secret if it does not exist, and returns the secret's ARN.
// The value is registered with logcheck, and so is each string member of a
// JSON object value other than the non-secret "client_id" and
// "current_kid".
func (a *Account) PutSecret(t testing.TB, name, value string) string {
	t.Helper()
	registerSecret(value)
	return a.putSecret(t, name, &value, nil)
}

// PutBinarySecret is PutSecret for a SecretBinary value.
func (a *Account) PutBinarySecret(t testing.TB, name string, value []byte) string {
	t.Helper()
	registerSecret(string(value))
	logcheck.Register(base64.StdEncoding.EncodeToString(value)) // as on the wire
	return a.putSecret(t, name, nil, value)
}

func (a *Account) putSecret(t testing.TB, name string, str *string, bin []byte) string {
	t.Helper()
	client := secretsmanager.NewFromConfig(a.Config())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	created, err := client.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &name, SecretString: str, SecretBinary: bin})
	if err == nil {
		return aws.ToString(created.ARN)
	}
	if _, exists := errors.AsType[*types.ResourceExistsException](err); !exists {
		t.Fatalf("moto: create secret %s: %v", name, err)
	}
	put, err := client.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &name, SecretString: str, SecretBinary: bin})
	if err != nil {
		t.Fatalf("moto: put secret %s: %v", name, err)
	}
	return aws.ToString(put.ARN)
}

// registerSecret registers a secret value and the secrets in it with
// logcheck.
func registerSecret(value string) {
	logcheck.Register(value)
	var members map[string]any
	if json.Unmarshal([]byte(value), &members) != nil {
		return
	}
	for k, v := range members {
		if s, ok := v.(string); ok && k != "client_id" && k != "current_kid" {
			logcheck.Register(s)
		}
	}
}
