package dynamo_test

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/storetest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

func TestMain(m *testing.M) { logcheck.Main(moto.Wrap(dynalite.Wrap(m))) }

// TestConformance runs the store suite on two independent DynamoDB
// emulators, so that a store relying on one emulator's quirk fails on the
// other.
func TestConformance(t *testing.T) {
	sealer := localSealer()
	for _, db := range []struct {
		name   string
		client func(t *testing.T) *dynamodb.Client
	}{
		{"dynalite", func(t *testing.T) *dynamodb.Client { return dynalite.Shared(t).Client }},
		{"moto", func(t *testing.T) *dynamodb.Client {
			return dynamodb.NewFromConfig(moto.Shared(t).NewAccount(t).Config())
		}},
	} {
		t.Run(db.name, func(t *testing.T) {
			client := db.client(t)
			storetest.Run(t, func(t *testing.T) store.Store {
				return dynamo.NewWithSealers(client, dynalite.NewTable(t, client), sealer, sealer)
			})
		})
	}
}

// TestClock: the times the store stamps come from its Now.
func TestClock(t *testing.T) {
	client := dynalite.Shared(t).Client
	sealer := localSealer()
	storetest.RunClock(t, func(t *testing.T, now func() time.Time) store.Store {
		s := dynamo.NewWithSealers(client, dynalite.NewTable(t, client), sealer, sealer)
		s.Now = now
		return s
	})
}

// localSealer seals with a random local key: the tests that are not about
// KMS need no KMS server.
func localSealer() *envelope.Sealer {
	return testkeys.Sealer()
}

// TestItemLayout pins the stored layout that template.yaml and the README
// document.
func TestItemLayout(t *testing.T) {
	client := dynalite.Shared(t).Client
	table := dynalite.NewTable(t, client)
	sealer := localSealer()
	s := dynamo.NewWithSealers(client, table, sealer, sealer)
	ctx := t.Context()
	at := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)

	desc, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	td := desc.Table
	if got := keyNames(td.KeySchema); !slices.Equal(got, []string{"pk/HASH", "sk/RANGE"}) {
		t.Errorf("table keys = %v", got)
	}
	if len(td.GlobalSecondaryIndexes) != 1 {
		t.Fatalf("%d global secondary indexes, want 1", len(td.GlobalSecondaryIndexes))
	}
	gsi := td.GlobalSecondaryIndexes[0]
	if aws.ToString(gsi.IndexName) != "due" || !slices.Equal(keyNames(gsi.KeySchema), []string{"due_shard/HASH", "refresh_due/RANGE"}) {
		t.Errorf("index %q keys %v, want due with due_shard/HASH, refresh_due/RANGE", aws.ToString(gsi.IndexName), keyNames(gsi.KeySchema))
	}
	if p := gsi.Projection; p.ProjectionType != types.ProjectionTypeInclude || !slices.Equal(slices.Sorted(slices.Values(p.NonKeyAttributes)), []string{"connection_id", "provider"}) {
		t.Errorf("index projection = %s %v, want INCLUDE [provider connection_id]", p.ProjectionType, p.NonKeyAttributes)
	}
	if td.BillingModeSummary == nil || td.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing mode summary = %+v, want PAY_PER_REQUEST", td.BillingModeSummary)
	}

	full := store.Connection{
		Provider: "github", ConnectionID: "c1", Status: store.StatusConnected,
		AccessToken: "at", RefreshToken: "rt", TokenType: "Bearer", ExpiresAt: at.Add(time.Hour),
		Scope: "repo", Metadata: map[string]string{"user_id": "42"}, NextRefresh: at,
		FailureCount: 2, LastError: "boom", CreatedAt: at.Add(-time.Hour),
	}
	if _, err := s.SaveConnection(ctx, full); err != nil {
		t.Fatal(err)
	}
	item := getItem(t, client, table, "conn#github#c1", "conn")
	want := map[string]string{
		"pk": "S conn#github#c1", "sk": "S conn",
		"provider": "S github", "connection_id": "S c1", "status": "S connected",
		"sealed": "B", "token_type": "S Bearer",
		"expires_at": fmt.Sprint("N ", at.Add(time.Hour).Unix()), "scope": "S repo",
		"metadata":    "M map[user_id:S 42]",
		"refresh_due": fmt.Sprint("N ", at.Unix()), "due_shard": "S " + shard("conn#github#c1"),
		"failure_count": "N 2", "last_error": "S boom", "version": "N 1",
		"created_at": fmt.Sprint("N ", at.Add(-time.Hour).Unix()),
	}
	checkItem(t, item, want, "updated_at")
	if creds := openSealed(t, sealer, "conn#github#c1", item); creds != (store.Credentials{AccessToken: "at", RefreshToken: "rt"}) {
		t.Errorf("sealed credentials = %+v", creds)
	}

	// A minimal connection omits the empty attributes and stays out of the
	// sparse index.
	if _, err := s.SaveConnection(ctx, store.Connection{Provider: "github", ConnectionID: "c2", Status: store.StatusNeedsReauth, Metadata: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	item = getItem(t, client, table, "conn#github#c2", "conn")
	checkItem(t, item, map[string]string{
		"pk": "S conn#github#c2", "sk": "S conn", "provider": "S github", "connection_id": "S c2",
		"status": "S needs_reauth", "failure_count": "N 0", "version": "N 1",
	}, "created_at", "updated_at")

	if err := s.PutState(ctx, store.StateRecord{
		ID: "abc", Provider: "github", ConnectionID: "c1", ReturnTo: "https://app/",
		Scopes: []string{"a", "b"}, PKCEVerifier: "v", BindingHash: "h", ExpiresAt: at,
	}); err != nil {
		t.Fatal(err)
	}
	item = getItem(t, client, table, "state#abc", "state")
	checkItem(t, item, map[string]string{
		"pk": "S state#abc", "sk": "S state", "provider": "S github", "connection_id": "S c1",
		"return_to": "S https://app/", "scopes": "L [S a S b]", "sealed": "B",
		"binding_hash": "S h", "expires_at": fmt.Sprint("N ", at.Unix()), "ttl": fmt.Sprint("N ", at.Unix()),
	})
	if creds := openSealed(t, sealer, "state#abc", item); creds != (store.Credentials{PKCEVerifier: "v"}) {
		t.Errorf("sealed state credentials = %+v", creds)
	}

	// The index holds only keys, provider and connection_id: no tokens.
	out, err := client.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(table),
		IndexName:                 aws.String("due"),
		KeyConditionExpression:    aws.String("due_shard = :s"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: shard("conn#github#c1")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Items) != 1 {
		t.Fatalf("index shard holds %d items, want 1", len(out.Items))
	}
	if got := slices.Sorted(maps.Keys(out.Items[0])); !slices.Equal(got, []string{"connection_id", "due_shard", "pk", "provider", "refresh_due", "sk"}) {
		t.Errorf("index item attributes = %v", got)
	}
}

func shard(pk string) string {
	h := fnv.New32a()
	h.Write([]byte(pk))
	return fmt.Sprint("due#", h.Sum32()%dynamo.DueShards)
}

func getItem(t *testing.T, client *dynamodb.Client, table, pk, sk string) map[string]types.AttributeValue {
	t.Helper()
	out, err := client.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: aws.String(table),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: pk},
			"sk": &types.AttributeValueMemberS{Value: sk},
		},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.Item == nil {
		t.Fatalf("no item %s/%s", pk, sk)
	}
	return out.Item
}

