package broker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// openCounting is a Store that counts the reads that open credentials.
type openCounting struct {
	store.Store
	opens atomic.Int64
}

func (s *openCounting) GetConnection(ctx context.Context, provider, id string) (store.Connection, error) {
	s.opens.Add(1)
	return s.Store.GetConnection(ctx, provider, id)
}

// TestReconnectDoesNotOpenCredentials: the callback replacing an existing
// connection reads only its version and grant (PeekConnection), never its
// sealed tokens, so the callback's role needs no kms:Decrypt on them; the
// new grant replaces the old one in place.
func TestReconnectDoesNotOpenCredentials(t *testing.T) {
	f := newFixture(t, providertest.Config{RequirePKCE: true, AccessTokenTTL: time.Hour}, codeEntry)
	first := f.connect(t, "c1")
	st := &openCounting{Store: f.Store}
	f.Broker.Store = st
	second := f.connect(t, "c1")
	if n := st.opens.Load(); n != 0 {
		t.Errorf("reconnect opened the stored credentials %d times, want never", n)
	}
	if second.Version <= first.Version || second.AccessToken == first.AccessToken || second.CreatedAt != first.CreatedAt {
		t.Errorf("reconnect: version %d→%d, created %v→%v, new access token %v", first.Version, second.Version, first.CreatedAt, second.CreatedAt, second.AccessToken != first.AccessToken)
	}
}
