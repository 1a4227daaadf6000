package secretsmanagertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/secretsmanagertest"
)

func TestGetSecretValue(t *testing.T) {
	srv := secretsmanagertest.New(t)
	srv.Put("app/one", "first")
	srv.Put("app/one", "hello") // new version
	client := srv.Client(t)
	ctx := context.Background()

	out, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/one")})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(out.SecretString); got != "hello" {
		t.Errorf("SecretString = %q, want %q", got, "hello")
	}
	if got := aws.ToString(out.Name); got != "app/one" {
		t.Errorf("Name = %q", got)
	}
	arnRE := regexp.MustCompile(`^arn:aws:secretsmanager:us-east-1:123456789012:secret:app/one-[A-Za-z]{6}$`)
	if got := aws.ToString(out.ARN); !arnRE.MatchString(got) || got != srv.ARN("app/one") {
		t.Errorf("ARN = %q (server says %q)", got, srv.ARN("app/one"))
	}
	if got := aws.ToString(out.VersionId); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(got) {
		t.Errorf("VersionId = %q", got)
	}
	if fmt.Sprint(out.VersionStages) != "[AWSCURRENT]" {
		t.Errorf("VersionStages = %v", out.VersionStages)
	}
	if out.CreatedDate == nil || time.Since(*out.CreatedDate) > time.Minute || time.Since(*out.CreatedDate) < -time.Second {
		t.Errorf("CreatedDate = %v", out.CreatedDate)
	}

	// By ARN, and by the current version id.
	if _, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: out.ARN, VersionId: out.VersionId}); err != nil {
		t.Errorf("by ARN and VersionId: %v", err)
	}
	if got := srv.Calls("app/one"); got != 2 {
		t.Errorf("Calls = %d, want 2", got)
	}

	srv.PutBinary("app/bin", []byte{0, 1, 2, 0xff})
	out, err = client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("app/bin")})
	if err != nil {
		t.Fatal(err)
	}
	if out.SecretString != nil || string(out.SecretBinary) != "\x00\x01\x02\xff" {
		t.Errorf("binary secret: SecretString %v, SecretBinary %x", out.SecretString, out.SecretBinary)
	}
}

func TestErrors(t *testing.T) {
	srv := secretsmanagertest.New(t)
	srv.Put("exists", "v")
	client := srv.Client(t)

	tests := []struct {
		name, fail string
		wantCode   string
		wantStatus int
		wantType   any // nil, or a pointer to the modeled error type
	}{
		{"missing", "", "ResourceNotFoundException", 400, new(*types.ResourceNotFoundException)},
		{"exists", "ThrottlingException", "ThrottlingException", 400, nil},
		{"exists", "InternalServiceError", "InternalServiceError", 500, new(*types.InternalServiceError)},
		{"exists", "AccessDeniedException", "AccessDeniedException", 400, nil},
		{"exists", "DecryptionFailure", "DecryptionFailure", 400, new(*types.DecryptionFailure)},
		{"missing", "InvalidRequestException", "InvalidRequestException", 400, new(*types.InvalidRequestException)},
	}
	for _, tt := range tests {
		t.Run(tt.wantCode, func(t *testing.T) {
			srv.Fail(tt.name, tt.fail)
			defer srv.Fail(tt.name, "")
			before := srv.Calls(tt.name)
			_, err := client.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(tt.name)})
			checkAPIError(t, err, tt.wantCode, tt.wantStatus)
			if tt.wantType != nil && !errors.As(err, tt.wantType) {
				t.Errorf("error %T is not the modeled %T", err, tt.wantType)
			}
			if got := srv.Calls(tt.name) - before; got != 1 {
				t.Errorf("requests = %d, want 1 (no retries)", got)
			}
		})
	}

	t.Run("cleared", func(t *testing.T) {
		if _, err := client.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("exists")}); err != nil {
			t.Errorf("after Fail(name, \"\"): %v", err)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		srv.Put("doomed", "v")
		srv.Delete("doomed")
		_, err := client.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("doomed")})
		checkAPIError(t, err, "ResourceNotFoundException", 400)
	})
	t.Run("UnknownOperation", func(t *testing.T) {
		_, err := client.DescribeSecret(context.Background(), &secretsmanager.DescribeSecretInput{SecretId: aws.String("exists")})
		checkAPIError(t, err, "UnknownOperationException", 400)
	})
}

func checkAPIError(t *testing.T, err error, code string, status int) {
	t.Helper()
	apiErr, ok := errors.AsType[smithy.APIError](err)
	if !ok {
		t.Fatalf("error = %v, want an API error %s", err, code)
	}
	if apiErr.ErrorCode() != code {
		t.Errorf("ErrorCode = %q, want %q", apiErr.ErrorCode(), code)
	}
	if respErr, ok := errors.AsType[*awshttp.ResponseError](err); !ok || respErr.HTTPStatusCode() != status {
		t.Errorf("error %v: want HTTP status %d", err, status)
	}
}

