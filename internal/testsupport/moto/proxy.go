package moto

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Proxy is a reverse proxy in front of moto that counts the calls it
// receives and answers chosen ones itself with a Fault: what a test needs
// of AWS that an emulator does not do (throttling, server errors, a failed
// entry, a hang). Everything else goes on to moto unchanged.
type Proxy struct {
	// URL is the proxy's endpoint.
	URL string

	mu     sync.Mutex
	calls  []Call
	faults []*injected
}

// Call is a request the proxy received.
type Call struct {
	// Service is the X-Amz-Target's prefix, naming the service and its API
	// version, such as "DynamoDB_20120810", "TrentService" (KMS),
	// "secretsmanager" or "AWSEvents" ("" if the request has none).
	Service string
	// Operation is the operation named by the request's X-Amz-Target, such
	// as "GetSecretValue" or "PutEvents" ("" if it names none).
	Operation string
	// Input is the request's JSON body (nil if it is not a JSON object).
	Input map[string]any
	// Status is the HTTP status of the answer, moto's or the fault's (0
	// while the call is in flight).
	Status int
}

// Fault is an answer the proxy gives in moto's place.
type Fault struct {
	Status int
	// Header is added to the answer; Content-Type is AWS JSON 1.1 unless
	// it says otherwise.
	Header http.Header
	Body   string
	// Hang holds the request without an answer until the client gives up.
	Hang bool
}

// AWSError is the Fault of a service error as the AWS JSON protocol sends
// it, such as AWSError(400, "ThrottlingException", "Rate exceeded").
func AWSError(status int, errorType, message string) Fault {
	body, _ := json.Marshal(map[string]string{"__type": errorType, "message": message})
	return Fault{Status: status, Header: http.Header{"X-Amzn-ErrorType": {errorType}}, Body: string(body)}
}

// Hang is the Fault of a service that never answers.
var Hang = Fault{Hang: true}

type injected struct {
	operation string
	match     func(Call) bool
	left      int // answers left; < 0: unlimited
	fault     Fault
}

// Proxied starts a Proxy in front of a's endpoint for the rest of the test
// and returns a copy of a whose requests go through it, and the proxy.
func (a *Account) Proxied(t testing.TB) (*Account, *Proxy) {
	t.Helper()
	target, err := url.Parse(a.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	forward := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// The Host the client signed: moto checks SigV4 signatures
			// once its IAM enforcement is on (Server.EnforceIAM).
			r.Out.Host = r.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil { // else the client is gone: nobody to tell
				http.Error(w, "moto proxy: "+err.Error(), http.StatusBadGateway)
			}
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the client went away
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		c := Call{Operation: r.Header.Get("X-Amz-Target")}
		if dot := strings.LastIndexByte(c.Operation, '.'); dot >= 0 {
			c.Service, c.Operation = c.Operation[:dot], c.Operation[dot+1:]
		}
		_ = json.Unmarshal(body, &c.Input)
		i, f, ok := p.record(c)
		switch {
		case !ok:
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			forward.ServeHTTP(sw, r)
			p.answered(i, sw.status)
		case f.Hang:
			<-r.Context().Done()
		default:
			p.answered(i, f.Status)
			for k, v := range f.Header {
				w.Header()[k] = v
			}
			if w.Header().Get("Content-Type") == "" {
				w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			}
			w.WriteHeader(f.Status)
			_, _ = io.WriteString(w, f.Body)
		}
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	proxied := *a
	proxied.Endpoint = srv.URL
	return &proxied, p
}

// record notes c and returns its index and the fault it gets, if any.
func (p *Proxy) record(c Call) (int, Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, c)
	i := len(p.calls) - 1
	for _, f := range p.faults {
		if f.left != 0 && f.operation == c.Operation && (f.match == nil || f.match(c)) {
			if f.left > 0 {
				f.left--
			}
			return i, f.fault, true
		}
	}
	return i, Fault{}, false
}

// answered notes the status of the answer to call i.
func (p *Proxy) answered(i, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[i].Status = status
}

// statusWriter remembers the status a handler writes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the writer's Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// All returns every call the proxy received, in order.
func (p *Proxy) All() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// Inject answers the next times calls of operation that match selects (nil:
// all) with f; times < 0 means every such call from now on. The earliest
// injection that applies to a call answers it.
func (p *Proxy) Inject(operation string, match func(Call) bool, times int, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &injected{operation: operation, match: match, left: times, fault: f})
}

// Calls counts the calls of operation that match selects (nil: all),
// answered by moto or by a fault.
func (p *Proxy) Calls(operation string, match func(Call) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		if c.Operation == operation && (match == nil || match(c)) {
			n++
		}
	}
	return n
}

// Input selects the calls whose input member is the string value, such as
// Input("SecretId", "oauthbroker/keys").
func Input(member, value string) func(Call) bool {
	return func(c Call) bool {
		s, ok := c.Input[member].(string)
		return ok && s == value
	}
}
