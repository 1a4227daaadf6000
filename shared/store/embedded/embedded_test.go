package embedded_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/storetest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/embedded"
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

// TestClock: the times the store stamps come from its Now.
func TestClock(t *testing.T) {
	storetest.RunClock(t, func(t *testing.T, now func() time.Time) store.Store {
		s := open(t, filepath.Join(t.TempDir(), "store.json"))
		s.Now = now
		return s
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
		NextRefresh: at,
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
	if _, err := embedded.Open(path, sealer()); err == nil {
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

// testKey stands for a developer's key file: every open in this test
// process uses it.
var testKey = testkeys.Local()

func sealer() *envelope.Sealer { return envelope.NewSealer(testKey, 0) }

func open(t *testing.T, path string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(path, sealer())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// TestS20_FileSealed: the store file make dev writes holds no credential in
// the clear, does not open under another key, and a file written before
// sealing is read and sealed by the next write.
func TestS20_FileSealed(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.json")
	s := open(t, path)
	saved, err := s.SaveConnection(ctx, store.Connection{Provider: "acme", ConnectionID: "c1", Status: store.StatusConnected, AccessToken: "at-embedded-S20", RefreshToken: "rt-embedded-S20"})
	if err != nil {
		t.Fatal(err)
	}
	// A reconnect retires them: the retired grant is sealed too.
	saved.AccessToken, saved.RefreshToken = "at-new-S20", "rt-new-S20"
	if _, err := s.ReplaceConnection(ctx, saved); err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(ctx, store.StateRecord{ID: "s1", PKCEVerifier: "pkce-embedded-S20", BindingHash: "b"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("embedded-S20")) || bytes.Contains(data, []byte("new-S20")) || !bytes.Contains(data, []byte(`"sealed"`)) {
		t.Fatalf("store file holds plaintext credentials or no sealed value:\n%s", data)
	}
	now := time.Now().Add(time.Second)
	keys, err := open(t, path).ListDue(ctx, now, 10)
	if err != nil || len(keys) != 1 || keys[0].Retired == "" {
		t.Fatalf("ListDue after reopen = %v, %v; want the retired grant", keys, err)
	}
	reopened := open(t, path)
	if c, err := reopened.GetConnection(ctx, "acme", "c1"); err != nil || c.AccessToken != "at-new-S20" || c.RefreshToken != "rt-new-S20" {
		t.Errorf("connection after reopen = %q/%q, %v; want the sealed tokens", c.AccessToken, c.RefreshToken, err)
	}
	if r, err := reopened.TakeState(ctx, "s1", "b"); err != nil || r.PKCEVerifier != "pkce-embedded-S20" {
		t.Errorf("state after reopen = %q, %v; want the sealed verifier", r.PKCEVerifier, err)
	}
	if g, err := open(t, path).LeaseRetired(ctx, keys[0], now, now.Add(time.Minute)); err != nil || g.RefreshToken != "rt-embedded-S20" {
		t.Errorf("retired grant after reopen = %q, %v; want rt-embedded-S20", g.RefreshToken, err)
	}
	if _, err := embedded.Open(path, testkeys.Sealer()); !errors.Is(err, envelope.ErrOpen) {
		t.Errorf("Open under another key: %v, want ErrOpen", err)
	}
	if _, err := embedded.Open(path, nil); err == nil {
		t.Error("Open of a file without a sealer succeeded")
	}
}

// TestFailedWriteChangesNothing: when the file cannot be written, every
// write fails and leaves the store as it was: memory never holds what the
// file does not.
func TestFailedWriteChangesNothing(t *testing.T) {
	type fixture struct {
		s       *embedded.Store
		c1      store.Connection
		retired store.Key
		now     time.Time
	}
	for _, tt := range []struct {
		name  string
		write func(f fixture) error
	}{
		{"PutState", func(f fixture) error {
			return f.s.PutState(t.Context(), store.StateRecord{ID: "s2", BindingHash: "b"})
		}},
		{"TakeState", func(f fixture) error { _, err := f.s.TakeState(t.Context(), "s1", "b"); return err }},
		{"SaveConnection new", func(f fixture) error {
			_, err := f.s.SaveConnection(t.Context(), store.Connection{Provider: "github", ConnectionID: "c2", AccessToken: "a2"})
			return err
		}},
		{"ReplaceConnection", func(f fixture) error {
			c := f.c1
			c.AccessToken, c.RefreshToken = "a-next", "r-next"
			_, err := f.s.ReplaceConnection(t.Context(), c)
			return err
		}},
		{"DeleteConnection", func(f fixture) error { _, err := f.s.DeleteConnection(t.Context(), "github", "c1"); return err }},
		{"Lease", func(f fixture) error {
			_, err := f.s.Lease(t.Context(), store.Key{Provider: "github", ConnectionID: "c1"}, store.LeaseRequest{Owner: "o", Now: f.now, Until: f.now.Add(time.Minute)})
			return err
		}},
		{"LeaseRetired", func(f fixture) error {
			_, err := f.s.LeaseRetired(t.Context(), f.retired, f.now, f.now.Add(time.Hour))
			return err
		}},
		{"DropRetired", func(f fixture) error { return f.s.DropRetired(t.Context(), f.retired) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "dev")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			f := fixture{s: open(t, filepath.Join(dir, "store.json")), now: time.Now().Add(time.Second)}
			if err := f.s.PutState(ctx, store.StateRecord{ID: "s1", BindingHash: "b"}); err != nil {
				t.Fatal(err)
			}
			c, err := f.s.SaveConnection(ctx, store.Connection{Provider: "github", ConnectionID: "c1", AccessToken: "a", RefreshToken: "r"})
			if err != nil {
				t.Fatal(err)
			}
			c.AccessToken, c.RefreshToken = "a-new", "r-new"
			if f.c1, err = f.s.ReplaceConnection(ctx, c); err != nil {
				t.Fatal(err)
			}
			due, err := f.s.ListDue(ctx, f.now, 10)
			if err != nil || len(due) != 1 || due[0].Retired == "" {
				t.Fatalf("ListDue = %v, %v; want the retired grant", due, err)
			}
			f.retired = due[0]

			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := tt.write(f); err == nil {
				t.Fatal("the write succeeded without its file")
			}
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if got, err := f.s.GetConnection(ctx, "github", "c1"); err != nil || !reflect.DeepEqual(got, f.c1) {
				t.Errorf("c1 after the failed write = %+v, %v; want %+v", got, err, f.c1)
			}
			if _, err := f.s.GetConnection(ctx, "github", "c2"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("c2 after the failed write: %v, want ErrNotFound", err)
			}
			if got, err := f.s.ListDue(ctx, f.now, 10); err != nil || !reflect.DeepEqual(got, due) {
				t.Errorf("ListDue after the failed write = %v, %v; want %v", got, err, due)
			}
			if _, err := f.s.TakeState(ctx, "s2", "b"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("TakeState(s2) after the failed write: %v, want ErrNotFound", err)
			}
			if _, err := f.s.TakeState(ctx, "s1", "b"); err != nil {
				t.Errorf("TakeState(s1) after the failed write: %v", err)
			}
		})
	}
}
