package dynamo_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/localkms"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/setup"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

const (
	testAccess  = "at-S20-6b1d9e0f4c"
	testRefresh = "rt-S20-0a7c33e5d2"
	testPKCE    = "pkce-S20-verifier-5f2b8a1c9d"
)

// kmsStore is a dynamo.Store sealing under a local-kms key, as in AWS.
type kmsStore struct {
	*dynamo.Store
	kms    *localkms.Server
	client *dynamodb.Client
	table  string
	keys   *envelope.KMS
}

func newKMSStore(t *testing.T) *kmsStore {
	client := dynalite.Shared(t).Client
	table := dynalite.NewTable(t, client)
	srv := localkms.Start(t)
	keys := envelope.NewKMS(srv.Client, srv.KeyARN, map[string]string{"oauthbroker:table": table})
	sealer := envelope.NewSealer(keys, 0)
	return &kmsStore{dynamo.NewWithSealers(client, table, sealer, sealer), srv, client, table, keys}
}

// fresh returns another Store on the same table and key with empty caches:
// another Lambda instance.
func (k *kmsStore) fresh() *dynamo.Store {
	sealer := envelope.NewSealer(k.keys, 0)
	return dynamo.NewWithSealers(k.client, k.table, sealer, sealer)
}

// freshCounted is fresh with its key's unwraps counted.
func (k *kmsStore) freshCounted() (*dynamo.Store, *countingKeys) {
	keys := &countingKeys{Keys: k.keys}
	sealer := envelope.NewSealer(keys, 0)
	return dynamo.NewWithSealers(k.client, k.table, sealer, sealer), keys
}

// saveConnected stores the connection acme/c1 with the test credentials
// and an authorization-code grant.
func (k *kmsStore) saveConnected(t *testing.T) store.Connection {
	t.Helper()
	saved, err := k.SaveConnection(t.Context(), store.Connection{Provider: "acme", ConnectionID: "c1", Status: store.StatusConnected,
		AccessToken: testAccess, RefreshToken: testRefresh, Grant: "authorization_code"})
	if err != nil {
		t.Fatal(err)
	}
	return saved
}

func (k *kmsStore) putRaw(t *testing.T, item map[string]types.AttributeValue) {
	t.Helper()
	if _, err := k.client.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(k.table), Item: item}); err != nil {
		t.Fatal(err)
	}
}

