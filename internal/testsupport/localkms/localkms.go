// Package localkms runs local-kms, a KMS server speaking the real AWS KMS
// JSON protocol (github.com/nsmithuk/local-kms, pinned in go.mod as a tool),
// for tests.
//
//	srv := localkms.Start(t)
//	keys := envelope.NewKMS(srv.Client, srv.KeyARN, ctx)
//
// The server is built from the module cache once per test process, runs on
// a free loopback port with its data in a temporary directory, and stops
// when the test's cleanup runs.
package localkms

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

const (
	module = "github.com/nsmithuk/local-kms"
	// Region and Account are the region and account id of every key the
	// server creates.
	Region  = "us-east-1"
	Account = "111122223333"
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

var build struct {
	once sync.Once
	path string
	err  error
}

// binary builds local-kms at the version go.mod pins, once per process.
func binary() (string, error) {
	build.once.Do(func() {
		root, err := modroot.Dir()
		if err != nil {
			build.err = err
			return
		}
		dir, err := os.MkdirTemp("", "localkms-bin-")
		if err != nil {
			build.err = err
			return
		}
		gocmd, err := modroot.GoCommand()
		if err != nil {
			build.err = fmt.Errorf("localkms: %w", err)
			return
		}
		bin := filepath.Join(dir, "local-kms")
		cmd := exec.Command(gocmd, "build", "-o", bin, module)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("localkms: go build %s: %v\n%s", module, err, out)
			return
		}
		build.path = bin
	})
	return build.path, build.err
}

// Start starts a local-kms server with one key for t and stops it when t's
// cleanup runs. A server that cannot start fails the test.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	var out bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"PORT="+strconv.Itoa(port),
		"KMS_DATA_PATH="+t.TempDir(),
		"KMS_REGION="+Region,
		"KMS_ACCOUNT_ID="+Account,
		"KMS_SEED_PATH="+filepath.Join(t.TempDir(), "none.yaml"),
	)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("localkms: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		logcheck.Feed("local-kms in "+t.Name(), out.String())
	})

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(15 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("localkms exited before accepting connections: %s\n%s", cmd.ProcessState, &out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("localkms did not accept connections on %s:\n%s", addr, &out)
		}
	}

	s := &Server{Endpoint: "http://" + addr}
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
