// Package eventbridgetest provides an in-process fake of Amazon EventBridge's
// PutEvents for tests.
//
// The Server speaks the service's real wire protocol (AWS JSON 1.1 over
// HTTP, SigV4-signed requests, target AWSEvents.PutEvents), so tests exercise
// the real aws-sdk-go-v2 eventbridge client end to end. It validates a
// request as the service does:
//
//   - 1 to 10 entries, else the whole request fails with ValidationException;
//   - a total entry size of at most 1 MiB (the service's calculation), else
//     ValidationException;
//   - an EventBusName, when present, that is a bus name or bus ARN, else
//     ValidationException;
//   - per entry, Source, DetailType and Detail present (InvalidArgument) and
//     Detail a JSON object (MalformedDetail): such an entry fails on its own,
//     with FailedEntryCount counting it and status 200.
//
// Like the real service, an entry naming a bus that does not exist is
// accepted (it gets an EventId) and silently dropped: PutEvents cannot tell a
// caller that its bus name is wrong. Dropped lists such entries;
// RejectUnknownBuses makes them fail instead, with ResourceNotFoundException.
//
// Requests that break the protocol (wrong method, content type, missing SigV4
// authorization, malformed body) fail the test that owns the Server. Events
// hold no credentials, so the Server registers nothing with logcheck.
package eventbridgetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/awsjson"
)

// Fixed identity of the fake account.
const (
	Region    = "us-east-1"
	AccountID = "123456789012"

	// AccessKeyID and SecretAccessKey are the static fake credentials used by
	// Client and SetEnv.
	AccessKeyID     = "AKIDEVENTBRIDGETEST"
	SecretAccessKey = "eventbridgetest-fake-secret-access-key"
)

// DefaultBus is the bus every account has; it always exists.
const DefaultBus = "default"

// MaxEntries is the most entries one PutEvents call may carry.
const MaxEntries = 10

// MaxRequestSize is the largest total entry size of one PutEvents call, as
// the service calculates it (see entrySize).
const MaxRequestSize = 1 << 20

const (
	contentType = awsjson.ContentType
	targetPut   = "AWSEvents.PutEvents"
)

