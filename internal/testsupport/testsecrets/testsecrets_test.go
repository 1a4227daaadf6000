package testsecrets_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

// The file holds what the broker asks a secrets source for, in its
// format: the keys secret (under which the set's Keyset signs) only when
// there is a signing key, and each provider's client credentials.
func TestFile(t *testing.T) {
	acme := testsecrets.Client{ID: "acme-id", Secret: "acme-secret-testsecrets-9Qz"}
	for _, tt := range []struct {
		name string
		set  testsecrets.Set
	}{
		{"keys and a client", testsecrets.Set{SigningKey: "testsecrets-signing-key-0123456789abcdef", Clients: map[string]testsecrets.Client{"acme": acme}}},
		{"a client only", testsecrets.Set{Clients: map[string]testsecrets.Client{"acme": acme}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			src := secrets.NewFile(tt.set.File(t))
			raw, err := src.Secret(ctx, secrets.ClientCredentialsName(testsecrets.Prefix, "acme"))
			var got testsecrets.Client
			if err != nil || json.Unmarshal(raw, &got) != nil || got != acme {
				t.Errorf("client credentials of acme: %v, %v; want %v", got.ID, err, acme.ID)
			}

			raw, err = src.Secret(ctx, testsecrets.Prefix+"keys")
			if tt.set.SigningKey == "" {
				if !errors.Is(err, secrets.ErrNotFound) {
					t.Errorf("keys secret without a signing key: %v, want ErrNotFound", err)
				}
				return
			}
			keys, err := signing.ParseKeyset(raw)
			if err != nil {
				t.Fatalf("keys secret: %v", err)
			}
			q, err := signing.SignLink(tt.set.Keyset(t), signing.Link{Provider: "acme", ConnectionID: "c1",
				ReturnTo: "https://app.example.test/", Expires: time.Now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			v, _ := url.ParseQuery(q)
			if _, err := signing.VerifyLink(keys, "acme", v, time.Now()); err != nil || v.Get("kid") != testsecrets.KeyID {
				t.Errorf("a link Keyset signs (kid %q) under the keys secret: %v", v.Get("kid"), err)
			}
		})
	}
}