// checkItem compares item, rendered by format, with want; the attributes
// named in present must exist with any N value.
func checkItem(t *testing.T, item map[string]types.AttributeValue, want map[string]string, present ...string) {
	t.Helper()
	got := make(map[string]string)
	for name, v := range item {
		if slices.Contains(present, name) {
			if _, ok := v.(*types.AttributeValueMemberN); !ok {
				t.Errorf("attribute %s is %T, want N", name, v)
			}
			continue
		}
		got[name] = format(v)
	}
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("attribute %s missing, want %q", name, w)
		} else if g != w {
			t.Errorf("attribute %s = %q, want %q", name, g, w)
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected attribute %s = %q", name, g)
		}
	}
	for _, name := range present {
		if _, ok := item[name]; !ok {
			t.Errorf("attribute %s missing", name)
		}
	}
}

func format(v types.AttributeValue) string {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return "S " + v.Value
	case *types.AttributeValueMemberN:
		return "N " + v.Value
	case *types.AttributeValueMemberB:
		return "B"
	case *types.AttributeValueMemberL:
		var s []string
		for _, e := range v.Value {
			s = append(s, format(e))
		}
		return fmt.Sprint("L ", s)
	case *types.AttributeValueMemberM:
		m := make(map[string]string)
		for k, e := range v.Value {
			m[k] = format(e)
		}
		return fmt.Sprint("M ", m)
	}
	return fmt.Sprintf("%T", v)
}

// openSealed opens an item's sealed attribute.
func openSealed(t *testing.T, s *envelope.Sealer, pk string, item map[string]types.AttributeValue) store.Credentials {
	t.Helper()
	b, ok := item["sealed"].(*types.AttributeValueMemberB)
	if !ok {
		t.Fatalf("item %s has no binary sealed attribute", pk)
	}
	creds, err := store.OpenCredentials(t.Context(), s, pk, b.Value)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

func keyNames(ks []types.KeySchemaElement) []string {
	var s []string
	for _, k := range ks {
		s = append(s, aws.ToString(k.AttributeName)+"/"+string(k.KeyType))
	}
	return s
}
