package envelope_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/localkms"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
)

var encCtx = map[string]string{"oauthbroker:table": "connections"}

// kmsSealer is a sealer of data keys from the KMS key keyID under encCtx,
// each reused for DefaultKeyReuse.
func kmsSealer(client *kms.Client, keyID string) *envelope.Sealer {
	return envelope.NewSealer(envelope.NewKMS(client, keyID, encCtx), 0)
}

// keySources gives every Keys implementation, for tests that hold for all.
func keySources(t *testing.T) map[string]envelope.Keys {
	srv := localkms.Start(t)
	local, err := envelope.OpenLocalKey(filepath.Join(t.TempDir(), "store.key"))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]envelope.Keys{
		"kms":   envelope.NewKMS(srv.Client, srv.KeyARN, encCtx),
		"local": local,
	}
}

func TestSealOpen(t *testing.T) {
	ctx := t.Context()
	for name, keys := range keySources(t) {
		t.Run(name, func(t *testing.T) {
			s := envelope.NewSealer(keys, 0)
			secret := []byte(`{"access_token":"at-9f2c"}`)
			a, err := s.Seal(ctx, "conn#acme#c1", secret)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(a, secret) || bytes.Contains(a, []byte("at-9f2c")) {
				t.Fatal("sealed value contains the plaintext")
			}
			b, err := s.Seal(ctx, "conn#acme#c1", secret)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(a, b) {
				t.Fatal("two seals of one value are equal: no fresh salt/nonce")
			}
			// A fresh Sealer (another Lambda instance) opens it too.
			other := envelope.NewSealer(keys, 0)
			for _, sealed := range [][]byte{a, b} {
				got, err := other.Open(ctx, "conn#acme#c1", sealed)
				if err != nil || !bytes.Equal(got, secret) {
					t.Fatalf("Open = %q, %v", got, err)
				}
			}
			empty, err := s.Seal(ctx, "k", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := other.Open(ctx, "k", empty); err != nil || len(got) != 0 {
				t.Fatalf("Open(empty) = %q, %v", got, err)
			}
		})
	}
}

// TestOpenRejects: a sealed value opens only for its own record, intact,
// under a key the Sealer's key manager can unwrap.
func TestOpenRejects(t *testing.T) {
	ctx := t.Context()
	srv := localkms.Start(t)
	s := kmsSealer(srv.Client, srv.KeyARN)
	sealed, err := s.Seal(ctx, "conn#acme#c1", []byte("refresh-token-77"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	otherKey := kmsSealer(srv.Client, srv.NewKey(t))
	otherContext := envelope.NewSealer(envelope.NewKMS(srv.Client, srv.KeyARN, map[string]string{"oauthbroker:table": "other"}), 0)
	local, _ := envelope.NewLocalKey(make([]byte, 32))
	for _, tt := range []struct {
		name   string
		s      *envelope.Sealer
		aad    string
		sealed []byte
	}{
		{"other record", s, "conn#acme#c2", sealed},
		{"record prefix", s, "conn#acme#c", sealed},
		{"empty aad", s, "", sealed},
		{"flipped version", s, "conn#acme#c1", flip(0)},
		{"flipped wrapped key", s, "conn#acme#c1", flip(10)},
		{"flipped salt", s, "conn#acme#c1", flip(len(sealed) - 16 - 12 - 1)},
		{"flipped nonce", s, "conn#acme#c1", flip(len(sealed) - 16 - 1)},
		{"flipped ciphertext", s, "conn#acme#c1", flip(len(sealed) - 17)},
		{"flipped tag", s, "conn#acme#c1", flip(len(sealed) - 1)},
		{"truncated", s, "conn#acme#c1", sealed[:len(sealed)-1]},
		{"header only", s, "conn#acme#c1", sealed[:40]},
		{"empty", s, "conn#acme#c1", nil},
		{"plaintext", s, "conn#acme#c1", []byte("refresh-token-77")},
		{"another KMS key", otherKey, "conn#acme#c1", sealed},
		{"another encryption context", otherContext, "conn#acme#c1", sealed},
		{"local key", envelope.NewSealer(local, 0), "conn#acme#c1", sealed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.s.Open(ctx, tt.aad, tt.sealed)
			if err == nil {
				t.Fatalf("Open succeeded: %q", got)
			}
			if !errors.Is(err, envelope.ErrOpen) {
				t.Errorf("error %v does not wrap ErrOpen", err)
			}
			if strings.Contains(err.Error(), "refresh-token-77") {
				t.Errorf("error leaks the plaintext: %v", err)
			}
		})
	}
	// The KMS refusals are KMS's own error shapes, passed through.
	_, err = otherContext.Open(ctx, "conn#acme#c1", sealed)
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "InvalidCiphertextException" {
		t.Errorf("another context: %v, want KMS InvalidCiphertextException", err)
	}
}

// TestDataKeyCache: a Sealer asks KMS for one data key per reuse period,
// reads back its own values without KMS, and concurrent first reads by
// another instance share one Decrypt.
func TestDataKeyCache(t *testing.T) {
	ctx := t.Context()
	srv := localkms.Start(t)
	keys := envelope.NewKMS(srv.Client, srv.KeyARN, encCtx)
	writer := envelope.NewSealer(keys, time.Hour)

	before := srv.Calls()
	var sealed [][]byte
	for i := range 500 {
		b, err := writer.Seal(ctx, "conn#acme#"+string(rune('a'+i%26)), []byte("token"))
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, b)
	}
	if n := srv.Calls() - before; n != 1 {
		t.Errorf("500 seals made %d KMS calls, want 1 (GenerateDataKey)", n)
	}
	before = srv.Calls()
	for i, b := range sealed {
		if _, err := writer.Open(ctx, "conn#acme#"+string(rune('a'+i%26)), b); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Calls() - before; n != 0 {
		t.Errorf("reading back own values made %d KMS calls, want 0", n)
	}

	// Concurrent first seals on a fresh instance share one data key.
	fresh := envelope.NewSealer(keys, time.Hour)
	before = srv.Calls()
	var sg sync.WaitGroup
	for range 50 {
		sg.Go(func() {
			if _, err := fresh.Seal(ctx, "k", []byte("v")); err != nil {
				t.Error(err)
			}
		})
	}
	sg.Wait()
	if n := srv.Calls() - before; n != 1 {
		t.Errorf("50 concurrent first seals made %d KMS calls, want 1", n)
	}

	reader := envelope.NewSealer(keys, time.Hour)
	before = srv.Calls()
	var wg sync.WaitGroup
	errs := make(chan error, len(sealed))
	for i, b := range sealed {
		wg.Go(func() {
			_, err := reader.Open(ctx, "conn#acme#"+string(rune('a'+i%26)), b)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Calls() - before; n != 1 {
		t.Errorf("500 concurrent opens by a fresh instance made %d KMS calls, want 1 (Decrypt)", n)
	}
}

// TestKeyReuseExpires: a data key seals new values only for its period.
func TestKeyReuseExpires(t *testing.T) {
	ctx := t.Context()
	srv := localkms.Start(t)
	s := envelope.NewSealer(envelope.NewKMS(srv.Client, srv.KeyARN, encCtx), 50*time.Millisecond)
	a, _ := s.Seal(ctx, "k", []byte("v"))
	time.Sleep(60 * time.Millisecond)
	b, _ := s.Seal(ctx, "k", []byte("v"))
	wrapped := func(v []byte) []byte { n := int(v[1])<<8 | int(v[2]); return v[3 : 3+n] }
	if bytes.Equal(wrapped(a), wrapped(b)) {
		t.Error("the data key outlived its reuse period")
	}
	for _, v := range [][]byte{a, b} {
		if _, err := s.Open(ctx, "k", v); err != nil {
			t.Error(err)
		}
	}
}

// TestKMSUnavailable: a key manager that fails makes Seal and Open fail
// with its error; nothing is sealed without a data key.
func TestKMSUnavailable(t *testing.T) {
	ctx := t.Context()
	srv := localkms.Start(t)
	s := kmsSealer(srv.Client, srv.KeyARN)
	sealed, err := s.Seal(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	dead := kms.New(kms.Options{Region: localkms.Region, BaseEndpoint: new("http://127.0.0.1:1"), Credentials: srv.Client.Options().Credentials, RetryMaxAttempts: 1})
	broken := kmsSealer(dead, srv.KeyARN)
	if _, err := broken.Seal(ctx, "k", []byte("v")); err == nil {
		t.Error("Seal without a key manager succeeded")
	}
	if _, err := broken.Open(ctx, "k", sealed); err == nil || errors.Is(err, envelope.ErrOpen) {
		t.Errorf("Open without a key manager: %v, want a retryable error, not ErrOpen (the value is not damaged)", err)
	}
	missing := kmsSealer(srv.Client, srv.KeyARN[:len(srv.KeyARN)-4]+"0000")
	if _, err := missing.Seal(ctx, "k", []byte("v")); err == nil {
		t.Error("Seal under an unknown key succeeded")
	}
}

func TestLocalKeyFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "dev", "store.key")
	k1, err := envelope.OpenLocalKey(path)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := envelope.NewSealer(k1, 0).Seal(ctx, "k", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := envelope.OpenLocalKey(path) // the next run of make dev
	if err != nil {
		t.Fatal(err)
	}
	if got, err := envelope.NewSealer(k2, 0).Open(ctx, "k", sealed); err != nil || string(got) != "secret" {
		t.Fatalf("reopened key: %q, %v", got, err)
	}
	if st, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode())
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.OpenLocalKey(path); err == nil {
		t.Error("a 5-byte key file was accepted")
	}
	if _, err := envelope.NewLocalKey(make([]byte, 16)); err == nil {
		t.Error("a 128-bit local key was accepted")
	}
}