// TestS20_TokensSealedAtRest (RFC 6749 §10.3–10.4, RFC 6819 §5.1.4.1.3):
// the raw items — what a table export, a backup or a read-only IAM
// principal sees — hold only ciphertext, and a second instance opens them
// with one KMS call for many items.
func TestS20_TokensSealedAtRest(t *testing.T) {
	ctx := t.Context()
	k := newKMSStore(t)
	for i := range 50 {
		id := "c" + string(rune('A'+i))
		if _, err := k.SaveConnection(ctx, store.Connection{
			Provider: "acme", ConnectionID: id, Status: store.StatusConnected,
			AccessToken: testAccess + id, RefreshToken: testRefresh + id, ExpiresAt: time.Now().Add(time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.PutState(ctx, store.StateRecord{ID: "s1", Provider: "acme", ConnectionID: "cA", ReturnTo: "https://app.example/", PKCEVerifier: testPKCE, BindingHash: "h", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}

	out, err := k.client.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(k.table)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Items) != 51 {
		t.Fatalf("scan found %d items, want 51", len(out.Items))
	}
	for _, item := range out.Items {
		raw := dump(item)
		for _, secret := range []string{testAccess, testRefresh, testPKCE, "at-S20", "rt-S20", "pkce-S20"} {
			if strings.Contains(raw, secret) {
				t.Fatalf("raw item holds %q:\n%s", secret, raw)
			}
		}
		for _, attr := range []string{"access_token", "refresh_token", "pkce_verifier"} {
			if _, ok := item[attr]; ok {
				t.Errorf("raw item has a %s attribute", attr)
			}
		}
		if _, ok := item["sealed"].(*types.AttributeValueMemberB); !ok {
			t.Errorf("raw item has no binary sealed attribute:\n%s", raw)
		}
	}

	other := k.fresh()
	before := k.kms.Calls()
	for i := range 50 {
		id := "c" + string(rune('A'+i))
		c, err := other.GetConnection(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		if c.AccessToken != testAccess+id || c.RefreshToken != testRefresh+id {
			t.Fatalf("%s read back %q/%q", id, c.AccessToken, c.RefreshToken)
		}
	}
	if n := k.kms.Calls() - before; n != 1 {
		t.Errorf("a fresh instance reading 50 connections made %d KMS calls, want 1", n)
	}
	r, err := other.TakeState(ctx, "s1", "h")
	if err != nil || r.PKCEVerifier != testPKCE {
		t.Fatalf("TakeState = %q, %v", r.PKCEVerifier, err)
	}
}

// TestS20_CopiedCiphertextDoesNotOpen: a sealed value moved onto another
// item — alone, or with the rest of the item — does not open, and the read
// fails with a plain error rather than returning someone else's tokens.
func TestS20_CopiedCiphertextDoesNotOpen(t *testing.T) {
	ctx := t.Context()
	k := newKMSStore(t)
	if _, err := k.SaveConnection(ctx, store.Connection{Provider: "acme", ConnectionID: "victim", Status: store.StatusConnected, AccessToken: testAccess, RefreshToken: testRefresh}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.SaveConnection(ctx, store.Connection{Provider: "acme", ConnectionID: "attacker", Status: store.StatusConnected, AccessToken: "attacker-at-1234", RefreshToken: "attacker-rt-1234"}); err != nil {
		t.Fatal(err)
	}
	victim := getItem(t, k.client, k.table, "conn#acme#victim", "conn")

	// Only the sealed attribute moved onto the attacker's item.
	attacker := getItem(t, k.client, k.table, "conn#acme#attacker", "conn")
	attacker["sealed"] = victim["sealed"]
	k.putRaw(t, attacker)
	// The whole victim item, provider and connection_id included, under
	// another key (another provider's connection too).
	for _, pk := range []string{"conn#acme#copy", "conn#other#victim"} {
		whole := maps.Clone(victim)
		whole["pk"] = &types.AttributeValueMemberS{Value: pk}
		k.putRaw(t, whole)
	}
	// A state's sealed verifier moved onto another state.
	if err := k.PutState(ctx, store.StateRecord{ID: "s1", Provider: "acme", ConnectionID: "victim", PKCEVerifier: testPKCE, BindingHash: "h", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	st := getItem(t, k.client, k.table, "state#s1", "state")
	st["pk"] = &types.AttributeValueMemberS{Value: "state#s2"}
	k.putRaw(t, st)

	for i, s := range []*dynamo.Store{k.Store, k.fresh()} {
		for _, key := range []store.Key{{Provider: "acme", ConnectionID: "attacker"}, {Provider: "acme", ConnectionID: "copy"}, {Provider: "other", ConnectionID: "victim"}} {
			c, err := s.GetConnection(ctx, key.Provider, key.ConnectionID)
			if err == nil {
				t.Fatalf("%v: copied ciphertext opened: %q", key, c.AccessToken)
			}
			if c.Version == 0 || c.AccessToken != "" || c.RefreshToken != "" {
				t.Errorf("%v: unreadable connection came back as %+v, want its version without credentials (so a reconnect can replace it)", key, c)
			}
			if !errors.Is(err, envelope.ErrOpen) || strings.Contains(err.Error(), testAccess) {
				t.Errorf("%v: error %v, want ErrOpen without the token", key, err)
			}
			if i > 0 {
				continue // the first pass took the lease
			}
			if _, err := s.Lease(ctx, key, store.LeaseRequest{Owner: "o", Now: time.Now(), Until: time.Now().Add(time.Minute)}); !errors.Is(err, envelope.ErrOpen) {
				t.Errorf("%v: Lease error %v, want ErrOpen", key, err)
			}
		}
	}
	if _, err := k.TakeState(ctx, "s2", "h"); !errors.Is(err, envelope.ErrOpen) {
		t.Errorf("copied state: TakeState error %v, want ErrOpen", err)
	}
	// The victim's own item still opens.
	if c, err := k.fresh().GetConnection(ctx, "acme", "victim"); err != nil || c.AccessToken != testAccess {
		t.Fatalf("victim = %q, %v", c.AccessToken, err)
	}
}

// dump renders every attribute of an item, binary values as raw bytes.
func dump(item map[string]types.AttributeValue) string {
	var b strings.Builder
	for name, v := range item {
		b.WriteString(name + "=")
		if bin, ok := v.(*types.AttributeValueMemberB); ok {
			b.Write(bin.Value)
		} else {
			b.WriteString(format(v))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// countingKeys counts the data keys it is asked to unwrap.
type countingKeys struct {
	envelope.Keys
	decrypts atomic.Int64
}

func (c *countingKeys) Decrypt(ctx context.Context, wrapped []byte) ([]byte, error) {
	c.decrypts.Add(1)
	return c.Keys.Decrypt(ctx, wrapped)
}

// TestPeekNeverOpensCredentials: PeekConnection, what the internet-facing
// callback reads a connection with before replacing it, never asks KMS to
// unwrap a data key (the callback's role has no kms:Decrypt on tokens) and
// never receives the sealed credentials, yet returns the version and grant
// a reconnect needs — also of a connection whose credentials do not open.
func TestPeekNeverOpensCredentials(t *testing.T) {
	ctx := t.Context()
	k := newKMSStore(t)
	saved := k.saveConnected(t)
	cold, keys := k.freshCounted() // another instance: nothing cached
	c, err := cold.PeekConnection(ctx, "acme", "c1")
	if err != nil || c.Version != saved.Version || c.Grant != "authorization_code" || c.AccessToken != "" || c.RefreshToken != "" {
		t.Fatalf("PeekConnection = %+v, %v; want version %d and grant without credentials", c, err, saved.Version)
	}
	if n := keys.decrypts.Load(); n != 0 {
		t.Errorf("PeekConnection asked KMS to unwrap %d data keys, want none", n)
	}
	// The counter counts: a full read unwraps the data key.
	if _, err := cold.GetConnection(ctx, "acme", "c1"); err != nil || keys.decrypts.Load() != 1 {
		t.Fatalf("GetConnection: %v, %d unwraps, want 1", err, keys.decrypts.Load())
	}

	// Credentials that will never open do not hide the version.
	item := getItem(t, k.client, k.table, "conn#acme#c1", "conn")
	item["pk"] = &types.AttributeValueMemberS{Value: "conn#acme#moved"}
	item["connection_id"] = &types.AttributeValueMemberS{Value: "moved"}
	k.putRaw(t, item)
	if c, err := cold.PeekConnection(ctx, "acme", "moved"); err != nil || c.Version != saved.Version {
		t.Errorf("PeekConnection of unopenable credentials = %+v, %v", c, err)
	}
}

// TestContextsSeparateRecordKinds: the functions seal states and
// connections under encryption contexts naming the record kind
// (setup.Sealers), and KMS itself keeps them apart: with the only context
// the callback may use for kms:Decrypt (record "state"), a connection's
// data key does not open, while its state's does. Connections sealed
// before the kind was named (table-only context) still open for the
// functions that may open connections, and their next write moves them
// to the new context.
func TestContextsSeparateRecordKinds(t *testing.T) {
	ctx := t.Context()
	k := newKMSStore(t)
	env := setup.Env{TableName: k.table, TokenKeyID: k.kms.KeyARN}
	fns := setup.Store(k.client, k.kms.Client, env)
	if _, err := fns.SaveConnection(ctx, store.Connection{Provider: "acme", ConnectionID: "c1", Status: store.StatusConnected, AccessToken: testAccess, RefreshToken: testRefresh}); err != nil {
		t.Fatal(err)
	}
	if err := fns.PutState(ctx, store.StateRecord{ID: "s1", Provider: "acme", ConnectionID: "c1", PKCEVerifier: testPKCE, BindingHash: "h", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}

	// The callback's Decrypt context, for both kinds.
	stateOnly := envelope.NewSealer(envelope.NewKMS(k.kms.Client, k.kms.KeyARN, setup.EncryptionContext(k.table, setup.RecordState)), 0)
	callback := dynamo.NewWithSealers(k.client, k.table, stateOnly, stateOnly)
	if c, err := callback.GetConnection(ctx, "acme", "c1"); !errors.Is(err, envelope.ErrOpen) || c.AccessToken != "" {
		t.Errorf("a connection opened under the state context: %v", err)
	}
	if r, err := callback.TakeState(ctx, "s1", "h"); err != nil || r.PKCEVerifier != testPKCE {
		t.Errorf("the state did not open under the state context: %v", err)
	}
	// And the connection context does not open states.
	if err := fns.PutState(ctx, store.StateRecord{ID: "s2", Provider: "acme", ConnectionID: "c1", PKCEVerifier: testPKCE, BindingHash: "h", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	_, conns := setup.Sealers(k.kms.Client, env)
	if _, err := dynamo.NewWithSealers(k.client, k.table, conns, conns).TakeState(ctx, "s2", "h"); !errors.Is(err, envelope.ErrOpen) {
		t.Errorf("a state opened under the connection context: %v", err)
	}

	// A connection sealed before record kinds were named.
	legacySealer := envelope.NewSealer(envelope.NewKMS(k.kms.Client, k.kms.KeyARN, setup.LegacyEncryptionContext(k.table)), 0)
	legacy := dynamo.NewWithSealers(k.client, k.table, legacySealer, legacySealer)
	old, err := legacy.SaveConnection(ctx, store.Connection{Provider: "acme", ConnectionID: "old", Status: store.StatusConnected, AccessToken: testAccess, RefreshToken: testRefresh})
	if err != nil {
		t.Fatal(err)
	}
	c, err := setup.Store(k.client, k.kms.Client, env).GetConnection(ctx, "acme", "old")
	if err != nil || c.AccessToken != testAccess {
		t.Fatalf("a connection sealed under the table-only context did not open: %v", err)
	}
	if _, err := fns.SaveConnection(ctx, c); err != nil || c.Version != old.Version {
		t.Fatal(err)
	}
	newOnly := envelope.NewSealer(envelope.NewKMS(k.kms.Client, k.kms.KeyARN, setup.EncryptionContext(k.table, setup.RecordConnection)), 0)
	if c, err := dynamo.NewWithSealers(k.client, k.table, newOnly, newOnly).GetConnection(ctx, "acme", "old"); err != nil || c.AccessToken != testAccess {
		t.Errorf("after its next write, the old connection does not open under the new context: %v", err)
	}
}

// TestReplaceRetiresWithoutOpening: the callback replaces a connection on a
// reconnect without any right to open its credentials, so ReplaceConnection
// must retire them without unwrapping a data key: the retired item holds
// the very ciphertext the connection held, under the same pk, and only the
// functions that may open connections open it. Moved onto another
// connection's pk, it does not open.
func TestReplaceRetiresWithoutOpening(t *testing.T) {
	ctx := t.Context()
	k := newKMSStore(t)
	saved := k.saveConnected(t)
	before := getItem(t, k.client, k.table, "conn#acme#c1", "conn")["sealed"].(*types.AttributeValueMemberB).Value

	callback, keys := k.freshCounted()
	peeked, err := callback.PeekConnection(ctx, "acme", "c1")
	if err != nil || peeked.Version != saved.Version {
		t.Fatalf("PeekConnection: %+v, %v", peeked, err)
	}
	peeked.AccessToken, peeked.RefreshToken = "at-new", "rt-new"
	if _, err := callback.ReplaceConnection(ctx, peeked); err != nil {
		t.Fatalf("ReplaceConnection: %v", err)
	}
	if n := keys.decrypts.Load(); n != 0 {
		t.Errorf("ReplaceConnection asked KMS to unwrap %d data keys, want none", n)
	}

	now := time.Now().Add(time.Second)
	due, err := k.ListDue(ctx, now, 10)
	if err != nil || len(due) != 1 || due[0].Retired == "" {
		t.Fatalf("ListDue = %v, %v; want the retired grant", due, err)
	}
	raw := getItem(t, k.client, k.table, "conn#acme#c1", "retired#"+due[0].Retired)
	for name, v := range raw {
		if s, ok := v.(*types.AttributeValueMemberS); ok && (strings.Contains(s.Value, testAccess) || strings.Contains(s.Value, testRefresh)) {
			t.Errorf("retired item attribute %s holds a plaintext token", name)
		}
	}
	if got := raw["sealed"].(*types.AttributeValueMemberB).Value; string(got) != string(before) {
		t.Error("the retired item's ciphertext is not the one the connection held")
	}
	if _, ok := raw["ttl"]; !ok {
		t.Error("the retired item has no ttl: the table would keep it forever")
	}

	// Moved onto another connection's pk, it does not open.
	moved := maps.Clone(raw)
	moved["pk"] = &types.AttributeValueMemberS{Value: "conn#acme#other"}
	moved["connection_id"] = &types.AttributeValueMemberS{Value: "other"}
	k.putRaw(t, moved)
	if _, err := k.fresh().LeaseRetired(ctx, store.Key{Provider: "acme", ConnectionID: "other", Retired: due[0].Retired}, now, now.Add(time.Minute)); !errors.Is(err, envelope.ErrOpen) {
		t.Errorf("a retired grant moved to another connection: %v, want ErrOpen", err)
	}
	g, err := k.fresh().LeaseRetired(ctx, due[0], now, now.Add(time.Minute))
	if err != nil || g.AccessToken != testAccess || g.RefreshToken != testRefresh {
		t.Errorf("LeaseRetired = %q/%q, %v; want the replaced tokens", g.AccessToken, g.RefreshToken, err)
	}
	// Dropped, its ciphertext is gone from the table.
	if err := k.DropRetired(ctx, due[0]); err != nil {
		t.Fatal(err)
	}
	if _, ok := getItem(t, k.client, k.table, "conn#acme#c1", "retired#"+due[0].Retired)["sealed"]; ok {
		t.Error("a dropped retired grant keeps its ciphertext")
	}
}
