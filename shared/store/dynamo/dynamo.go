// Package dynamo implements store.Store on Amazon DynamoDB.
//
// Everything lives in one table keyed by pk (S) and sk (S):
//
//	conn#<provider>#<connection_id>  conn           a Connection
//	conn#<provider>#<connection_id>  retired#<id>   a retired grant of it
//	conn#<provider>#<connection_id>  pending#<id>   a pending grant for it
//	state#<id>                       state          a StateRecord
//	link#<id>                        link           a connect link's LinkUse
//
// A sparse global secondary index named "due" (HASH due_shard, RANGE
// refresh_due) holds the connections that have a NextRefresh, spread over
// DueShards shards; it projects only provider and connection_id, never
// tokens. States carry a ttl attribute for the table's TTL cleanup.
//
// Credentials — a connection's access and refresh tokens, a state's PKCE
// verifier — are never stored in the clear: they are sealed together into
// one binary attribute, "sealed", with the item's pk as associated data (see
// store.SealCredentials and package envelope).
//
// Only single-item conditional writes are used: no transactions.
//
// Times are stored as unix seconds: they come back truncated to the second,
// in UTC, and a zero time stays zero.
package dynamo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/oauthbroker/oauthbroker/shared/clock"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// DueShards is the number of due_shard partitions of the "due" index.
// ListDue queries each of them.
const DueShards = 8

const (
	dueIndex      = "due"
	connSK        = "conn"
	stateSK       = "state"
	retiredPrefix = "retired#"
	pendingPrefix = "pending#"
	linkSK        = "link"
)

// Store is a store.Store on one DynamoDB table.
type Store struct {
	client *dynamodb.Client
	table  string
	sealer *envelope.Sealer // connections' credentials
	states *envelope.Sealer // states' PKCE verifiers

	// Now is the record clock of the times the store stamps itself:
	// created_at, updated_at, and a retired grant's retired_at, due time
	// and TTL (nil: time.Now). Times a request is judged by (a lease's Now
	// and Until, a listing's now) come with the request.
	Now func() time.Time
}

func (s *Store) now() time.Time { return clock.Clock{Record: s.Now}.Now() }

var _ store.Store = (*Store)(nil)

// NewWithSealers returns a Store on the named table, which must have the
// schema of template.yaml's ConnectionsTable, sealing states with one
// sealer and connections with another, whose data keys can then be opened
// by different roles (in AWS, under different KMS encryption contexts: see
// setup.Sealers). Where one role opens both, pass one sealer twice.
func NewWithSealers(client *dynamodb.Client, table string, states, connections *envelope.Sealer) *Store {
	if states == nil || connections == nil {
		panic("dynamo: NewWithSealers without a sealer")
	}
	return &Store{client: client, table: table, sealer: connections, states: states}
}

// stateItem and connItem are the stored layouts (see the package comment).
type stateItem struct {
	PK           string            `dynamodbav:"pk"`
	SK           string            `dynamodbav:"sk"`
	Provider     string            `dynamodbav:"provider"`
	ConnectionID string            `dynamodbav:"connection_id"`
	ReturnTo     string            `dynamodbav:"return_to"`
	Scopes       []string          `dynamodbav:"scopes,omitempty"`
	Sealed       []byte            `dynamodbav:"sealed,omitempty"`
	Grant        string            `dynamodbav:"grant,omitempty"`
	Params       map[string]string `dynamodbav:"params,omitempty"`
	BindingHash  string            `dynamodbav:"binding_hash"`
	ExpiresAt    int64             `dynamodbav:"expires_at"`
	TTL          int64             `dynamodbav:"ttl"`
}

type connItem struct {
	PK           string            `dynamodbav:"pk"`
	SK           string            `dynamodbav:"sk"`
	Provider     string            `dynamodbav:"provider"`
	ConnectionID string            `dynamodbav:"connection_id"`
	Status       string            `dynamodbav:"status"`
	Sealed       []byte            `dynamodbav:"sealed,omitempty"`
	TokenType    string            `dynamodbav:"token_type,omitempty"`
	ExpiresAt    int64             `dynamodbav:"expires_at,omitempty"`
	Scope        string            `dynamodbav:"scope,omitempty"`
	Metadata     map[string]string `dynamodbav:"metadata,omitempty"`
	Grant        string            `dynamodbav:"grant,omitempty"`
	Params       map[string]string `dynamodbav:"params,omitempty"`
	NextRefresh  int64             `dynamodbav:"refresh_due,omitempty"`
	DueShard     string            `dynamodbav:"due_shard,omitempty"`
	FailureCount int               `dynamodbav:"failure_count"`
	FailureClass string            `dynamodbav:"failure_class,omitempty"`
	LastError    string            `dynamodbav:"last_error,omitempty"`
	LeaseOwner   string            `dynamodbav:"lease_owner,omitempty"`
	LeaseUntil   int64             `dynamodbav:"lease_until,omitempty"`
	Version      int64             `dynamodbav:"version"`
	CreatedAt    int64             `dynamodbav:"created_at"`
	UpdatedAt    int64             `dynamodbav:"updated_at"`
}

