package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/shared/client"
)

// make dev's token route refuses a request without its dev key with the
// code the Go client knows, so that an app developer's backend is told
// what is wrong rather than "unexpected response".
func TestTokenRouteWantsTheDevKey(t *testing.T) {
	s := startServer(t, t.TempDir(), &testClock{}, io.Discard)
	logcheck.Register(s.devKey)
	for _, tt := range []struct {
		name string
		key  string
	}{
		{"no key", ""},
		{"wrong key", "not-the-dev-key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Without the key the client signs as for AWS.
			opts := []client.Option{client.WithCredentials(credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "example", "")), client.WithRegion("us-east-1")}
			if tt.key != "" {
				opts = []client.Option{client.WithDevKey(tt.key)}
			}
			c, err := client.New(context.Background(), s.baseURL, opts...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Token(context.Background(), "sandbox", "c1")
			var e *client.Error
			if !errors.As(err, &e) || e.StatusCode != http.StatusUnauthorized || e.Code != client.CodeUnauthorized {
				t.Fatalf("Token without the dev key: %v, want 401 %s", err, client.CodeUnauthorized)
			}
		})
	}
}
