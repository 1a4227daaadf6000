package setup

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
	"github.com/oauthbroker/oauthbroker/shared/store"
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
	if e.Broker.BaseURL != "https://connect.example.com" || e.Broker.SecretsPrefix != "oauthbroker/" || e.TableName != "oauthbroker" || !e.Broker.Confirm {
		t.Fatalf("env %+v", e)
	}
	for v, want := range map[string]bool{"required": true, "off": false} {
		if e, err := ReadEnv(env(map[string]string{"CONFIRM_CONNECTIONS": v})); err != nil || e.Broker.Confirm != want {
			t.Errorf("CONFIRM_CONNECTIONS=%s: Confirm = %v, %v; want %v", v, e.Broker.Confirm, err, want)
		}
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
		{"confirmation neither required nor off", map[string]string{"CONFIRM_CONNECTIONS": "optional"}, "CONFIRM_CONNECTIONS"},
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

// fakeAWS is an aws.HTTPClient answering each operation (X-Amz-Target)
// with a canned body, recording the targets and request bodies.
type fakeAWS struct {
	answers map[string]string
	targets []string
	bodies  map[string]string
}

func (f *fakeAWS) Do(r *http.Request) (*http.Response, error) {
	target := r.Header.Get("X-Amz-Target")
	body, _ := io.ReadAll(r.Body)
	f.targets = append(f.targets, target)
	f.bodies[target] = string(body)
	answer, ok := f.answers[target]
	status := http.StatusOK
	if !ok {
		status, answer = http.StatusBadRequest, `{"__type":"ValidationException","message":"unexpected"}`
	}
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
		Body: io.NopCloser(strings.NewReader(answer)), Request: r}, nil
}

// TestNewUsesTheConfigsClients checks that New wires every AWS client to
// the given config (here its HTTPClient): Secrets Manager behind the
// SecretsTTL cache, DynamoDB, KMS data keys under the table's encryption
// context, and EventBridge only when a bus is named.
func TestNewUsesTheConfigsClients(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	fake := &fakeAWS{bodies: map[string]string{}, answers: map[string]string{
		"secretsmanager.GetSecretValue": `{"Name":"oauthbroker/keys","SecretString":"v"}`,
		"DynamoDB_20120810.GetItem":     `{}`,
		"DynamoDB_20120810.PutItem":     `{}`,
		"TrentService.GenerateDataKey":  `{"KeyId":"k","Plaintext":"` + key + `","CiphertextBlob":"d3JhcHBlZA=="}`,
		"AWSEvents.PutEvents":           `{"FailedEntryCount":0,"Entries":[{"EventId":"e1"}]}`,
	}}
	cfg := aws.Config{Region: "us-east-1", HTTPClient: fake, BaseEndpoint: aws.String("http://aws.invalid"),
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""), Retryer: func() aws.Retryer { return aws.NopRetryer{} }}
	env := Env{TableName: "conns", TokenKeyID: "arn:aws:kms:us-east-1:111122223333:key/k", Broker: broker.Config{BaseURL: "https://b.example", SecretsPrefix: "oauthbroker/"}}

	b, err := New(env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b.Events != nil {
		t.Errorf("events publisher without EVENT_BUS_NAME: %T", b.Events)
	}
	ctx := t.Context()
	for range 2 {
		if v, err := b.Secrets.Secret(ctx, "oauthbroker/keys"); err != nil || string(v) != "v" {
			t.Fatalf("secret = %q, %v", v, err)
		}
	}
	if _, err := b.Store.GetConnection(ctx, "acme", "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetConnection err = %v, want ErrNotFound", err)
	}
	if _, err := b.Store.SaveConnection(ctx, store.Connection{Provider: "acme", ConnectionID: "c1", AccessToken: "at", Status: store.StatusConnected}); err != nil {
		t.Fatal(err)
	}
	want := []string{"secretsmanager.GetSecretValue", "DynamoDB_20120810.GetItem", "TrentService.GenerateDataKey", "DynamoDB_20120810.PutItem"}
	if !slices.Equal(fake.targets, want) {
		t.Errorf("requests %q, want %q (one secret read within the TTL)", fake.targets, want)
	}
	if gen := fake.bodies["TrentService.GenerateDataKey"]; !strings.Contains(gen, `"oauthbroker:table":"conns"`) || !strings.Contains(gen, env.TokenKeyID) {
		t.Errorf("GenerateDataKey request %s: want key %s and the table's encryption context", gen, env.TokenKeyID)
	}

	env.EventBusName = "bus"
	if b, err = New(env, cfg); err != nil || b.Events == nil {
		t.Fatalf("New with a bus: events %v, err %v", b.Events, err)
	}
	if err := b.Events.Publish(ctx, lifecycle.Event{Type: lifecycle.Created, Provider: "acme", ConnectionID: "c1", Status: "connected", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if last := fake.targets[len(fake.targets)-1]; last != "AWSEvents.PutEvents" {
		t.Errorf("publishing sent %q", last)
	}

	env.ProvidersFile = filepath.Join(t.TempDir(), "missing.yaml")
	if _, err := New(env, cfg); err == nil || !strings.Contains(err.Error(), "provider catalog") {
		t.Errorf("New with a missing catalog: err = %v", err)
	}
}

// TestStart: a function whose configuration is wrong ends before it makes
// its handler, with status 1 and a logged configuration error that names
// what is wrong.
func TestStart(t *testing.T) {
	if os.Getenv("SETUP_START_HELPER") != "" {
		t.Skip("in the helper process")
	}
	out, err := logcheck.HelperCommand("TestStartHelperProcess", "SETUP_START_HELPER=1", "TABLE_NAME=", "TOKEN_KEY_ID=").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("helper exited with %v, want status 1; output:\n%s", err, out)
	}
	for _, want := range []string{`"msg":"configuration error"`, "TABLE_NAME is required", "TOKEN_KEY_ID is required"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("helper output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "handler made") {
		t.Errorf("the handler was made on a wrong configuration:\n%s", out)
	}
}

func TestStartHelperProcess(t *testing.T) {
	if os.Getenv("SETUP_START_HELPER") == "" {
		t.Skip("helper process for TestStart")
	}
	Start(func(*broker.Broker) func() {
		fmt.Println("handler made")
		return func() {}
	})
}