// retiredItem is a retired grant's item: the replaced connection's sealed
// credentials, as they were stored under the same pk, and its parameters.
type retiredItem struct {
	PK           string            `dynamodbav:"pk"`
	SK           string            `dynamodbav:"sk"`
	Provider     string            `dynamodbav:"provider"`
	ConnectionID string            `dynamodbav:"connection_id"`
	Params       map[string]string `dynamodbav:"params,omitempty"`
	Sealed       []byte            `dynamodbav:"sealed,omitempty"`
	NextRefresh  int64             `dynamodbav:"refresh_due,omitempty"`
	DueShard     string            `dynamodbav:"due_shard,omitempty"`
	Attempts     int               `dynamodbav:"attempts"`
	Successor    []string          `dynamodbav:"successor,omitempty"` // store.Successor of the replacing tokens
	RetiredAt    int64             `dynamodbav:"retired_at"`
	TTL          int64             `dynamodbav:"ttl"`
}

// pendingItem is a pending grant's item: the connection it would become,
// its tokens sealed under the connection's pk, due (refresh_due) when it
// expires (pending_until) unconfirmed.
type pendingItem struct {
	PK           string            `dynamodbav:"pk"`
	SK           string            `dynamodbav:"sk"`
	Provider     string            `dynamodbav:"provider"`
	ConnectionID string            `dynamodbav:"connection_id"`
	Sealed       []byte            `dynamodbav:"sealed,omitempty"`
	TokenType    string            `dynamodbav:"token_type,omitempty"`
	ExpiresAt    int64             `dynamodbav:"expires_at,omitempty"`
	Scope        string            `dynamodbav:"scope,omitempty"`
	Metadata     map[string]string `dynamodbav:"metadata,omitempty"`
	Grant        string            `dynamodbav:"grant,omitempty"`
	Params       map[string]string `dynamodbav:"params,omitempty"`
	NextRefresh  int64             `dynamodbav:"next_refresh,omitempty"`
	Due          int64             `dynamodbav:"refresh_due,omitempty"`
	DueShard     string            `dynamodbav:"due_shard,omitempty"`
	Attempts     int               `dynamodbav:"attempts"`
	PendingUntil int64             `dynamodbav:"pending_until"`
	CreatedAt    int64             `dynamodbav:"created_at"`
	TTL          int64             `dynamodbav:"ttl"`
}

// linkItem is a connect link's use: which browser used it first.
type linkItem struct {
	PK          string `dynamodbav:"pk"`
	SK          string `dynamodbav:"sk"`
	BindingHash string `dynamodbav:"binding_hash"`
	ExpiresAt   int64  `dynamodbav:"expires_at"`
	TTL         int64  `dynamodbav:"ttl"`
}

// UseLink implements store.Store with one PutItem, conditional on the
// link never having been used or having been used by the same browser.
func (s *Store) UseLink(ctx context.Context, u store.LinkUse) error {
	if u.ID == "" || u.BindingHash == "" {
		return errors.New("dynamo: use link: empty ID or binding")
	}
	item, err := attributevalue.MarshalMap(linkItem{
		PK: store.LinkRecordKey(u.ID), SK: linkSK, BindingHash: u.BindingHash,
		ExpiresAt: unix(u.ExpiresAt), TTL: unix(u.ExpiresAt),
	})
	if err != nil {
		return fmt.Errorf("dynamo: use link: %w", err)
	}
	_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 aws.String(s.table),
		Item:                      item,
		ConditionExpression:       aws.String("attribute_not_exists(#pk) OR #bh = :h"),
		ExpressionAttributeNames:  map[string]string{"#pk": "pk", "#bh": "binding_hash"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":h": &types.AttributeValueMemberS{Value: u.BindingHash}},
	})
	if err != nil {
		return writeFailed("use link", err, store.ErrConflict)
	}
	return nil
}

