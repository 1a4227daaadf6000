package localkms_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/localkms"
)

// The server's key encrypts and decrypts, its Client's calls are counted,
// and the test's cleanup stops it.
func TestStart(t *testing.T) {
	childproc.CheckStopsWithTest(t, func(t *testing.T) string {
		srv := localkms.Start(t)
		before := srv.Calls()
		plain := []byte("plain text of the test")
		enc, err := srv.Client.Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(srv.KeyARN), Plaintext: plain})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := srv.Client.Decrypt(t.Context(), &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dec.Plaintext, plain) || aws.ToString(dec.KeyId) != srv.KeyARN {
			t.Errorf("decrypted %q with key %s, want %q with %s", dec.Plaintext, aws.ToString(dec.KeyId), plain, srv.KeyARN)
		}
		if n := srv.Calls() - before; n != 2 {
			t.Errorf("Calls counted %d requests, want 2", n)
		}
		if other := srv.NewKey(t); other == srv.KeyARN || !strings.HasPrefix(other, "arn:aws:kms:"+localkms.Region+":") {
			t.Errorf("NewKey = %s (first key %s)", other, srv.KeyARN)
		}
		return srv.Endpoint
	})
}
