// Package envelope seals credentials at rest with envelope encryption
// (checklist row S20).
//
// A Sealer encrypts each value with AES-256-GCM under a key derived, with
// HKDF-SHA256 and a fresh random salt, from a 256-bit data key. The data key
// comes from Keys — AWS KMS (GenerateDataKey) in AWS, a local key file in
// development — and is stored beside the ciphertext only in wrapped
// (encrypted) form. The caller's associated data, the record's key, is
// bound twice: into the derived key and as GCM associated data, so a sealed
// value copied onto another record does not open.
//
// Data keys are cached in memory for a short while: one data key seals every
// value written within KeyReuse, and an unwrapped data key is kept for
// secrets.MaxTTL, so a refresh sweep over thousands of records calls KMS a
// handful of times instead of twice per record. Per-value key derivation
// keeps a long-lived data key safe: no two values share a GCM key.
//
// A sealed value is laid out as
//
//	version (1 byte, 1) | len(wrapped) (2 bytes, big endian) | wrapped key |
//	salt (32 bytes) | nonce (12 bytes) | ciphertext and GCM tag
//
// and everything before the ciphertext is also GCM associated data.
package envelope

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/secrets"
)

// DataKeySize is the size in bytes of every data key: AES-256.
const DataKeySize = 32

// DefaultKeyReuse is how long a Sealer seals new values with one data key
// when no other period is given.
const DefaultKeyReuse = 5 * time.Minute

// maxUses bounds the values sealed with one data key, whatever the period.
const maxUses = 1 << 20

const (
	version   = 1
	saltSize  = 32
	nonceSize = 12
	info      = "oauthbroker envelope v1\x00"
)

// ErrOpen is returned (wrapped; test with errors.Is) when a sealed value
// does not open: it is damaged, was sealed for another record, or its data
// key cannot be unwrapped.
var ErrOpen = errors.New("envelope: cannot open sealed value")

// Keys issues and unwraps data keys: envelope's link to a key manager.
// Implementations are safe for concurrent use.
type Keys interface {
	// GenerateDataKey returns a new DataKeySize-byte data key, in plaintext
	// and wrapped by the master key.
	GenerateDataKey(ctx context.Context) (key, wrapped []byte, err error)
	// Decrypt returns the plaintext of a data key that GenerateDataKey
	// wrapped.
	Decrypt(ctx context.Context, wrapped []byte) ([]byte, error)
}

// Sealer seals and opens values under data keys from Keys. It is safe for
// concurrent use.
type Sealer struct {
	keys   Keys
	reuse  time.Duration
	unwrap *secrets.Cache
	now    func() time.Time

	current atomic.Pointer[dataKey] // read without a lock
	genMu   sync.Mutex              // one GenerateDataKey at a time
}

// dataKey is the data key new values are sealed with.
type dataKey struct {
	key, wrapped []byte
	expires      time.Time
	uses         atomic.Int64
}

// take reserves one use of k at now, if it is still fresh and not used up.
func (k *dataKey) take(now time.Time) bool {
	return k != nil && now.Before(k.expires) && k.uses.Add(1) <= maxUses
}

// NewSealer returns a Sealer using keys. A keyReuse <= 0 means
// DefaultKeyReuse.
func NewSealer(keys Keys, keyReuse time.Duration) *Sealer {
	if keyReuse <= 0 {
		keyReuse = DefaultKeyReuse
	}
	s := &Sealer{keys: keys, reuse: keyReuse, now: time.Now}
	s.unwrap = secrets.NewCache(unwrapSource{s}, secrets.MaxTTL)
	return s
}

// unwrapSource lets a secrets.Cache share and keep unwrapped data keys
// (concurrent misses make one call): the "name" is the wrapped key.
type unwrapSource struct{ s *Sealer }

func (u unwrapSource) Secret(ctx context.Context, wrapped string) ([]byte, error) {
	if cur := u.s.current.Load(); cur != nil && string(cur.wrapped) == wrapped {
		return cur.key, nil // reading back what this Sealer wrote
	}
	key, err := u.s.keys.Decrypt(ctx, []byte(wrapped))
	if err != nil {
		return nil, err
	}
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("envelope: data key of %d bytes", len(key))
	}
	return key, nil
}

