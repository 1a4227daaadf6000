package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

func TestCheckKey(t *testing.T) {
	for _, tc := range []struct {
		provider, id string
		ok           bool
	}{
		{"acme", "c1", true},
		{"acme", "c#1", true}, // only the provider's "#" is ambiguous
		{"", "c1", false},
		{"acme", "", false},
		{"ac#me", "c1", false},
	} {
		if err := store.CheckKey(tc.provider, tc.id); (err == nil) != tc.ok {
			t.Errorf("CheckKey(%q, %q) = %v, want ok %v", tc.provider, tc.id, err, tc.ok)
		}
	}
}

func TestLeaseRequestCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	good := store.LeaseRequest{Owner: "o1", Now: now, Until: now.Add(time.Minute)}
	conn := store.Key{Provider: "acme", ConnectionID: "c1"}
	for _, tc := range []struct {
		name string
		req  store.LeaseRequest
		key  store.Key
		ok   bool
	}{
		{"good", good, conn, true},
		{"no owner", store.LeaseRequest{Now: now, Until: now.Add(time.Minute)}, conn, false},
		{"Until not after Now", store.LeaseRequest{Owner: "o1", Now: now, Until: now}, conn, false},
		{"a retired grant's key", good, store.Key{Provider: "acme", ConnectionID: "c1", Retired: "r1"}, false},
		{"a bad key", good, store.Key{Provider: "ac#me", ConnectionID: "c1"}, false},
	} {
		if err := tc.req.Check(tc.key); (err == nil) != tc.ok {
			t.Errorf("%s: Check = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestLeaseFree(t *testing.T) {
	now := time.Unix(1_800_000_000, 500_000_000)
	for _, tc := range []struct {
		name  string
		lease store.Lease
		free  bool
	}{
		{"never taken", store.Lease{}, true},
		{"released", store.Lease{Until: now.Add(time.Hour)}, true},
		{"held", store.Lease{Owner: "o", Until: now.Add(time.Second)}, false},
		{"until this second: still held", store.Lease{Owner: "o", Until: now.Add(-400 * time.Millisecond)}, false},
		{"expired", store.Lease{Owner: "o", Until: now.Add(-time.Second)}, true},
	} {
		if got := tc.lease.Free(now); got != tc.free {
			t.Errorf("%s: Free = %v, want %v", tc.name, got, tc.free)
		}
	}
}

// FirstDue: earliest first, ties by provider, connection and retired
// grant; at most limit keys.
func TestFirstDue(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	k := func(p, c, r string) store.Key { return store.Key{Provider: p, ConnectionID: c, Retired: r} }
	due := []store.DueKey{
		{k("b", "c1", ""), t0},
		{k("a", "c2", ""), t0},
		{k("a", "c1", "r2"), t0},
		{k("a", "c1", ""), t0},
		{k("z", "c9", ""), t0.Add(-time.Second)},
		{k("a", "c0", ""), t0.Add(time.Second)},
	}
	want := []store.Key{k("z", "c9", ""), k("a", "c1", ""), k("a", "c1", "r2"), k("a", "c2", ""), k("b", "c1", ""), k("a", "c0", "")}
	if got := store.FirstDue(slices.Clone(due), 10); !slices.Equal(got, want) {
		t.Errorf("FirstDue = %v, want %v", got, want)
	}
	if got := store.FirstDue(slices.Clone(due), 2); !slices.Equal(got, want[:2]) {
		t.Errorf("FirstDue limit 2 = %v, want %v", got, want[:2])
	}
	if got := store.FirstDue(nil, 5); len(got) != 0 {
		t.Errorf("FirstDue of none = %v", got)
	}
}

func TestStoredTime(t *testing.T) {
	at := time.Date(2026, 12, 4, 15, 4, 5, 999_000_000, time.FixedZone("X", 3600))
	for _, tc := range []struct {
		name string
		in   time.Time
		want time.Time
	}{
		{"truncated to the second, UTC", at, time.Date(2026, 12, 4, 14, 4, 5, 0, time.UTC)},
		{"zero", time.Time{}, time.Time{}},
		{"Unix epoch (DynamoDB's 0)", time.Unix(0, 0), time.Time{}},
	} {
		if got := store.StoredTime(tc.in); !got.Equal(tc.want) || got.Location() != tc.want.Location() {
			t.Errorf("%s: StoredTime = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Stored returns records in the stores' form and shares nothing with its
// argument.
func TestStored(t *testing.T) {
	at := time.Unix(1_800_000_000, 123)
	c := store.Connection{Provider: "acme", ConnectionID: "c1", Metadata: map[string]string{}, Params: map[string]string{"shop": "s"}, ExpiresAt: at, NextRefresh: at, CreatedAt: at, UpdatedAt: at, Lease: store.Lease{Owner: "o", Until: at}}
	got := c.Stored()
	if got.Metadata != nil {
		t.Error("an empty map is kept; want nil")
	}
	for _, tm := range []time.Time{got.ExpiresAt, got.NextRefresh, got.CreatedAt, got.UpdatedAt, got.Lease.Until} {
		if tm.Nanosecond() != 0 || tm.Location() != time.UTC {
			t.Errorf("time %v is not in the stored form", tm)
		}
	}
	got.Params["shop"] = "changed"
	if c.Params["shop"] != "s" {
		t.Error("Stored shares its Params with the connection")
	}

	r := store.StateRecord{ID: "s1", Scopes: []string{}, Params: map[string]string{"a": "b"}, ExpiresAt: at}
	gr := r.Stored()
	if gr.Scopes != nil || gr.ExpiresAt.Nanosecond() != 0 {
		t.Errorf("state record %+v is not in the stored form", gr)
	}
	gr.Params["a"] = "changed"
	if r.Params["a"] != "b" {
		t.Error("Stored shares its Params with the state record")
	}
}

// A retired grant is in use when the connection that replaced it holds
// one of its tokens, and only then.
func TestRetiredGrantInUse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		successor []string
		want      bool
	}{
		{"new tokens", store.Successor("at2", "rt2"), false},
		{"same refresh token issued again", store.Successor("at2", "rt1"), true},
		{"same access token (client_credentials)", store.Successor("at1", ""), true},
		{"nothing kept", nil, false},
	} {
		g := store.RetiredGrant{AccessToken: "at1", RefreshToken: "rt1", InUse: !tc.want}
		g.MarkInUse(tc.successor)
		if g.InUse != tc.want {
			t.Errorf("%s: InUse = %v, want %v", tc.name, g.InUse, tc.want)
		}
	}
	for _, d := range store.Successor("at1", "rt1") {
		if d == "at1" || d == "rt1" || len(d) != 64 {
			t.Errorf("successor %q is not a SHA-256 digest", d)
		}
	}
	if got := store.Successor("", ""); len(got) != 0 {
		t.Errorf("Successor of no tokens = %v", got)
	}
}

// Sealed credentials open for their own record only, and nothing seals or
// opens without a sealer.
func TestSealCredentials(t *testing.T) {
	ctx := context.Background()
	key, err := envelope.NewLocalKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	s := envelope.NewSealer(key, time.Minute)
	creds := store.Credentials{AccessToken: "at", RefreshToken: "rt", PKCEVerifier: "v"}
	rec := store.ConnectionRecordKey("acme", "c1")
	sealed, err := store.SealCredentials(ctx, s, rec, creds)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := store.OpenCredentials(ctx, s, rec, sealed); err != nil || got != creds {
		t.Errorf("OpenCredentials = %+v, %v; want what was sealed", got, err)
	}
	if _, err := store.OpenCredentials(ctx, s, store.ConnectionRecordKey("acme", "c2"), sealed); !errors.Is(err, envelope.ErrOpen) {
		t.Errorf("opened for another record: %v, want ErrOpen", err)
	}
	if _, err := store.OpenCredentials(ctx, s, store.StateRecordKey("x"), sealed); err == nil {
		t.Error("opened for a state record")
	}
	notCreds, err := s.Seal(ctx, rec, []byte("not json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenCredentials(ctx, s, rec, notCreds); err == nil {
		t.Error("opened a sealed value that is not a credentials record")
	}
	if _, err := store.SealCredentials(ctx, nil, rec, creds); err == nil {
		t.Error("sealed without a sealer")
	}
	if _, err := store.OpenCredentials(ctx, nil, rec, sealed); err == nil {
		t.Error("opened without a sealer")
	}
	if !(store.Credentials{}).IsZero() || creds.IsZero() {
		t.Error("IsZero is wrong")
	}
}

// TestCheckApart: only a key naming exactly one retired or pending grant
// of a well-formed connection passes; CheckPending wants the pending one.
func TestCheckApart(t *testing.T) {
	tests := []struct {
		k              store.Key
		apart, pending bool
	}{
		{store.Key{Provider: "p", ConnectionID: "c", Retired: "r"}, true, false},
		{store.Key{Provider: "p", ConnectionID: "c", Pending: "h"}, true, true},
		{store.Key{Provider: "p", ConnectionID: "c"}, false, false},
		{store.Key{Provider: "p", ConnectionID: "c", Retired: "r", Pending: "h"}, false, false},
		{store.Key{Provider: "p#x", ConnectionID: "c", Pending: "h"}, false, false},
		{store.Key{ConnectionID: "c", Pending: "h"}, false, false},
	}
	for _, tt := range tests {
		if err := tt.k.CheckApart(); (err == nil) != tt.apart {
			t.Errorf("%+v.CheckApart() = %v, want ok %v", tt.k, err, tt.apart)
		}
		if err := tt.k.CheckPending(); (err == nil) != tt.pending {
			t.Errorf("%+v.CheckPending() = %v, want ok %v", tt.k, err, tt.pending)
		}
	}
}
