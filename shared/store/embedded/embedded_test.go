package embedded_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/embedded"
	"github.com/oauthbroker/oauthbroker/shared/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return open(t, "") })
	})
	t.Run("file", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return open(t, filepath.Join(t.TempDir(), "store.json"))
		})
	})
}

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.json")
	s := open(t, path)
	ctx := t.Context()
	at := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	c, err := s.SaveConnection(ctx, store.Connection{
		Provider: "github", ConnectionID: "c1", Status: store.StatusConnected,
		AccessToken: "a", RefreshToken: "r", Metadata: map[string]string{"user": "1"},
		RefreshDue: at,
	})
	if err != nil {
		t.Fatal(err)
	}
	taken := store.StateRecord{ID: "taken", BindingHash: "b", ExpiresAt: at}
	kept := store.StateRecord{ID: "kept", Provider: "github", ConnectionID: "c1", Scopes: []string{"repo"}, BindingHash: "b", ExpiresAt: at}
	for _, r := range []store.StateRecord{taken, kept} {
		if err := s.PutState(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.TakeState(ctx, "taken", "b"); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("file mode = %v, want 0600", mode)
	}
	if tmps, _ := filepath.Glob(path + ".tmp*"); len(tmps) > 0 {
		t.Errorf("temporary files left behind: %v", tmps)
	}

	s2 := open(t, path)
	got, err := s2.GetConnection(ctx, "github", "c1")
	if err != nil {
		t.Fatalf("GetConnection after reopen: %v", err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("after reopen GetConnection =\n%+v, want\n%+v", got, c)
	}
	if _, err := s2.TakeState(ctx, "taken", "b"); err == nil {
		t.Errorf("taken state came back after reopen")
	}
	if r, err := s2.TakeState(ctx, "kept", "b"); err != nil {
		t.Errorf("TakeState after reopen: %v", err)
	} else if !reflect.DeepEqual(r, kept) {
		t.Errorf("after reopen TakeState =\n%+v, want\n%+v", r, kept)
	}
	if keys, err := s2.ListDue(ctx, at, 10); err != nil || len(keys) != 1 {
		t.Errorf("ListDue after reopen = %v, %v; want 1 key", keys, err)
	}
}

func TestOpenErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.Open(path); err == nil {
		t.Errorf("Open of a corrupt file succeeded")
	}
	s := open(t, filepath.Join(t.TempDir(), "missing-dir", "store.json"))
	if err := s.PutState(t.Context(), store.StateRecord{ID: "x", BindingHash: "b"}); err == nil {
		t.Fatalf("PutState into an unwritable path succeeded")
	}
	if _, err := s.TakeState(t.Context(), "x", "b"); err == nil {
		t.Errorf("a failed PutState left the record in memory")
	}
}

func open(t *testing.T, path string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}