// Seal encrypts plaintext for the record named by aad.
func (s *Sealer) Seal(ctx context.Context, aad string, plaintext []byte) ([]byte, error) {
	key, wrapped, err := s.dataKey(ctx)
	if err != nil {
		return nil, err
	}
	if len(wrapped) > 0xffff {
		return nil, fmt.Errorf("envelope: wrapped data key of %d bytes", len(wrapped))
	}
	out := make([]byte, 0, 3+len(wrapped)+saltSize+nonceSize+len(plaintext)+16)
	out = append(out, version)
	out = binary.BigEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(out, wrapped...)
	salt := make([]byte, saltSize+nonceSize)
	rand.Read(salt) // never fails (crypto/rand)
	out = append(out, salt...)
	ad := additional(out, aad) // a copy: Seal appends to out
	gcm, err := newGCM(key, salt[:saltSize], aad)
	if err != nil {
		return nil, err
	}
	return gcm.Seal(out, salt[saltSize:], plaintext, ad), nil
}

// Open decrypts a value Seal sealed for the same aad. A value that can
// never open here — damaged, sealed for another record, or its data key
// refused by the key manager as not its own — fails with an error wrapping
// ErrOpen; a key manager that cannot answer now (throttled, unreachable)
// fails with its own error, which is worth retrying. Errors never hold the
// plaintext or key material.
func (s *Sealer) Open(ctx context.Context, aad string, sealed []byte) ([]byte, error) {
	if len(sealed) < 3 || sealed[0] != version {
		return nil, fmt.Errorf("%w: unknown format", ErrOpen)
	}
	n := int(binary.BigEndian.Uint16(sealed[1:3]))
	if n == 0 || len(sealed) < 3+n+saltSize+nonceSize+16 {
		return nil, fmt.Errorf("%w: truncated", ErrOpen)
	}
	wrapped := sealed[3 : 3+n]
	salt := sealed[3+n : 3+n+saltSize]
	nonce := sealed[3+n+saltSize : 3+n+saltSize+nonceSize]
	header := sealed[:3+n+saltSize+nonceSize]
	key, err := s.unwrap.Secret(ctx, string(wrapped))
	if err != nil {
		return nil, fmt.Errorf("envelope: data key: %w", err)
	}
	gcm, err := newGCM(key, salt, aad)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, sealed[len(header):], additional(header, aad))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrOpen)
	}
	return plain, nil
}

// dataKey returns the data key to seal with, generating a new one when the
// current one is too old or too used. Only generation is serialised:
// sealing with a fresh key and opening take no lock.
func (s *Sealer) dataKey(ctx context.Context) (key, wrapped []byte, err error) {
	if k := s.current.Load(); k.take(s.now()) {
		return k.key, k.wrapped, nil
	}
	s.genMu.Lock()
	defer s.genMu.Unlock()
	now := s.now()
	if k := s.current.Load(); k.take(now) { // another caller just made one
		return k.key, k.wrapped, nil
	}
	key, wrapped, err = s.keys.GenerateDataKey(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: new data key: %w", err)
	}
	if len(key) != DataKeySize || len(wrapped) == 0 {
		return nil, nil, fmt.Errorf("envelope: data key of %d bytes", len(key))
	}
	k := &dataKey{key: key, wrapped: wrapped, expires: now.Add(s.reuse)}
	k.uses.Store(1)
	s.current.Store(k)
	return key, wrapped, nil
}

// newGCM derives the value's own AES-256 key from the data key, its salt
// and aad, and returns its AES-GCM.
func newGCM(dataKey, salt []byte, aad string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, dataKey, salt, info+aad, 32)
	if err != nil {
		return nil, fmt.Errorf("envelope: derive key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	return cipher.NewGCM(block)
}

// additional is the GCM associated data: the value's header, then aad.
func additional(header []byte, aad string) []byte {
	return append(append(make([]byte, 0, len(header)+len(aad)), header...), aad...)
}
