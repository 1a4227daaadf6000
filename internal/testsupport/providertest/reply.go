package providertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Reply is an endpoint's answer as a test of the server reads it.
type Reply struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any // the JSON object; nil when the body is not one
}

// Str is the string member k of the body, "" when absent or not a string.
func (r Reply) Str(k string) string { s, _ := r.Body[k].(string); return s }

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Status, r.Raw) }

// Do sends req with the default client and reads the whole answer; a
// transport failure fails the test.
func Do(t testing.TB, req *http.Request) Reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := Reply{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

// Send makes one request to u and reads the answer: contentType "" sends
// no Content-Type, body "" no body; header is added as given.
func Send(t testing.TB, method, u, contentType, body string, header http.Header) Reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range header {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	return Do(t, req)
}
