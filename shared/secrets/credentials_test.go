package secrets_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/oauthbroker/oauthbroker/shared/secrets"
)

const secretValue = "s3cr3t-VALUE"

func TestLoadClientCredentials(t *testing.T) {
	srv := newUpstream(t)
	src := srv.manager()

	tests := []struct {
		provider string
		value    string // "" means the secret does not exist
		want     secrets.ClientCredentials
		wantErr  []string // substrings of the error
		notFound bool
	}{
		{
			provider: "google",
			value:    `{"client_id":"id-123","client_secret":"` + secretValue + `","extra":true}`,
			want:     secrets.ClientCredentials{ClientID: "id-123", ClientSecret: secretValue},
		},
		{
			provider: "no-secret",
			value:    `{"client_id":"id-123"}`,
			wantErr:  []string{`"oauthbroker/provider/no-secret"`, `missing or empty "client_secret"`},
		},
		{
			provider: "empty-id",
			value:    `{"client_id":"  ","client_secret":"` + secretValue + `"}`,
			wantErr:  []string{`"oauthbroker/provider/empty-id"`, `"client_id"`},
		},
		{
			provider: "empty",
			value:    `{}`,
			wantErr:  []string{`"client_id" and "client_secret"`},
		},
		{
			provider: "bad-json",
			value:    `{"client_id":"id-123","client_secret":"` + secretValue,
			wantErr:  []string{`"oauthbroker/provider/bad-json"`, "invalid JSON"},
		},
		{
			provider: "not-json",
			value:    secretValue,
			wantErr:  []string{`"oauthbroker/provider/not-json"`, "invalid JSON"},
		},
		{
			provider: "wrong-type",
			value:    `{"client_id":"id-123","client_secret":["` + secretValue + `"]}`,
			wantErr:  []string{`"oauthbroker/provider/wrong-type"`, `"client_secret"`},
		},
		{
			provider: "array",
			value:    `["` + secretValue + `"]`,
			wantErr:  []string{`"oauthbroker/provider/array"`, "want a JSON object"},
		},
		{
			provider: "missing",
			wantErr:  []string{`"oauthbroker/provider/missing"`},
			notFound: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.provider, func(t *testing.T) {
			if tt.value != "" {
				srv.put(t, "oauthbroker/provider/"+tt.provider, tt.value)
			}
			got, err := secrets.LoadClientCredentials(context.Background(), src, "oauthbroker/", tt.provider)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("LoadClientCredentials = %+v, %v; want %+v", got, err, tt.want)
				}
				if got.ClientSecret != secretValue {
					t.Fatalf("ClientSecret = %q", got.ClientSecret)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadClientCredentials = %v, want error", got)
			}
			if got != (secrets.ClientCredentials{}) {
				t.Errorf("on error, credentials = %v, want zero", got)
			}
			msg := err.Error()
			for _, want := range tt.wantErr {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if strings.Contains(msg, secretValue) || strings.Contains(msg, "s3cr3t") {
				t.Errorf("error %q contains the secret value", msg)
			}
			if errors.Is(err, secrets.ErrNotFound) != tt.notFound {
				t.Errorf("errors.Is(err, ErrNotFound) = %v, want %v", !tt.notFound, tt.notFound)
			}
		})
	}

	if _, err := secrets.LoadClientCredentials(context.Background(), src, "oauthbroker/", ""); err == nil {
		t.Error("empty provider: want error")
	}
}

func TestClientCredentialsRedaction(t *testing.T) {
	c := secrets.ClientCredentials{ClientID: "id-123", ClientSecret: secretValue}
	type wrapper struct {
		Name  string
		Creds secrets.ClientCredentials
		Ptr   *secrets.ClientCredentials
	}
	w := wrapper{Name: "w", Creds: c, Ptr: &c}

	printed := map[string]string{
		"%v %+v %#v":      fmt.Sprintf("%v %+v %#v", c, c, c),
		"pointer":         fmt.Sprintf("%v %+v %#v", &c, &c, &c),
		"other verbs":     fmt.Sprintf("%s %q %x %X %d %10.3v", c, c, c, c, c, c),
		"Sprint/Sprintln": fmt.Sprint(c) + fmt.Sprintln(c, &c),
		"nested":          fmt.Sprintf("%v %+v %#v", w, w, w),
		"slice and map":   fmt.Sprintf("%v %#v", []secrets.ClientCredentials{c}, map[string]secrets.ClientCredentials{"k": c}),
	}
	for name, s := range printed {
		if strings.Contains(s, secretValue) {
			t.Errorf("%s: %q contains the secret", name, s)
		}
		if !strings.Contains(s, "id-123") || !strings.Contains(s, "[REDACTED]") {
			t.Errorf("%s: %q should show the client id and [REDACTED]", name, s)
		}
	}
	if got, want := fmt.Sprintf("%#v", c), `secrets.ClientCredentials{ClientID:"id-123", ClientSecret:"[REDACTED]"}`; got != want {
		t.Errorf("%%#v = %s, want %s", got, want)
	}

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		slog.New(h).Info("loaded", "creds", c, "ptr", &c, "nested", w, slog.Any("any", c))
	}
	if s := buf.String(); strings.Contains(s, secretValue) || !strings.Contains(s, `"client_id":"id-123"`) {
		t.Errorf("slog output leaks or lacks client_id:\n%s", s)
	}

	j, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(j), secretValue) {
		t.Errorf("json.Marshal leaks: %s", j)
	}

	if got := fmt.Sprint(secrets.ClientCredentials{ClientID: "id"}); got != "{ClientID:id ClientSecret:}" {
		t.Errorf("empty secret prints %q", got)
	}
}
