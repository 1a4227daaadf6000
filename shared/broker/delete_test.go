package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/eventrecorder"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// TestDelete: a deleted connection is gone and published as deleted; where
// the entry has a revocation_url its grant is revoked at the provider
// (RFC 7009) with the refresh token and its hint, else nothing is sent; a
// provider that cannot revoke does not keep the deletion from standing.
func TestDelete(t *testing.T) {
	for _, tc := range []struct {
		name       string
		entry      string
		revokeDown bool
		wantSent   int  // revocation requests
		wantEnded  bool // the grant no longer works at the provider
		wantLog    string
	}{
		{"revoked", revokingEntry, false, 1, true, "grant revoked at the provider"},
		{"revocation fails", revokingEntry, true, 1, false, "revocation failed"},
		{"no revocation_url", codeEntry, false, 0, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, tc.entry)
			events := &eventrecorder.Recorder{}
			f.Broker.Events = events
			c := f.connect(t, "c1")
			f.prov.FailRevocations(tc.revokeDown)

			if err := f.Broker.Delete(context.Background(), "acme", "c1"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := f.Store.GetConnection(context.Background(), "acme", "c1"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("after Delete, GetConnection: %v, want ErrNotFound", err)
			}
			sent := revocations(f.prov)
			if len(sent) != tc.wantSent {
				t.Fatalf("%d revocation requests, want %d", len(sent), tc.wantSent)
			}
			if tc.wantSent > 0 {
				if p := sent[0].Params; p.Get("token") != c.RefreshToken || p.Get("token_type_hint") != "refresh_token" {
					t.Errorf("revocation request sent the wrong token or hint %q", p.Get("token_type_hint"))
				}
			}
			if ended := !f.prov.ValidRefresh(c.RefreshToken); ended != tc.wantEnded {
				t.Errorf("grant ended at the provider: %v, want %v", ended, tc.wantEnded)
			}
			if tc.wantLog != "" && !strings.Contains(f.Logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q", tc.wantLog)
			}
			if got := deletedEvents(events); got != 1 {
				t.Errorf("%d deleted events, want 1", got)
			}
		})
	}
}

// TestDeleteUnknown: deleting a connection that does not exist is
// ErrNotFound and publishes nothing.
func TestDeleteUnknown(t *testing.T) {
	f := newFixture(t, providertest.Config{AccessTokenTTL: time.Hour}, revokingEntry)
	events := &eventrecorder.Recorder{}
	f.Broker.Events = events
	if err := f.Broker.Delete(context.Background(), "acme", "nobody"); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("Delete: %v, want ErrNotFound", err)
	}
	if len(events.Events()) != 0 || len(revocations(f.prov)) != 0 {
		t.Errorf("events %v, revocations %d: want none", events.Events(), len(revocations(f.prov)))
	}
}

// TestDeleteWhenCredentialsDoNotOpen: credentials that will never open
// (envelope.ErrOpen) do not block the deletion, which goes ahead without
// revocation; credentials that cannot be opened for now (KMS unreachable)
// delete nothing, so that a retry still revokes.
func TestDeleteWhenCredentialsDoNotOpen(t *testing.T) {
	for _, tc := range []struct {
		name        string
		readErr     error
		wantDeleted bool
	}{
		{"never open", fmt.Errorf("sealed with a lost key: %w", envelope.ErrOpen), true},
		{"not for now", errors.New("KMS throttled"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, revokingEntry)
			c := f.connect(t, "c1")
			f.Broker.Store = unreadable{Store: f.Store, err: tc.readErr}

			err := f.Broker.Delete(context.Background(), "acme", "c1")
			_, getErr := f.Store.GetConnection(context.Background(), "acme", "c1")
			deleted := errors.Is(getErr, store.ErrNotFound)
			if deleted != tc.wantDeleted {
				t.Fatalf("deleted %v, want %v (Delete: %v)", deleted, tc.wantDeleted, err)
			}
			if tc.wantDeleted {
				if err != nil {
					t.Errorf("Delete: %v", err)
				}
				if !strings.Contains(f.Logs.String(), "connection deleted without revocation") {
					t.Error("log does not say the deletion went without revocation")
				}
			} else if !errors.Is(err, tc.readErr) {
				t.Errorf("Delete: %v, want the read's error", err)
			}
			if n := len(revocations(f.prov)); n != 0 || !f.prov.ValidRefresh(c.RefreshToken) {
				t.Errorf("%d revocation requests; want none, the grant untouched", n)
			}
		})
	}
}

// unreadable is a store whose GetConnection fails with err.
type unreadable struct {
	store.Store
	err error
}

func (u unreadable) GetConnection(context.Context, string, string) (store.Connection, error) {
	return store.Connection{}, u.err
}

func deletedEvents(r *eventrecorder.Recorder) int {
	n := 0
	for _, e := range r.Events() {
		if e.Type == lifecycle.Deleted {
			n++
		}
	}
	return n
}