// authRE matches a SigV4 Authorization header scoped to EventBridge, whose
// signing name is "events".
var authRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=[A-Za-z0-9]+/[0-9]{8}/[a-z0-9-]+/events/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$`)

// busPattern is the service's constraint on EventBusName (a name or an ARN),
// as the API reference states it.
const busPattern = `(arn:aws[\w-]*:events:[a-z]{2}-[a-z]+-[\w-]+:[0-9]{12}:event-bus\/)?[/\.\-_A-Za-z0-9]+`

var (
	busRE    = regexp.MustCompile(`^` + busPattern + `$`)
	busARNRE = regexp.MustCompile(`^arn:aws[\w-]*:events:([a-z]{2}-[a-z]+-[\w-]+):([0-9]{12}):event-bus/(.+)$`)
)

// Event is an entry the Server accepted.
type Event struct {
	// ID is the EventId the Server returned for the entry.
	ID string
	// Bus is the name of the bus the entry named, DefaultBus when it named
	// none; a bus ARN is reduced to its name.
	Bus        string
	Source     string
	DetailType string
	// Detail is the entry's Detail parsed, numbers as json.Number.
	Detail map[string]any
	// RawDetail is the entry's Detail as sent.
	RawDetail string
	// Time is the entry's Time, or when the Server received it if the entry
	// had none (as the service does).
	Time      time.Time
	Resources []string
}

// Server is a fake EventBridge endpoint. Its methods are safe for concurrent
// use.
type Server struct {
	// URL is the base endpoint, e.g. "http://127.0.0.1:40123".
	URL string

	t   testing.TB
	srv *httptest.Server

	mu          sync.Mutex
	buses       map[string]bool
	strictBuses bool
	events      []Event
	dropped     []Event
	changed     chan struct{} // closed and replaced whenever events grows
	calls       int
	failNext    int
	failCode    string
	failEntries int
	entryCode   string
}

// New starts a Server that is closed when the test ends. It knows the bus
// DefaultBus; CreateBus adds others.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		buses:   map[string]bool{DefaultBus: true},
		changed: make(chan struct{}),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// CreateBus makes the bus name exist and returns its ARN. PutEvents accepts
// either as EventBusName.
func (s *Server) CreateBus(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buses[name] = true
	return BusARN(name)
}

// BusARN returns the ARN of the bus name in the fake account.
func BusARN(name string) string {
	return fmt.Sprintf("arn:aws:events:%s:%s:event-bus/%s", Region, AccountID, name)
}

// RejectUnknownBuses controls what happens to an entry naming a bus that
// does not exist. By default, as on AWS, it is accepted and dropped (see
// Dropped); with reject, it fails with ResourceNotFoundException, which the
// real service never does. Use it to make a misnamed bus visible in a test.
func (s *Server) RejectUnknownBuses(reject bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strictBuses = reject
}

// FailNext makes the next n PutEvents requests fail as a whole with the
// error type code, e.g. "ThrottlingException" (400), "InternalException"
// (500), "AccessDeniedException", "ValidationException" or
// "ResourceNotFoundException". A client that retries spends one of the n on
// each attempt. n <= 0 or an empty code clears it.
func (s *Server) FailNext(n int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 || code == "" {
		n, code = 0, ""
	}
	s.failNext, s.failCode = n, code
}

// FailEntries makes the next n entries the Server receives fail on their
// own with the ErrorCode code, e.g. "InternalFailure", "ThrottlingException"
// or "AccessDeniedException": the request succeeds with status 200 and a
// FailedEntryCount counting them. n <= 0 or an empty code clears it.
func (s *Server) FailEntries(n int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 || code == "" {
		n, code = 0, ""
	}
	s.failEntries, s.entryCode = n, code
}

// Calls reports how many PutEvents requests the Server has received,
// whatever their outcome.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Events returns the entries accepted onto existing buses, in the order
// received.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Dropped returns the entries accepted for buses that do not exist and
// dropped, in the order received.
func (s *Server) Dropped() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.dropped...)
}

// Wait returns Events once there are at least n of them. If that takes
// longer than timeout it fails the test with what has arrived; like
// t.Fatal, it must then be called from the test's goroutine.
func (s *Server) Wait(t testing.TB, n int, timeout time.Duration) []Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if len(s.events) >= n {
			evs := append([]Event(nil), s.events...)
			s.mu.Unlock()
			return evs
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			evs := s.Events()
			summary := make([]string, len(evs))
			for i, e := range evs {
				summary[i] = e.Bus + " " + e.DetailType
			}
			t.Fatalf("eventbridgetest: %d event(s) after %v, want %d: %q", len(evs), timeout, n, summary)
			return nil
		}
	}
}

// Client returns a real eventbridge client for the Server: static fake
// credentials, region us-east-1, BaseEndpoint set to URL and no retries, so
// an injected failure surfaces after exactly one request.
func (s *Server) Client(t testing.TB) *eventbridge.Client {
	t.Helper()
	return eventbridge.New(s.Options())
}

// Options returns the eventbridge.Options Client uses, for a test that needs
// to change one (a Retryer, say) before calling eventbridge.New.
func (s *Server) Options() eventbridge.Options {
	return eventbridge.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   s.srv.Client(),
	}
}

// SetEnv points clients built with config.LoadDefaultConfig at the Server for
// the rest of the test: AWS_ENDPOINT_URL_EVENTBRIDGE, AWS_REGION, static
// fake credentials and AWS_MAX_ATTEMPTS=1. Like t.Setenv, it cannot be used
// in parallel tests.
func (s *Server) SetEnv(t testing.TB) {
	t.Helper()
	awsjson.SetEnv(t, "AWS_ENDPOINT_URL_EVENTBRIDGE", s.URL, Region, AccessKeyID, SecretAccessKey)
}

// putEventsRequest is the PutEvents input on the wire.
type putEventsRequest struct {
	Entries    *[]requestEntry `json:"Entries"`
	EndpointID string          `json:"EndpointId,omitempty"` // global endpoints; accepted and ignored
}

type requestEntry struct {
	Source       *string      `json:"Source"`
	DetailType   *string      `json:"DetailType"`
	Detail       *string      `json:"Detail"`
	EventBusName *string      `json:"EventBusName"`
	Time         *json.Number `json:"Time"` // epoch seconds
	Resources    []string     `json:"Resources"`
	TraceHeader  *string      `json:"TraceHeader"`
}

// resultEntry is one PutEvents result on the wire: an EventId, or an
// ErrorCode and ErrorMessage.
type resultEntry struct {
	EventID      string `json:"EventId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

