package setup

import (
	"strings"
	"testing"
)

func TestReadEnv(t *testing.T) {
	base := map[string]string{
		"TABLE_NAME":     "oauthbroker",
		"BASE_URL":       "https://connect.example.com/",
		"RETURN_ORIGINS": "https://app.example.com",
	}
	env := func(over map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := over[k]; ok {
				return v
			}
			return base[k]
		}
	}
	e, err := ReadEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if e.Broker.BaseURL != "https://connect.example.com" || e.Broker.SecretsPrefix != "oauthbroker/" || e.TableName != "oauthbroker" {
		t.Fatalf("env %+v", e)
	}
	tests := []struct {
		name string
		over map[string]string
		want string
	}{
		{"no table", map[string]string{"TABLE_NAME": ""}, "TABLE_NAME"},
		{"no base url", map[string]string{"BASE_URL": ""}, "BASE_URL"},
		{"http base url", map[string]string{"BASE_URL": "http://connect.example.com"}, "BASE_URL"},
		{"base url with query", map[string]string{"BASE_URL": "https://connect.example.com/?x=1"}, "BASE_URL"},
		{"no origins", map[string]string{"RETURN_ORIGINS": ""}, "RETURN_ORIGINS"},
		{"origin with path", map[string]string{"RETURN_ORIGINS": "https://app.example.com/x"}, "RETURN_ORIGINS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadEnv(env(tt.over)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
	if _, err := ReadEnv(env(map[string]string{"BASE_URL": "http://localhost:8787"})); err != nil {
		t.Fatalf("loopback http BASE_URL rejected: %v", err)
	}
}