// PutPending implements store.Store.
func (s *Store) PutPending(ctx context.Context, g store.PendingGrant) error {
	k, c := g.Key, g.Connection
	if err := k.CheckPending(); err != nil {
		return fmt.Errorf("dynamo: put pending: %w", err)
	}
	pk := connPK(k.Provider, k.ConnectionID)
	it := pendingItem{
		PK: pk, SK: pendingPrefix + k.Pending, Provider: k.Provider, ConnectionID: k.ConnectionID,
		TokenType: c.TokenType, ExpiresAt: unix(c.ExpiresAt), Scope: c.Scope, Metadata: nilIfEmptyMap(c.Metadata),
		Grant: c.Grant, Params: nilIfEmptyMap(c.Params), NextRefresh: unix(c.NextRefresh),
		Due: g.ExpiresAt.Unix(), DueShard: dueShard(pk), PendingUntil: g.ExpiresAt.Unix(),
		CreatedAt: s.now().Unix(), TTL: g.ExpiresAt.Add(store.RetiredTTL).Unix(),
	}
	sealed, err := store.SealCredentials(ctx, s.sealer, pk, store.Credentials{AccessToken: c.AccessToken, RefreshToken: c.RefreshToken})
	if err != nil {
		return fmt.Errorf("dynamo: put pending: %w", err)
	}
	it.Sealed = sealed
	return s.putNew(ctx, "put pending", it)
}

// putNew puts it, an item layout, if no item with its key exists
// (ErrConflict otherwise); op names the operation in errors.
func (s *Store) putNew(ctx context.Context, op string, it any) error {
	item, err := attributevalue.MarshalMap(it)
	if err != nil {
		return fmt.Errorf("dynamo: %s: %w", op, err)
	}
	_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(s.table),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": "pk"},
	})
	if err != nil {
		return writeFailed(op, err, store.ErrConflict)
	}
	return nil
}

// TakePending implements store.Store with one conditional DeleteItem that
// returns the deleted item: it must still hold its credentials, never
// have been leased for revocation, and not have expired.
func (s *Store) TakePending(ctx context.Context, k store.Key, now time.Time) (store.PendingGrant, error) {
	if err := k.CheckPending(); err != nil {
		return store.PendingGrant{}, fmt.Errorf("dynamo: take pending: %w", err)
	}
	num := func(n int64) types.AttributeValue {
		return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
	}
	pk := connPK(k.Provider, k.ConnectionID)
	out, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(pk, pendingPrefix+k.Pending),
		ConditionExpression:       aws.String("attribute_exists(#s) AND #a = :zero AND #pu > :now"),
		ExpressionAttributeNames:  map[string]string{"#s": "sealed", "#a": "attempts", "#pu": "pending_until"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":zero": num(0), ":now": num(now.Unix())},
		ReturnValues:              types.ReturnValueAllOld,
	})
	if err != nil {
		return store.PendingGrant{}, writeFailed("take pending", err, store.ErrNotFound)
	}
	var it pendingItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &it); err != nil {
		return store.PendingGrant{}, fmt.Errorf("dynamo: take pending: decode: %w", err)
	}
	g := store.PendingGrant{Key: k, ExpiresAt: fromUnix(it.PendingUntil), Connection: store.Connection{
		Provider: k.Provider, ConnectionID: k.ConnectionID, TokenType: it.TokenType, ExpiresAt: fromUnix(it.ExpiresAt),
		Scope: it.Scope, Metadata: nilIfEmptyMap(it.Metadata), Grant: it.Grant, Params: nilIfEmptyMap(it.Params),
		NextRefresh: fromUnix(it.NextRefresh),
	}}
	creds, err := store.OpenCredentials(ctx, s.sealer, pk, it.Sealed)
	if err != nil {
		return g, fmt.Errorf("dynamo: take pending: %w", err)
	}
	g.Connection.AccessToken, g.Connection.RefreshToken = creds.AccessToken, creds.RefreshToken
	return g, nil
}

