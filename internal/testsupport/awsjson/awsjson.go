// Package awsjson holds what the AWS JSON 1.1 protocol test servers
// (secretsmanagertest, eventbridgetest) share: the content type, response
// headers and the error shape the AWS SDK decodes.
package awsjson

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
)

// ContentType is the AWS JSON 1.1 media type of requests and answers.
const ContentType = "application/x-amz-json-1.1"

// WriteHeaders sets the headers of every answer: the content type and a
// fresh request id.
func WriteHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("X-Amzn-RequestId", NewRequestID())
}

// WriteError writes an error as the services do: the type in
// X-Amzn-ErrorType and in the body's __type, the text under messageField
// ("message" or "Message", as the service spells it; omitted when empty).
func WriteError(w http.ResponseWriter, status int, errorType, messageField, message string) {
	body := map[string]string{"__type": errorType}
	if message != "" {
		body[messageField] = message
	}
	b, _ := json.Marshal(body)
	WriteHeaders(w)
	w.Header().Set("X-Amzn-ErrorType", errorType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// NewRequestID returns a random version 4 UUID, the shape of AWS request ids.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// SetEnv points clients built with config.LoadDefaultConfig at a test
// server for the rest of the test: endpointVar (such as
// AWS_ENDPOINT_URL_EVENTBRIDGE) set to url, the region, static fake
// credentials, no shared config files, no instance metadata and one
// attempt per call. Like t.Setenv, it cannot be used in parallel tests.
func SetEnv(t testing.TB, endpointVar, url, region, accessKeyID, secretAccessKey string) {
	t.Helper()
	for k, v := range map[string]string{
		endpointVar:                   url,
		"AWS_REGION":                  region,
		"AWS_ACCESS_KEY_ID":           accessKeyID,
		"AWS_SECRET_ACCESS_KEY":       secretAccessKey,
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             "/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
		"AWS_MAX_ATTEMPTS":            "1",
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

// CheckRequest checks what every AWS JSON 1.1 request must be: a POST with
// ContentType, a SigV4 Authorization header matching auth, an X-Amz-Date,
// and target as X-Amz-Target. It returns "" for a good request, else the
// error type the service answers with. A protocol violation is a bug in
// the client under test and fails t, naming server; another target is
// just another operation and does not.
func CheckRequest(t testing.TB, server string, r *http.Request, auth *regexp.Regexp, target string) (errorType string) {
	switch {
	case r.Method != http.MethodPost:
		t.Errorf("%s: %s %s: want POST", server, r.Method, r.URL.Path)
		return "UnknownOperationException"
	case r.Header.Get("Content-Type") != ContentType:
		t.Errorf("%s: Content-Type %q, want %q", server, r.Header.Get("Content-Type"), ContentType)
		return "SerializationException"
	case !auth.MatchString(r.Header.Get("Authorization")):
		t.Errorf("%s: Authorization %q does not look like SigV4 for the service", server, r.Header.Get("Authorization"))
		return "IncompleteSignatureException"
	case r.Header.Get("X-Amz-Date") == "":
		t.Errorf("%s: missing X-Amz-Date", server)
		return "IncompleteSignatureException"
	case r.Header.Get("X-Amz-Target") != target:
		return "UnknownOperationException"
	}
	return ""
}

// ClientGone reports whether err, from reading r's body, means the client
// went away (a cancelled caller) rather than sent a malformed body.
func ClientGone(r *http.Request, err error) bool {
	return r.Context().Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}
