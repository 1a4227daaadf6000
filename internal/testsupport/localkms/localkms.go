// Package localkms runs local-kms, a KMS server speaking the real AWS KMS
// JSON protocol (github.com/nsmithuk/local-kms, pinned in go.mod as a tool),
// for tests.
//
//	srv := localkms.Start(t)
//	keys := envelope.NewKMS(srv.Client, srv.KeyARN, ctx)
//
// The server is built from the module cache once per test process, runs on
// a free loopback port with its data in a temporary directory, and stops
// when the test's cleanup runs; its output goes to logcheck.Feed then.
package localkms

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

const (
	// Region is the region of every key the server creates.
	Region = "us-east-1"
	// account is the account id of every key the server creates.
	account = "111122223333"
)

// Server is a running local-kms with one symmetric key.
type Server struct {
	// Endpoint is the server's URL, for AWS_ENDPOINT_URL_KMS.
	Endpoint string
	// Client is a KMS client for Endpoint whose calls are counted in Calls.
	Client *kms.Client
	// KeyARN is the ARN of a symmetric encryption key created at start.
	KeyARN string

	calls atomic.Int64
}

// Calls returns how many requests Client has sent.
func (s *Server) Calls() int64 { return s.calls.Load() }

// Start starts a local-kms server with one key for t and stops it when t's
// cleanup runs. A server that cannot start fails the test.
func Start(t testing.TB) *Server {
	t.Helper()
	// Built at the version go.mod pins, once per process.
	bin, err := modroot.Tool("local-kms")
	if err != nil {
		t.Fatalf("localkms: %v", err)
	}
	data, seed := t.TempDir(), filepath.Join(t.TempDir(), "none.yaml")
	p, err := childproc.Start(childproc.Spec{
		Name: "local-kms for " + t.Name(),
		Command: func(port int) *exec.Cmd {
			cmd := exec.Command(bin)
			cmd.Env = append(os.Environ(),
				"PORT="+strconv.Itoa(port),
				"KMS_DATA_PATH="+data,
				"KMS_REGION="+Region,
				"KMS_ACCOUNT_ID="+account,
				"KMS_SEED_PATH="+seed,
			)
			return cmd
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)

	s := &Server{Endpoint: p.URL}
	s.Client = kms.New(kms.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("fake", "fake", ""),
		HTTPClient:   countingClient{&s.calls},
	})
	s.KeyARN = s.NewKey(t)
	return s
}

// NewKey creates another symmetric encryption key and returns its ARN.
func (s *Server) NewKey(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := s.Client.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("oauthbroker test key")})
	if err != nil {
		t.Fatalf("localkms: create key: %v", err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

// countingClient counts the requests it sends.
type countingClient struct{ n *atomic.Int64 }

func (c countingClient) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultClient.Do(r)
}