// newRetiredID returns a random retired-grant id.
func newRetiredID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// PutState implements store.Store.
func (s *Store) PutState(ctx context.Context, r store.StateRecord) error {
	if r.ID == "" {
		return errors.New("dynamo: put state: empty ID")
	}
	it := stateItem{
		PK:           statePK(r.ID),
		SK:           stateSK,
		Provider:     r.Provider,
		ConnectionID: r.ConnectionID,
		ReturnTo:     r.ReturnTo,
		Scopes:       nilIfEmpty(r.Scopes),
		Grant:        r.Grant,
		Params:       nilIfEmptyMap(r.Params),
		BindingHash:  r.BindingHash,
		ExpiresAt:    unix(r.ExpiresAt),
		TTL:          unix(r.ExpiresAt),
	}
	if r.PKCEVerifier != "" {
		sealed, err := store.SealCredentials(ctx, s.states, it.PK, store.Credentials{PKCEVerifier: r.PKCEVerifier})
		if err != nil {
			return fmt.Errorf("dynamo: put state: %w", err)
		}
		it.Sealed = sealed
	}
	return s.putNew(ctx, "put state", it)
}

// TakeState implements store.Store.
func (s *Store) TakeState(ctx context.Context, id, bindingHash string) (store.StateRecord, error) {
	out, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(statePK(id), stateSK),
		ConditionExpression:       aws.String("attribute_exists(#pk) AND #bh = :h"),
		ExpressionAttributeNames:  map[string]string{"#pk": "pk", "#bh": "binding_hash"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":h": &types.AttributeValueMemberS{Value: bindingHash}},
		ReturnValues:              types.ReturnValueAllOld,
	})
	if err != nil {
		return store.StateRecord{}, writeFailed("take state", err, store.ErrNotFound)
	}
	var it stateItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &it); err != nil {
		return store.StateRecord{}, fmt.Errorf("dynamo: take state: decode: %w", err)
	}
	var creds store.Credentials
	if it.Sealed != nil {
		if creds, err = store.OpenCredentials(ctx, s.states, statePK(id), it.Sealed); err != nil {
			return store.StateRecord{}, fmt.Errorf("dynamo: take state: %w", err)
		}
	}
	return store.StateRecord{
		ID:           id,
		Provider:     it.Provider,
		ConnectionID: it.ConnectionID,
		ReturnTo:     it.ReturnTo,
		Scopes:       nilIfEmpty(it.Scopes),
		PKCEVerifier: creds.PKCEVerifier,
		Grant:        it.Grant,
		Params:       nilIfEmptyMap(it.Params),
		BindingHash:  it.BindingHash,
		ExpiresAt:    fromUnix(it.ExpiresAt),
	}, nil
}

// GetConnection implements store.Store. It reads consistently.
func (s *Store) GetConnection(ctx context.Context, provider, connectionID string) (store.Connection, error) {
	if err := store.CheckKey(provider, connectionID); err != nil {
		return store.Connection{}, fmt.Errorf("dynamo: get connection: %w", err)
	}
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            key(connPK(provider, connectionID), connSK),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return store.Connection{}, fmt.Errorf("dynamo: get connection: %w", err)
	}
	if out.Item == nil {
		return store.Connection{}, store.ErrNotFound
	}
	c, err := s.decodeConn(ctx, connPK(provider, connectionID), out.Item)
	if err != nil {
		return c, fmt.Errorf("dynamo: get connection: %w", err)
	}
	return c, nil
}

// peekAttributes are the connection item's attributes but its sealed
// credentials: PeekConnection does not even read those.
var peekAttributes = []string{
	"provider", "connection_id", "status", "token_type", "expires_at", "scope", "metadata", "grant", "params",
	"refresh_due", "failure_count", "failure_class", "last_error", "lease_owner", "lease_until", "version", "created_at", "updated_at",
}

// PeekConnection implements store.Store: one consistent GetItem that
// projects away the sealed credentials, so they never leave the table.
func (s *Store) PeekConnection(ctx context.Context, provider, connectionID string) (store.Connection, error) {
	if err := store.CheckKey(provider, connectionID); err != nil {
		return store.Connection{}, fmt.Errorf("dynamo: peek connection: %w", err)
	}
	names := make(map[string]string, len(peekAttributes))
	refs := make([]string, len(peekAttributes))
	for i, a := range peekAttributes {
		ref := "#a" + strconv.Itoa(i)
		names[ref], refs[i] = a, ref
	}
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(s.table),
		Key:                      key(connPK(provider, connectionID), connSK),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String(strings.Join(refs, ", ")),
		ExpressionAttributeNames: names,
	})
	if err != nil {
		return store.Connection{}, fmt.Errorf("dynamo: peek connection: %w", err)
	}
	if out.Item == nil {
		return store.Connection{}, store.ErrNotFound
	}
	var it connItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return store.Connection{}, fmt.Errorf("dynamo: peek connection: decode: %w", err)
	}
	return toConnection(it, store.Credentials{}), nil
}