type putEventsResponse struct {
	FailedEntryCount int           `json:"FailedEntryCount"`
	Entries          []resultEntry `json:"Entries"`
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if errType := awsjson.CheckRequest(s.t, "eventbridgetest", r, authRE, targetPut); errType != "" {
		writeError(w, errType, "")
		return
	}

	var in putEventsRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		if awsjson.ClientGone(r, err) {
			return // the client went away (a cancelled caller): not a protocol error
		}
		s.t.Errorf("eventbridgetest: PutEvents body: %v", err)
		writeError(w, "SerializationException", "")
		return
	}

	s.mu.Lock()
	s.calls++
	if s.failNext > 0 {
		s.failNext--
		code := s.failCode
		s.mu.Unlock()
		msg := ""
		if code == "ResourceNotFoundException" {
			msg = "Event bus " + firstBus(in) + " does not exist."
		}
		writeError(w, code, msg)
		return
	}
	s.mu.Unlock()

	if msg := validateRequest(in); msg != "" {
		writeError(w, "ValidationException", msg)
		return
	}

	now := time.Now().UTC()
	out := putEventsResponse{Entries: make([]resultEntry, 0, len(*in.Entries))}
	s.mu.Lock()
	grew := false
	for _, e := range *in.Entries {
		res, ev, known := s.entryLocked(e, now)
		if res.ErrorCode != "" {
			out.FailedEntryCount++
		} else if known {
			s.events = append(s.events, ev)
			grew = true
		} else {
			s.dropped = append(s.dropped, ev)
		}
		out.Entries = append(out.Entries, res)
	}
	if grew {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()

	body, err := json.Marshal(out)
	if err != nil {
		s.t.Errorf("eventbridgetest: %v", err)
		writeError(w, "InternalException", "")
		return
	}
	awsjson.WriteHeaders(w)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// validateRequest returns the message of the ValidationException the
// service answers in, or "" if the request as a whole is valid.
func validateRequest(in putEventsRequest) string {
	if in.Entries == nil {
		return "1 validation error detected: Value null at 'entries' failed to satisfy constraint: Member must not be null"
	}
	entries := *in.Entries
	var errs []string
	switch {
	case len(entries) < 1:
		errs = append(errs, "Value '[]' at 'entries' failed to satisfy constraint: Member must have length greater than or equal to 1")
	case len(entries) > MaxEntries:
		errs = append(errs, "Value '"+javaEntries(entries)+"' at 'entries' failed to satisfy constraint: Member must have length less than or equal to 10")
	}
	for i, e := range entries {
		if e.EventBusName == nil {
			continue
		}
		name, at := *e.EventBusName, fmt.Sprintf("entries.%d.member.eventBusName", i+1)
		if len(name) < 1 {
			errs = append(errs, "Value '' at '"+at+"' failed to satisfy constraint: Member must have length greater than or equal to 1")
		}
		if len(name) > 1600 {
			errs = append(errs, "Value '"+name+"' at '"+at+"' failed to satisfy constraint: Member must have length less than or equal to 1600")
		}
		if !busRE.MatchString(name) {
			errs = append(errs, "Value '"+name+"' at '"+at+"' failed to satisfy constraint: Member must satisfy regular expression pattern: "+busPattern)
		}
	}
	switch len(errs) {
	case 0:
	case 1:
		return "1 validation error detected: " + errs[0]
	default:
		return fmt.Sprintf("%d validation errors detected: %s", len(errs), strings.Join(errs, "; "))
	}
	total := 0
	for _, e := range entries {
		total += entrySize(e)
	}
	if total > MaxRequestSize {
		return "Total size of the entries in the request is over the limit."
	}
	return ""
}

// entrySize is the service's documented entry size: 14 bytes for a Time,
// plus the UTF-8 lengths of Source, DetailType, Detail and each resource.
func entrySize(e requestEntry) int {
	n := 0
	if e.Time != nil {
		n += 14
	}
	for _, p := range []*string{e.Source, e.DetailType, e.Detail} {
		if p != nil {
			n += len(*p)
		}
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// entryLocked judges one entry of a valid request. It returns the result
// entry and, for an accepted entry, the Event and whether its bus exists.
// s.mu is held.
func (s *Server) entryLocked(e requestEntry, now time.Time) (resultEntry, Event, bool) {
	if s.failEntries > 0 {
		s.failEntries--
		return resultEntry{ErrorCode: s.entryCode, ErrorMessage: entryMessage(s.entryCode)}, Event{}, false
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"Source", e.Source}, {"DetailType", e.DetailType}, {"Detail", e.Detail}} {
		if f.v == nil || *f.v == "" {
			return resultEntry{
				ErrorCode:    "InvalidArgument",
				ErrorMessage: "Parameter " + f.name + " is not valid. Reason: " + f.name + " is a required argument.",
			}, Event{}, false
		}
	}
	detail, ok := parseDetail(*e.Detail)
	if !ok {
		return resultEntry{ErrorCode: "MalformedDetail", ErrorMessage: "Detail is malformed."}, Event{}, false
	}
	bus, known := s.resolveBusLocked(e.EventBusName)
	if !known && s.strictBuses {
		return resultEntry{ErrorCode: "ResourceNotFoundException", ErrorMessage: "Event bus " + bus + " does not exist."}, Event{}, false
	}
	ev := Event{
		ID:         awsjson.NewRequestID(),
		Bus:        bus,
		Source:     *e.Source,
		DetailType: *e.DetailType,
		Detail:     detail,
		RawDetail:  *e.Detail,
		Time:       now,
		Resources:  append([]string(nil), e.Resources...),
	}
	if e.Time != nil {
		if f, err := e.Time.Float64(); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			sec, frac := math.Modf(f)
			ev.Time = time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC()
		}
	}
	return resultEntry{EventID: ev.ID}, ev, known
}

// resolveBusLocked returns the bus name an EventBusName designates and
// whether that bus exists. A bus ARN of another account or region names no
// bus here. s.mu is held.
func (s *Server) resolveBusLocked(p *string) (string, bool) {
	if p == nil {
		return DefaultBus, true
	}
	name := *p
	if m := busARNRE.FindStringSubmatch(name); m != nil {
		if m[1] != Region || m[2] != AccountID {
			return name, false
		}
		name = m[3]
	}
	return name, s.buses[name]
}

// parseDetail parses a Detail, which must be a JSON object.
func parseDetail(s string) (map[string]any, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // trailing data
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// firstBus names the bus of the request's first entry, for an injected
// ResourceNotFoundException.
func firstBus(in putEventsRequest) string {
	if in.Entries != nil && len(*in.Entries) > 0 && (*in.Entries)[0].EventBusName != nil {
		return *(*in.Entries)[0].EventBusName
	}
	return DefaultBus
}

// javaEntries renders entries as the service's validation messages do.
func javaEntries(entries []requestEntry) string {
	str := func(p *string) string {
		if p == nil {
			return "null"
		}
		return *p
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range entries {
		if i > 0 {
			b.WriteString(", ")
		}
		t := "null"
		if e.Time != nil {
			t = e.Time.String()
		}
		res := "null"
		if e.Resources != nil {
			res = "[" + strings.Join(e.Resources, ", ") + "]"
		}
		fmt.Fprintf(&b, "PutEventsRequestEntry(time=%s, source=%s, resources=%s, detailType=%s, detail=%s, eventBusName=%s, traceHeader=%s, kmsKeyIdentifier=null, internalMetadata=null)",
			t, str(e.Source), res, str(e.DetailType), str(e.Detail), str(e.EventBusName), str(e.TraceHeader))
	}
	b.WriteByte(']')
	return b.String()
}

// entryMessages holds the ErrorMessage the service sends with an entry's
// ErrorCode.
var entryMessages = map[string]string{
	"InternalFailure":                     "The request processing has failed because of an unknown error, exception or failure.",
	"ThrottlingException":                 "Rate exceeded",
	"AccessDeniedException":               "You do not have sufficient access to perform this action.",
	"InvalidAccountIdException":           "The account ID provided is not valid.",
	"InvalidArgument":                     "A specified parameter is not valid.",
	"MalformedDetail":                     "Detail is malformed.",
	"RedactionFailure":                    "Redacting the CloudTrail event failed.",
	"NotAuthorizedForSourceException":     "Not authorized for the source.",
	"NotAuthorizedForDetailTypeException": "Not authorized for the detail type.",
	"ResourceNotFoundException":           "Event bus default does not exist.",
}

func entryMessage(code string) string {
	if m, ok := entryMessages[code]; ok {
		return m
	}
	return code
}

// serviceErrors holds the status and message the service sends per error type.
var serviceErrors = map[string]struct {
	status  int
	message string
}{
	"ValidationException":                 {400, "Validation error."},
	"ResourceNotFoundException":           {400, "Event bus default does not exist."},
	"ThrottlingException":                 {400, "Rate exceeded"},
	"AccessDeniedException":               {400, "User: arn:aws:sts::123456789012:assumed-role/test/test is not authorized to perform: events:PutEvents on resource: arn:aws:events:us-east-1:123456789012:event-bus/default because no identity-based policy allows the events:PutEvents action"},
	"UnknownOperationException":           {400, ""},
	"SerializationException":              {400, "Start of structure or map found where not expected."},
	"IncompleteSignatureException":        {400, "The request signature does not conform to AWS standards."},
	"UnrecognizedClientException":         {400, "The security token included in the request is invalid."},
	"MissingAuthenticationTokenException": {400, "Missing Authentication Token"},
	"InternalException":                   {500, "An internal error occurred."},
	"InternalFailure":                     {500, "The request processing has failed because of an unknown error, exception or failure."},
	"ServiceUnavailable":                  {503, "The request has failed due to a temporary failure of the server."},
}

// writeError writes an AWS JSON 1.1 error: the type in X-Amzn-ErrorType and
// in the body's __type, the text in its message, status 400 for client
// faults and 5xx for server faults. An empty message takes the service's
// usual one.
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
	awsjson.WriteError(w, se.status, errorType, "message", message)
}
