package envelope

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// KMS is Keys backed by one AWS KMS symmetric key: GenerateDataKey and
// Decrypt, both with a fixed encryption context, which CloudTrail records
// and which the functions' IAM policies require.
type KMS struct {
	client  *kms.Client
	keyID   string
	context map[string]string
	// legacy, if set, is the context of data keys wrapped before context
	// changed: Decrypt tries it when context is refused.
	legacy map[string]string
}

var _ Keys = (*KMS)(nil)

// NewKMS returns Keys that wrap data keys with the KMS key keyID (a key ARN,
// key id or alias ARN) under encryptionContext. Decrypt names keyID too, so
// a value wrapped by any other key is refused.
func NewKMS(client *kms.Client, keyID string, encryptionContext map[string]string) *KMS {
	return &KMS{client: client, keyID: keyID, context: encryptionContext}
}

// WithLegacyContext returns Keys that also open data keys wrapped under
// legacy, an encryption context used before: Decrypt tries it when KMS
// refuses the current one. New data keys are always wrapped under the
// current context.
func (k *KMS) WithLegacyContext(legacy map[string]string) *KMS {
	c := *k
	c.legacy = legacy
	return &c
}

// GenerateDataKey implements Keys.
func (k *KMS) GenerateDataKey(ctx context.Context) (key, wrapped []byte, err error) {
	out, err := k.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(k.keyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: k.context,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("kms generate data key: %w", err)
	}
	return out.Plaintext, out.CiphertextBlob, nil
}

// Decrypt implements Keys.
func (k *KMS) Decrypt(ctx context.Context, wrapped []byte) ([]byte, error) {
	key, err := k.decrypt(ctx, wrapped, k.context)
	if errors.Is(err, ErrOpen) && k.legacy != nil {
		key, err = k.decrypt(ctx, wrapped, k.legacy)
	}
	return key, err
}

func (k *KMS) decrypt(ctx context.Context, wrapped []byte, encryptionContext map[string]string) ([]byte, error) {
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:    wrapped,
		KeyId:             aws.String(k.keyID),
		EncryptionContext: encryptionContext,
	})
	var api smithy.APIError
	if errors.As(err, &api) && refusals[api.ErrorCode()] {
		return nil, fmt.Errorf("%w: kms decrypt: %w", ErrOpen, err)
	}
	if err != nil {
		return nil, fmt.Errorf("kms decrypt: %w", err)
	}
	return out.Plaintext, nil
}

// refusals are the KMS Decrypt errors that mean "this wrapped key will
// never open with this key and context", as opposed to a KMS that cannot
// answer now.
var refusals = map[string]bool{
	"InvalidCiphertextException": true,
	"IncorrectKeyException":      true,
}

// LocalKey is Keys backed by a 256-bit key held locally, for development
// without AWS: data keys are wrapped with AES-256-GCM under it.
type LocalKey struct {
	gcm cipher.AEAD
}

var _ Keys = (*LocalKey)(nil)

// NewLocalKey returns Keys that wrap data keys under key, which must be
// DataKeySize bytes.
func NewLocalKey(key []byte) (*LocalKey, error) {
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("envelope: local key must be %d bytes, not %d", DataKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	return &LocalKey{gcm: gcm}, nil
}

// OpenLocalKey reads the key file at path, creating it (mode 0600, with a
// fresh random key) if it does not exist. Whoever can read the file can open
// everything sealed under it: keep it beside the data it protects only in
// development.
func OpenLocalKey(path string) (*LocalKey, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, DataKeySize)
		rand.Read(key) // never fails (crypto/rand)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("envelope: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("envelope: create key file: %w", err)
		}
		_, werr := f.Write(key)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("envelope: write key file: %w", werr)
		}
	} else if err != nil {
		return nil, fmt.Errorf("envelope: read key file: %w", err)
	}
	k, err := NewLocalKey(key)
	if err != nil {
		return nil, fmt.Errorf("envelope: key file %s: %w", path, err)
	}
	return k, nil
}

// GenerateDataKey implements Keys.
func (k *LocalKey) GenerateDataKey(context.Context) (key, wrapped []byte, err error) {
	key = make([]byte, DataKeySize)
	rand.Read(key)
	nonce := make([]byte, k.gcm.NonceSize())
	rand.Read(nonce)
	return key, k.gcm.Seal(nonce, nonce, key, nil), nil
}

// Decrypt implements Keys.
func (k *LocalKey) Decrypt(_ context.Context, wrapped []byte) ([]byte, error) {
	n := k.gcm.NonceSize()
	if len(wrapped) < n {
		return nil, fmt.Errorf("%w: local key: wrapped data key too short", ErrOpen)
	}
	key, err := k.gcm.Open(nil, wrapped[:n], wrapped[n:], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: local key: data key was not wrapped by this key", ErrOpen)
	}
	return key, nil
}