// decodeConn decodes the connection item read under pk, opening its
// credentials with pk as associated data: a sealed value copied onto another
// item, even with the rest of its attributes, does not open. If they do not
// open, it returns the connection without them and the error.
func (s *Store) decodeConn(ctx context.Context, pk string, item map[string]types.AttributeValue) (store.Connection, error) {
	var it connItem
	if err := attributevalue.UnmarshalMap(item, &it); err != nil {
		return store.Connection{}, fmt.Errorf("decode: %w", err)
	}
	if it.Sealed == nil {
		return toConnection(it, store.Credentials{}), nil
	}
	creds, err := store.OpenCredentials(ctx, s.sealer, pk, it.Sealed)
	if err != nil {
		return toConnection(it, store.Credentials{}), err
	}
	return toConnection(it, creds), nil
}

// toConnection converts a decoded item and its opened credentials.
func toConnection(it connItem, creds store.Credentials) store.Connection {
	return store.Connection{
		Provider:     it.Provider,
		ConnectionID: it.ConnectionID,
		Status:       store.Status(it.Status),
		AccessToken:  creds.AccessToken,
		RefreshToken: creds.RefreshToken,
		TokenType:    it.TokenType,
		ExpiresAt:    fromUnix(it.ExpiresAt),
		Scope:        it.Scope,
		Metadata:     nilIfEmptyMap(it.Metadata),
		Grant:        it.Grant,
		Params:       nilIfEmptyMap(it.Params),
		NextRefresh:  fromUnix(it.NextRefresh),
		FailureCount: it.FailureCount,
		FailureClass: it.FailureClass,
		LastError:    it.LastError,
		Lease:        store.Lease{Owner: it.LeaseOwner, Until: fromUnix(it.LeaseUntil)},
		Version:      it.Version,
		CreatedAt:    fromUnix(it.CreatedAt),
		UpdatedAt:    fromUnix(it.UpdatedAt),
	}
}

// SaveConnection implements store.Store.
func (s *Store) SaveConnection(ctx context.Context, c store.Connection) (store.Connection, error) {
	saved, _, err := s.save(ctx, c, "", false)
	return saved, err
}

// SaveLeased implements store.Store.
func (s *Store) SaveLeased(ctx context.Context, c store.Connection, owner string) (store.Connection, error) {
	if owner == "" {
		return store.Connection{}, errors.New("dynamo: save leased: empty owner")
	}
	saved, _, err := s.save(ctx, c, owner, false)
	return saved, err
}

// ReplaceConnection implements store.Store: the PutItem that replaces the
// connection returns the item it replaced, whose sealed credentials are
// then put, as they are, on a retired-grant item under the same pk (the
// associated data they were sealed with). Two single-item writes, not a
// transaction: if the second fails, the grant stays alive at the provider
// (ErrNotRetired) but the reconnect stands.
func (s *Store) ReplaceConnection(ctx context.Context, c store.Connection) (store.Connection, error) {
	if c.Version == 0 {
		return store.Connection{}, errors.New("dynamo: replace connection: version 0 replaces nothing")
	}
	saved, old, err := s.save(ctx, c, "", true)
	if err != nil {
		return saved, err
	}
	var it connItem
	if err := attributevalue.UnmarshalMap(old, &it); err != nil {
		return saved, fmt.Errorf("dynamo: replace connection: %w: decode: %v", store.ErrNotRetired, err)
	}
	if it.Sealed == nil {
		return saved, nil
	}
	pk := connPK(c.Provider, c.ConnectionID)
	now := s.now()
	r := retiredItem{
		PK: pk, SK: retiredPrefix + newRetiredID(), Provider: c.Provider, ConnectionID: c.ConnectionID,
		Params: nilIfEmptyMap(it.Params), Sealed: it.Sealed,
		Successor:   store.Successor(c.AccessToken, c.RefreshToken),
		NextRefresh: now.Unix(), DueShard: dueShard(pk),
		RetiredAt: now.Unix(), TTL: now.Add(store.RetiredTTL).Unix(),
	}
	item, err := attributevalue.MarshalMap(r)
	if err == nil {
		_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item})
	}
	if err != nil {
		return saved, fmt.Errorf("dynamo: replace connection: %w: %v", store.ErrNotRetired, err)
	}
	return saved, nil
}

