package secrets_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/oauthbroker/oauthbroker/shared/secrets"
)

func TestManager(t *testing.T) {
	srv := newUpstream(t)
	srv.put(t, "app/string", "s3cr3t-string")
	srv.acct.PutBinarySecret(t, "app/binary", []byte("s3cr3t-binary"))
	srv.put(t, "app/throttled", "s3cr3t-throttled")
	srv.fail("app/throttled", -1, 400, "ThrottlingException", "Rate exceeded")
	srv.put(t, "app/broken", "s3cr3t-broken")
	srv.fail("app/broken", -1, 500, "InternalServiceError", "An error occurred on the server side.")
	m := srv.manager()

	tests := []struct {
		name     string
		want     string
		notFound bool
		wantErr  string // substring of the error; "" for success
	}{
		{name: "app/string", want: "s3cr3t-string"},
		{name: "app/binary", want: "s3cr3t-binary"},
		{name: "app/missing", notFound: true, wantErr: "ResourceNotFoundException"},
		{name: "app/throttled", wantErr: "ThrottlingException"},
		{name: "app/broken", wantErr: "InternalServiceError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Secret(context.Background(), tt.name)
			if tt.wantErr == "" {
				if err != nil || string(got) != tt.want {
					t.Fatalf("Secret = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Secret = %q, want error", got)
			}
			if errors.Is(err, secrets.ErrNotFound) != tt.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tt.notFound, tt.notFound)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) || !strings.Contains(msg, tt.name) {
				t.Errorf("error %q should mention %q and the secret name", msg, tt.wantErr)
			}
			if strings.Contains(msg, "s3cr3t") {
				t.Errorf("error %q contains the secret value", msg)
			}
			if got := srv.calls(tt.name); got != 1 {
				t.Errorf("upstream calls = %d, want 1", got)
			}
		})
	}
}

func TestManagerByARN(t *testing.T) {
	srv := newUpstream(t)
	arn := srv.acct.PutSecret(t, "app/key", "value-by-arn")
	got, err := srv.manager().Secret(context.Background(), arn)
	if err != nil || string(got) != "value-by-arn" {
		t.Fatalf("Secret(ARN) = %q, %v", got, err)
	}
}
