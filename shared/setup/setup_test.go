package setup

import (
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/broker"
)

func TestReadEnv(t *testing.T) {
	base := map[string]string{
		"TABLE_NAME":     "oauthbroker",
		"BASE_URL":       "https://connect.example.com/",
		"RETURN_ORIGINS": "https://app.example.com",
		"TOKEN_KEY_ID":   "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
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
		{"no token key", map[string]string{"TOKEN_KEY_ID": ""}, "TOKEN_KEY_ID"},
		{"no base url", map[string]string{"BASE_URL": ""}, "BASE_URL"},
		{"http base url", map[string]string{"BASE_URL": "http://connect.example.com"}, "BASE_URL"},
		{"base url with query", map[string]string{"BASE_URL": "https://connect.example.com/?x=1"}, "BASE_URL"},
		{"no origins", map[string]string{"RETURN_ORIGINS": ""}, "RETURN_ORIGINS"},
		{"origin with path", map[string]string{"RETURN_ORIGINS": "https://app.example.com/x"}, "RETURN_ORIGINS"},
		{"workers not a number", map[string]string{"REFRESH_WORKERS": "eight"}, "REFRESH_WORKERS"},
		{"no workers", map[string]string{"REFRESH_WORKERS": "0"}, "REFRESH_WORKERS"},
		{"lease too short", map[string]string{"REFRESH_LEASE_SECONDS": "10"}, "REFRESH_LEASE_SECONDS"},
		{"batch too large", map[string]string{"REFRESH_BATCH": "1000000"}, "REFRESH_BATCH"},
		{"failing after zero", map[string]string{"REFRESH_FAILING_AFTER": "0"}, "REFRESH_FAILING_AFTER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadEnv(env(tt.over)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
	if e.Refresh != (broker.RefreshOptions{}) {
		t.Errorf("refresh options without variables = %+v, want the defaults (zero)", e.Refresh)
	}
	e, err = ReadEnv(env(map[string]string{"REFRESH_WORKERS": "16", "REFRESH_BATCH": "5000", "REFRESH_LEASE_SECONDS": "90", "REFRESH_FAILING_AFTER": "3"}))
	if want := (broker.RefreshOptions{Workers: 16, Batch: 5000, LeasePeriod: 90 * time.Second, FailingAfter: 3}); err != nil || e.Refresh != want {
		t.Errorf("refresh options = %+v, %v; want %+v", e.Refresh, err, want)
	}
	if _, err := ReadEnv(env(map[string]string{"BASE_URL": "http://localhost:8787"})); err != nil {
		t.Fatalf("loopback http BASE_URL rejected: %v", err)
	}
}