// save puts the whole item (without a lease) conditional on the version
// and, when owner is set, on the lease being owner's. With returnOld it
// also returns the item it replaced.
func (s *Store) save(ctx context.Context, c store.Connection, owner string, returnOld bool) (store.Connection, map[string]types.AttributeValue, error) {
	if err := store.CheckKey(c.Provider, c.ConnectionID); err != nil {
		return store.Connection{}, nil, fmt.Errorf("dynamo: save connection: %w", err)
	}
	now := s.now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt = now
	expected := c.Version
	c.Version++
	c.Lease = store.Lease{}

	pk := connPK(c.Provider, c.ConnectionID)
	it := connItem{
		PK:           pk,
		SK:           connSK,
		Provider:     c.Provider,
		ConnectionID: c.ConnectionID,
		Status:       string(c.Status),
		TokenType:    c.TokenType,
		ExpiresAt:    unix(c.ExpiresAt),
		Scope:        c.Scope,
		Metadata:     nilIfEmptyMap(c.Metadata),
		Grant:        c.Grant,
		Params:       nilIfEmptyMap(c.Params),
		NextRefresh:  unix(c.NextRefresh),
		FailureCount: c.FailureCount,
		FailureClass: c.FailureClass,
		LastError:    c.LastError,
		Version:      c.Version,
		CreatedAt:    unix(c.CreatedAt),
		UpdatedAt:    unix(c.UpdatedAt),
	}
	if it.NextRefresh != 0 {
		it.DueShard = dueShard(pk)
	}
	if creds := (store.Credentials{AccessToken: c.AccessToken, RefreshToken: c.RefreshToken}); !creds.IsZero() {
		sealed, err := store.SealCredentials(ctx, s.sealer, pk, creds)
		if err != nil {
			return store.Connection{}, nil, fmt.Errorf("dynamo: save connection: %w", err)
		}
		it.Sealed = sealed
	}
	item, err := attributevalue.MarshalMap(it)
	if err != nil {
		return store.Connection{}, nil, fmt.Errorf("dynamo: save connection: %w", err)
	}
	in := &dynamodb.PutItemInput{
		TableName:                aws.String(s.table),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": "pk"},
	}
	switch {
	case owner != "":
		in.ConditionExpression = aws.String("#v = :v AND #lo = :o")
		in.ExpressionAttributeNames = map[string]string{"#v": "version", "#lo": "lease_owner"}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{
			":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(expected, 10)},
			":o": &types.AttributeValueMemberS{Value: owner},
		}
	case expected != 0:
		in.ConditionExpression = aws.String("#v = :v")
		in.ExpressionAttributeNames = map[string]string{"#v": "version"}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{
			":v": &types.AttributeValueMemberN{Value: strconv.FormatInt(expected, 10)},
		}
	}
	if returnOld {
		in.ReturnValues = types.ReturnValueAllOld
	}
	out, err := s.client.PutItem(ctx, in)
	if err != nil {
		return store.Connection{}, nil, writeFailed("save connection", err, store.ErrConflict)
	}
	c.Metadata = nilIfEmptyMap(maps.Clone(c.Metadata))
	c.Params = nilIfEmptyMap(maps.Clone(c.Params))
	for _, t := range []*time.Time{&c.ExpiresAt, &c.NextRefresh, &c.CreatedAt, &c.UpdatedAt} {
		*t = fromUnix(unix(*t))
	}
	return c, out.Attributes, nil
}

// DeleteConnection implements store.Store with one conditional DeleteItem
// that returns the deleted item.
func (s *Store) DeleteConnection(ctx context.Context, provider, connectionID string) (store.Connection, error) {
	if err := store.CheckKey(provider, connectionID); err != nil {
		return store.Connection{}, fmt.Errorf("dynamo: delete connection: %w", err)
	}
	pk := connPK(provider, connectionID)
	out, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                aws.String(s.table),
		Key:                      key(pk, connSK),
		ConditionExpression:      aws.String("attribute_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": "pk"},
		ReturnValues:             types.ReturnValueAllOld,
	})
	if err != nil {
		return store.Connection{}, writeFailed("delete connection", err, store.ErrNotFound)
	}
	c, err := s.decodeConn(ctx, pk, out.Attributes)
	if err != nil {
		// Deleted all the same; only its credentials could not be opened.
		return store.Connection{Provider: provider, ConnectionID: connectionID}, fmt.Errorf("dynamo: delete connection: %w", err)
	}
	return c, nil
}