// rawRequest sends a hand-made request to srv and returns status, headers and
// body.
func rawRequest(t *testing.T, srv *secretsmanagertest.Server, method string, header map[string]string, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestWireShapes(t *testing.T) {
	srv := secretsmanagertest.New(t)
	srv.Put("wire", "value")
	good := map[string]string{
		"Content-Type":  "application/x-amz-json-1.1",
		"X-Amz-Target":  "secretsmanager.GetSecretValue",
		"X-Amz-Date":    "20260101T000000Z",
		"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + strings.Repeat("ab", 32),
	}

	status, h, body := rawRequest(t, srv, "POST", good, `{"SecretId":"wire"}`)
	if status != 200 || h.Get("Content-Type") != "application/x-amz-json-1.1" || h.Get("X-Amzn-RequestId") == "" {
		t.Errorf("success: status %d, headers %v", status, h)
	}
	var ok map[string]any
	if err := json.Unmarshal([]byte(body), &ok); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ARN", "Name", "SecretString", "VersionId", "VersionStages", "CreatedDate"} {
		if _, found := ok[k]; !found {
			t.Errorf("success body %s lacks %s", body, k)
		}
	}
	if _, isNum := ok["CreatedDate"].(float64); !isNum {
		t.Errorf("CreatedDate = %#v, want epoch seconds", ok["CreatedDate"])
	}

	status, h, body = rawRequest(t, srv, "POST", good, `{"SecretId":"nope"}`)
	if status != 400 || h.Get("X-Amzn-ErrorType") != "ResourceNotFoundException" ||
		body != `{"Message":"Secrets Manager can't find the specified secret.","__type":"ResourceNotFoundException"}` {
		t.Errorf("not found: %d %q %s", status, h.Get("X-Amzn-ErrorType"), body)
	}

	srv.Fail("wire", "InternalServiceError")
	status, h, _ = rawRequest(t, srv, "POST", good, `{"SecretId":"wire"}`)
	if status != 500 || h.Get("X-Amzn-ErrorType") != "InternalServiceError" {
		t.Errorf("InternalServiceError: %d %q", status, h.Get("X-Amzn-ErrorType"))
	}
}

// recordingTB captures Errorf calls so protocol violations can be tested.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.errs
	r.errs = nil
	return e
}

func TestProtocolViolations(t *testing.T) {
	rec := &recordingTB{TB: t}
	srv := secretsmanagertest.New(rec)
	srv.Put("wire", "value")
	good := func() map[string]string {
		return map[string]string{
			"Content-Type":  "application/x-amz-json-1.1",
			"X-Amz-Target":  "secretsmanager.GetSecretValue",
			"X-Amz-Date":    "20260101T000000Z",
			"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + strings.Repeat("ab", 32),
		}
	}
	tests := []struct {
		name   string
		method string
		edit   func(map[string]string)
		body   string
		want   string // substring of the reported violation
	}{
		{"method", "PUT", nil, `{"SecretId":"wire"}`, "want POST"},
		{"content type", "POST", func(h map[string]string) { h["Content-Type"] = "application/json" }, `{"SecretId":"wire"}`, "Content-Type"},
		{"no auth", "POST", func(h map[string]string) { delete(h, "Authorization") }, `{"SecretId":"wire"}`, "SigV4"},
		{"wrong service", "POST", func(h map[string]string) {
			h["Authorization"] = strings.Replace(h["Authorization"], "/secretsmanager/", "/kms/", 1)
		}, `{"SecretId":"wire"}`, "SigV4"},
		{"bad body", "POST", nil, `{"Secret":"wire"}`, "body"},
		{"no SecretId", "POST", nil, `{}`, "SecretId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := good()
			if tt.edit != nil {
				tt.edit(h)
			}
			status, _, _ := rawRequest(t, srv, tt.method, h, tt.body)
			errs := rec.take()
			if status != 400 || len(errs) != 1 || !strings.Contains(errs[0], tt.want) {
				t.Errorf("status %d, reported %q; want 400 and one report containing %q", status, errs, tt.want)
			}
		})
	}

	// Another target is a clean UnknownOperationException, not a violation.
	h := good()
	h["X-Amz-Target"] = "secretsmanager.DescribeSecret"
	status, hdr, body := rawRequest(t, srv, "POST", h, `{"SecretId":"wire"}`)
	if errs := rec.take(); status != 400 || hdr.Get("X-Amzn-ErrorType") != "UnknownOperationException" || len(errs) != 0 {
		t.Errorf("other target: %d %q %s, reports %q", status, hdr.Get("X-Amzn-ErrorType"), body, errs)
	}
}

func TestSetEnv(t *testing.T) {
	srv := secretsmanagertest.New(t)
	srv.Put("env", "from-env")
	srv.SetEnv(t)

	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	client := secretsmanager.NewFromConfig(cfg)
	out, err := client.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("env")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.SecretString) != "from-env" {
		t.Errorf("SecretString = %q", aws.ToString(out.SecretString))
	}

	srv.Fail("env", "ThrottlingException")
	if _, err := client.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("env")}); err == nil {
		t.Fatal("want throttling error")
	}
	if got := srv.Calls("env"); got != 2 {
		t.Errorf("Calls = %d, want 2 (AWS_MAX_ATTEMPTS=1)", got)
	}
}
