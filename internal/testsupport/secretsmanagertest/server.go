// Package secretsmanagertest provides an in-process fake of AWS Secrets
// Manager's GetSecretValue for tests.
//
// The Server speaks the service's real wire protocol (AWS JSON 1.1 over HTTP,
// SigV4-signed requests), so tests exercise the real aws-sdk-go-v2
// secretsmanager client end to end: request serialization, signing, response
// and error deserialization. Requests that break the protocol (wrong method,
// content type, missing SigV4 authorization, malformed body) fail the test
// that owns the Server.
package secretsmanagertest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/awsjson"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// Fixed identity of the fake account.
const (
	Region    = "us-east-1"
	AccountID = "123456789012"

	// AccessKeyID and SecretAccessKey are the static fake credentials used by
	// Client and SetEnv.
	AccessKeyID     = "AKIDSECRETSMANAGERTEST"
	SecretAccessKey = "secretsmanagertest-fake-secret-access-key"
)

const (
	contentType = awsjson.ContentType
	targetGet   = "secretsmanager.GetSecretValue"
)

// authRE matches a SigV4 Authorization header scoped to Secrets Manager.
var authRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=[A-Za-z0-9]+/[0-9]{8}/[a-z0-9-]+/secretsmanager/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$`)

// Server is a fake Secrets Manager endpoint. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the base endpoint, e.g. "http://127.0.0.1:40123".
	URL string

	t   testing.TB
	srv *httptest.Server

	mu      sync.Mutex
	secrets map[string]*secret // by name
	fail    map[string]string  // name -> error type
	calls   map[string]int     // GetSecretValue calls by name (or by SecretId when unknown)
}

type secret struct {
	arn       string
	versionID string
	created   time.Time
	str       *string
	bin       []byte
}

// New starts a Server that is closed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		secrets: make(map[string]*secret),
		fail:    make(map[string]string),
		calls:   make(map[string]int),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Put creates the secret name, or stores a new current version of it, with
// value as its SecretString. The value is registered with logcheck, and so
// is each string member of a JSON object value other than the non-secret
// "client_id" and "current_kid".
func (s *Server) Put(name, value string) {
	registerSecret([]byte(value))
	s.put(name, &value, nil)
}

// PutBinary is like Put but stores value as the secret's SecretBinary.
func (s *Server) PutBinary(name string, value []byte) {
	registerSecret(value)
	logcheck.Register(base64.StdEncoding.EncodeToString(value)) // as on the wire
	s.put(name, nil, append([]byte(nil), value...))
}

// registerSecret registers a secret value and the secrets in it with
// logcheck.
func registerSecret(value []byte) {
	logcheck.Register(string(value))
	var members map[string]any
	if json.Unmarshal(value, &members) != nil {
		return
	}
	for k, v := range members {
		if str, ok := v.(string); ok && k != "client_id" && k != "current_kid" {
			logcheck.Register(str)
		}
	}
}

func (s *Server) put(name string, str *string, bin []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[name]
	if !ok {
		sec = &secret{
			arn:     fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", Region, AccountID, name, randSuffix()),
			created: time.Now(),
		}
		s.secrets[name] = sec
	}
	sec.versionID = awsjson.NewRequestID()
	sec.str, sec.bin = str, bin
}

// Delete removes the secret name; reading it then yields
// ResourceNotFoundException.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.secrets, name)
}

// ARN returns the ARN of the secret name, or "" if it does not exist.
// GetSecretValue accepts it as SecretId as well as the name.
func (s *Server) ARN(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec, ok := s.secrets[name]; ok {
		return sec.arn
	}
	return ""
}

// Fail makes every following GetSecretValue of name fail with the given
// error type (e.g. "ThrottlingException", "InternalServiceError",
// "AccessDeniedException"), whether or not the secret exists. An empty
// errorType clears the failure.
func (s *Server) Fail(name, errorType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errorType == "" {
		delete(s.fail, name)
		return
	}
	s.fail[name] = errorType
}

// Calls reports how many GetSecretValue requests named name (by name or ARN)
// the Server has received, whatever their outcome.
func (s *Server) Calls(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[name]
}

// Client returns a real secretsmanager client for the Server: static fake
// credentials, region us-east-1, BaseEndpoint set to URL and no retries, so
// an injected failure surfaces after exactly one request.
func (s *Server) Client(t testing.TB) *secretsmanager.Client {
	t.Helper()
	return secretsmanager.New(secretsmanager.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   s.srv.Client(),
	})
}

// SetEnv points clients built with config.LoadDefaultConfig at the Server for
// the rest of the test: AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_REGION, static
// fake credentials and AWS_MAX_ATTEMPTS=1. Like t.Setenv, it cannot be used
// in parallel tests.
func (s *Server) SetEnv(t testing.TB) {
	t.Helper()
	awsjson.SetEnv(t, "AWS_ENDPOINT_URL_SECRETS_MANAGER", s.URL, Region, AccessKeyID, SecretAccessKey)
}

// getSecretValueRequest is the GetSecretValue input on the wire.
type getSecretValueRequest struct {
	SecretID     string `json:"SecretId"`
	VersionID    string `json:"VersionId,omitempty"`
	VersionStage string `json:"VersionStage,omitempty"`
}

// getSecretValueResponse is the GetSecretValue output on the wire.
type getSecretValueResponse struct {
	ARN           string   `json:"ARN"`
	Name          string   `json:"Name"`
	SecretString  *string  `json:"SecretString,omitempty"`
	SecretBinary  []byte   `json:"SecretBinary,omitempty"` // base64, as the service sends blobs
	VersionID     string   `json:"VersionId"`
	VersionStages []string `json:"VersionStages"`
	CreatedDate   float64  `json:"CreatedDate"` // epoch seconds
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if errType := awsjson.CheckRequest(s.t, "secretsmanagertest", r, authRE, targetGet); errType != "" {
		writeError(w, errType, "")
		return
	}

	var in getSecretValueRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		if awsjson.ClientGone(r, err) {
			return // the client went away (a cancelled caller): not a protocol error
		}
		s.t.Errorf("secretsmanagertest: GetSecretValue body: %v", err)
		writeError(w, "SerializationException", "")
		return
	}
	if in.SecretID == "" {
		s.t.Errorf("secretsmanagertest: GetSecretValue without SecretId")
		writeError(w, "InvalidParameterException", "")
		return
	}

	s.mu.Lock()
	name := in.SecretID
	for n, sec := range s.secrets {
		if sec.arn == in.SecretID {
			name = n
			break
		}
	}
	s.calls[name]++
	failure := s.fail[name]
	sec, ok := s.secrets[name]
	var out getSecretValueResponse
	if ok {
		out = getSecretValueResponse{
			ARN:           sec.arn,
			Name:          name,
			SecretString:  sec.str,
			SecretBinary:  sec.bin,
			VersionID:     sec.versionID,
			VersionStages: []string{"AWSCURRENT"},
			CreatedDate:   float64(sec.created.UnixMilli()) / 1e3,
		}
	}
	s.mu.Unlock()

	switch {
	case failure != "":
		writeError(w, failure, "")
	case !ok,
		in.VersionID != "" && in.VersionID != out.VersionID,
		in.VersionStage != "" && in.VersionStage != "AWSCURRENT":
		writeError(w, "ResourceNotFoundException", "")
	default:
		body, err := json.Marshal(out)
		if err != nil {
			s.t.Errorf("secretsmanagertest: %v", err)
			writeError(w, "InternalServiceError", "")
			return
		}
		awsjson.WriteHeaders(w)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	}
}

// serviceErrors holds the status and message the service sends per error type.
var serviceErrors = map[string]struct {
	status  int
	message string
}{
	"ResourceNotFoundException":           {400, "Secrets Manager can't find the specified secret."},
	"ThrottlingException":                 {400, "Rate exceeded"},
	"AccessDeniedException":               {400, "User: arn:aws:sts::123456789012:assumed-role/test/test is not authorized to perform: secretsmanager:GetSecretValue because no identity-based policy allows the secretsmanager:GetSecretValue action"},
	"DecryptionFailure":                   {400, "Secrets Manager can't decrypt the protected secret text using the provided KMS key."},
	"InvalidRequestException":             {400, "You can't perform this operation on the secret because it was marked for deletion."},
	"InvalidParameterException":           {400, "The parameter name or value is invalid."},
	"UnknownOperationException":           {400, ""},
	"SerializationException":              {400, "Start of structure or map found where not expected."},
	"IncompleteSignatureException":        {400, "The request signature does not conform to AWS standards."},
	"UnrecognizedClientException":         {400, "The security token included in the request is invalid."},
	"InternalServiceError":                {500, "An error occurred on the server side."},
	"InternalFailure":                     {500, "The request processing has failed because of an unknown error, exception or failure."},
	"ServiceUnavailable":                  {503, "The request has failed due to a temporary failure of the server."},
	"MissingAuthenticationTokenException": {400, "Missing Authentication Token"},
}

// writeError writes an AWS JSON 1.1 error: the type in X-Amzn-ErrorType and
// in the body's __type, status 400 for client faults and 5xx for server
// faults. An empty message takes the service's usual one.
func writeError(w http.ResponseWriter, errorType, message string) {
	se, ok := serviceErrors[errorType]
	if !ok {
		se.status = http.StatusBadRequest
		if strings.HasPrefix(errorType, "Internal") {
			se.status = http.StatusInternalServerError
		}
	}
	if message == "" {
		message = se.message
	}
	awsjson.WriteError(w, se.status, errorType, "Message", message)
}

// randSuffix returns the six random letters the service appends to a secret's
// name in its ARN.
func randSuffix() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var b [6]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b[:])
}