// Lease implements store.Store with one conditional UpdateItem that
// returns the item as updated, so taking the lease is also the read.
func (s *Store) Lease(ctx context.Context, k store.Key, req store.LeaseRequest) (store.Connection, error) {
	if err := req.Check(k); err != nil {
		return store.Connection{}, fmt.Errorf("dynamo: lease: %w", err)
	}
	num := func(n int64) types.AttributeValue {
		return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
	}
	names := map[string]string{"#pk": "pk", "#lo": "lease_owner", "#lu": "lease_until", "#v": "version", "#ua": "updated_at"}
	values := map[string]types.AttributeValue{
		":o": &types.AttributeValueMemberS{Value: req.Owner}, ":u": num(req.Until.Unix()),
		":now": num(req.Now.Unix()), ":one": num(1), ":t": num(s.now().Unix()),
	}
	update := "SET #lo = :o, #lu = :u, #v = #v + :one, #ua = :t"
	cond := "attribute_exists(#pk) AND (attribute_not_exists(#lu) OR #lu < :now)"
	if req.Due {
		names["#d"] = "refresh_due"
		update += ", #d = :u"
		cond += " AND #d <= :now"
	}
	if req.Version != 0 {
		values[":v"] = num(req.Version)
		cond += " AND #v = :v"
	}
	out, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(connPK(k.Provider, k.ConnectionID), connSK),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		return store.Connection{}, writeFailed("lease", err, store.ErrConflict)
	}
	c, err := s.decodeConn(ctx, connPK(k.Provider, k.ConnectionID), out.Attributes)
	if err != nil {
		return store.Connection{}, fmt.Errorf("dynamo: lease: %w", err)
	}
	return c, nil
}

// LeaseRetired implements store.Store with one conditional UpdateItem that
// returns the item as updated.
func (s *Store) LeaseRetired(ctx context.Context, k store.Key, now, until time.Time) (store.RetiredGrant, error) {
	if err := k.CheckApart(); err != nil {
		return store.RetiredGrant{}, fmt.Errorf("dynamo: lease retired: %w", err)
	}
	num := func(n int64) types.AttributeValue {
		return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
	}
	pk := connPK(k.Provider, k.ConnectionID)
	out, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       key(pk, apartSK(k)),
		UpdateExpression:          aws.String("SET #d = :u, #a = #a + :one"),
		ConditionExpression:       aws.String("attribute_exists(#s) AND #d <= :now"),
		ExpressionAttributeNames:  map[string]string{"#d": "refresh_due", "#a": "attempts", "#s": "sealed"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":u": num(until.Unix()), ":now": num(now.Unix()), ":one": num(1)},
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		return store.RetiredGrant{}, writeFailed("lease retired", err, store.ErrConflict)
	}
	var it struct {
		retiredItem
		PendingUntil int64 `dynamodbav:"pending_until"`
	}
	if err := attributevalue.UnmarshalMap(out.Attributes, &it); err != nil {
		return store.RetiredGrant{}, fmt.Errorf("dynamo: lease retired: decode: %w", err)
	}
	g := store.RetiredGrant{Key: k, Params: nilIfEmptyMap(it.Params), Attempts: it.Attempts, RetiredAt: fromUnix(it.RetiredAt)}
	if k.Pending != "" {
		g.RetiredAt = fromUnix(it.PendingUntil) // retired when it expired unconfirmed
	}
	creds, err := store.OpenCredentials(ctx, s.sealer, pk, it.Sealed)
	if err != nil {
		return g, fmt.Errorf("dynamo: lease retired: %w", err)
	}
	g.AccessToken, g.RefreshToken = creds.AccessToken, creds.RefreshToken
	g.MarkInUse(it.Successor)
	return g, nil
}

