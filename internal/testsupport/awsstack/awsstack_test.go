package awsstack_test

import (
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/awsstack"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/setup"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

const (
	bus = "awsstack-test-events"
	// Test credentials, registered with logcheck by moto.PutSecret.
	signingKey   = "awsstack-signing-key-0123456789abcdef0123"
	clientSecret = "awsstack-client-secret-Hy7"
	catalog      = "providers:\n  acme:\n    authorization_url: https://acme.example/authorize\n" +
		"    token_url: https://acme.example/token\n    grant_types: [authorization_code, refresh_token]\n"
)

// A function started on the stack's environment finds everything in it, as
// setup.FromEnv reads it in Lambda: the catalog, both secrets (the links
// the set's Keyset signs verify under the keys secret), a table and
// key it can store through (and the stack's Store opens), and the bus its
// events reach.
func TestFunctionRunsOnTheStack(t *testing.T) {
	secretSet := testsecrets.Set{SigningKey: signingKey, Clients: map[string]testsecrets.Client{"acme": {ID: "acme-id", Secret: clientSecret}}}
	stack := awsstack.New(t, awsstack.Config{
		Bus:           bus,
		Secrets:       secretSet,
		Catalog:       catalog,
		BaseURL:       "https://broker.example.test",
		ReturnOrigins: "https://app.example.test",
	})
	events := stack.Account.Subscribe(t, bus, `{"source":["oauthbroker"]}`)
	for k, v := range stack.EnvWith(map[string]string{"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}) {
		t.Setenv(k, v)
	}
	ctx := t.Context()
	br, err := setup.FromEnv(ctx)
	if err != nil {
		t.Fatalf("setup.FromEnv on the stack's environment: %v", err)
	}
	if _, ok := br.Catalog.Get("acme"); !ok {
		t.Error("the providers file lacks acme")
	}

	raw, err := br.Secrets.Secret(ctx, br.KeysSecret())
	if err != nil {
		t.Fatalf("keys secret: %v", err)
	}
	keys, err := signing.ParseKeyset(raw)
	if err != nil {
		t.Fatalf("keys secret %s: %v", br.KeysSecret(), err)
	}
	q, err := signing.SignLink(secretSet.Keyset(t), signing.Link{Provider: "acme", ConnectionID: "c1",
		ReturnTo: "https://app.example.test/done", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.VerifyLink(keys, "acme", vals, time.Now()); err != nil {
		t.Errorf("a link signed with Keys does not verify under the keys secret: %v", err)
	}

	raw, err = br.Secrets.Secret(ctx, br.Config.SecretsPrefix+"provider/acme")
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	var creds testsecrets.Client
	if err := json.Unmarshal(raw, &creds); err != nil || creds != secretSet.Clients["acme"] {
		t.Errorf("client credentials %v (%v), want acme-id and the configured secret", creds.ID, err)
	}

	if _, err := br.Store.SaveConnection(ctx, store.Connection{Provider: "acme", ConnectionID: "c1", Status: store.StatusConnected,
		AccessToken: "at-awsstack-0123456789", ExpiresAt: time.Now().Add(time.Hour), Grant: provider.GrantAuthorizationCode}); err != nil {
		t.Fatalf("the function's store: %v", err)
	}
	got, err := stack.Store().GetConnection(ctx, "acme", "c1")
	if err != nil || got.AccessToken != "at-awsstack-0123456789" {
		t.Errorf("Store reads back %q, %v; want what the function stored", got.AccessToken, err)
	}

	if br.Events == nil {
		t.Fatal("the function publishes no events: EVENT_BUS_NAME unset")
	}
	if err := br.Events.Publish(ctx, lifecycle.Event{Type: lifecycle.Created, Provider: "acme", ConnectionID: "c1", Status: "connected"}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if got := events.Receive(t, 1, 10*time.Second); got[0].Detail["connection_id"] != "c1" {
		t.Errorf("event %+v, want c1's", got[0])
	}
}

// EnvWith lays variables over a copy: Env itself is unchanged.
func TestEnvWith(t *testing.T) {
	stack := awsstack.New(t, awsstack.Config{Bus: bus, Secrets: testsecrets.Set{SigningKey: signingKey}, Catalog: catalog})
	table := stack.Env["TABLE_NAME"]
	env := stack.EnvWith(map[string]string{"TABLE_NAME": "other", "AWS_LAMBDA_FUNCTION_TIMEOUT": "3"})
	if env["TABLE_NAME"] != "other" || env["AWS_LAMBDA_FUNCTION_TIMEOUT"] != "3" || env["EVENT_BUS_NAME"] != bus {
		t.Errorf("EnvWith: TABLE_NAME %q, AWS_LAMBDA_FUNCTION_TIMEOUT %q, EVENT_BUS_NAME %q; want other, 3, %s",
			env["TABLE_NAME"], env["AWS_LAMBDA_FUNCTION_TIMEOUT"], env["EVENT_BUS_NAME"], bus)
	}
	if stack.Env["TABLE_NAME"] != table || table != stack.Table || stack.Env["AWS_LAMBDA_FUNCTION_TIMEOUT"] != "" {
		t.Errorf("EnvWith changed Env: TABLE_NAME %q (table %s), AWS_LAMBDA_FUNCTION_TIMEOUT %q",
			stack.Env["TABLE_NAME"], stack.Table, stack.Env["AWS_LAMBDA_FUNCTION_TIMEOUT"])
	}
}

// Items is the whole table and Item one record, as the functions wrote
// them: a connection saved through Store appears under its key in both,
// and nothing else does.
func TestItems(t *testing.T) {
	stack := awsstack.New(t, awsstack.Config{Bus: bus, Secrets: testsecrets.Set{SigningKey: signingKey}, Catalog: catalog})
	if items := stack.Items(t); len(items) != 0 {
		t.Fatalf("a new table holds %d items", len(items))
	}
	if _, err := stack.Store().SaveConnection(t.Context(), store.Connection{Provider: "acme", ConnectionID: "c1", Status: store.StatusConnected,
		AccessToken: "at-awsstack-items-0123", ExpiresAt: time.Now().Add(time.Hour), Grant: provider.GrantAuthorizationCode}); err != nil {
		t.Fatal(err)
	}
	items := stack.Items(t)
	if len(items) != 1 {
		t.Fatalf("after one save the table holds %v", slices.Collect(maps.Keys(items)))
	}
	for key := range items {
		pk, sk, _ := strings.Cut(key, "|")
		item := stack.Item(t, pk, sk)
		if item == nil || item["pk"].(*types.AttributeValueMemberS).Value != pk {
			t.Errorf("Item(%q, %q) = %v, want the saved record", pk, sk, item)
		}
		if stack.Item(t, pk, sk+"-none") != nil {
			t.Errorf("Item of a key nothing holds is not nil")
		}
	}
}