// DropRetired implements store.Store with an UpdateItem that removes the
// sealed credentials and the index keys: the item itself goes with its
// TTL, so the refresh function needs no right to delete items.
func (s *Store) DropRetired(ctx context.Context, k store.Key) error {
	if err := k.CheckApart(); err != nil {
		return fmt.Errorf("dynamo: drop retired: %w", err)
	}
	_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.table),
		Key:                      key(connPK(k.Provider, k.ConnectionID), apartSK(k)),
		UpdateExpression:         aws.String("REMOVE #s, #d, #ds, #p, #su"),
		ConditionExpression:      aws.String("attribute_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#s": "sealed", "#d": "refresh_due", "#ds": "due_shard", "#p": "params", "#su": "successor", "#pk": "pk"},
	})
	if err != nil && !isConditionFailed(err) {
		return fmt.Errorf("dynamo: drop retired: %w", err)
	}
	return nil
}

// apartSK is the sort key of the retired or pending grant k names.
func apartSK(k store.Key) string {
	if k.Pending != "" {
		return pendingPrefix + k.Pending
	}
	return retiredPrefix + k.Retired
}

// ListDue implements store.Store. It queries every shard of the "due" index
// (an eventually consistent read) and merges the results.
func (s *Store) ListDue(ctx context.Context, now time.Time, limit int, skip ...string) ([]store.Key, error) {
	if limit <= 0 {
		return nil, nil
	}
	var all []store.DueKey
	for n := range DueShards {
		in := &dynamodb.QueryInput{
			TableName:                aws.String(s.table),
			IndexName:                aws.String(dueIndex),
			KeyConditionExpression:   aws.String("#s = :s AND #d <= :now"),
			ExpressionAttributeNames: map[string]string{"#s": "due_shard", "#d": "refresh_due"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":s":   &types.AttributeValueMemberS{Value: shardName(n)},
				":now": &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)},
			},
			Limit: aws.Int32(int32(min(limit, 1000))),
		}
		if len(skip) > 0 {
			// provider is projected into the index; the filter runs after
			// the read, so pages may come back short and the loop goes on.
			ph := make([]string, len(skip))
			for i, p := range skip {
				ph[i] = ":skip" + strconv.Itoa(i)
				in.ExpressionAttributeValues[ph[i]] = &types.AttributeValueMemberS{Value: p}
			}
			in.ExpressionAttributeNames["#p"] = "provider"
			in.FilterExpression = aws.String("NOT (#p IN (" + strings.Join(ph, ", ") + "))")
		}
		// Each shard returns its items by refresh_due ascending, so its first
		// limit items are all it can contribute to the merged result.
		for got := 0; got < limit; {
			out, err := s.client.Query(ctx, in)
			if err != nil {
				return nil, fmt.Errorf("dynamo: list due: %w", err)
			}
			for _, item := range out.Items {
				var it connItem
				if err := attributevalue.UnmarshalMap(item, &it); err != nil {
					return nil, fmt.Errorf("dynamo: list due: decode: %w", err)
				}
				k := store.Key{Provider: it.Provider, ConnectionID: it.ConnectionID}
				if id, ok := strings.CutPrefix(it.SK, retiredPrefix); ok {
					k.Retired = id
				} else if id, ok := strings.CutPrefix(it.SK, pendingPrefix); ok {
					k.Pending = id
				}
				all = append(all, store.DueKey{Key: k, At: time.Unix(it.NextRefresh, 0)})
				got++
			}
			if out.LastEvaluatedKey == nil {
				break
			}
			in.ExclusiveStartKey = out.LastEvaluatedKey
		}
	}
	return store.FirstDue(all, limit), nil
}

func statePK(id string) string { return store.StateRecordKey(id) }

func connPK(provider, connectionID string) string {
	return store.ConnectionRecordKey(provider, connectionID)
}

func dueShard(pk string) string {
	h := fnv.New32a()
	h.Write([]byte(pk))
	return shardName(int(h.Sum32() % DueShards))
}

func shardName(n int) string { return "due#" + strconv.Itoa(n) }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: pk},
		"sk": &types.AttributeValueMemberS{Value: sk},
	}
}

// writeFailed is the error of a conditional write that failed: lost (the
// ErrNotFound or ErrConflict the Store contract gives the operation) when
// its condition failed, else err wrapped with op.
func writeFailed(op string, err, lost error) error {
	if isConditionFailed(err) {
		return lost
	}
	return fmt.Errorf("dynamo: %s: %w", op, err)
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// unix and fromUnix convert times to stored seconds and back; zero maps to 0.
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilIfEmptyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
