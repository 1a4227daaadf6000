package eventbridgetest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/eventbridgetest"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// entry returns a valid PutEvents entry for bus ("" for none).
func entry(bus, detail string) types.PutEventsRequestEntry {
	e := types.PutEventsRequestEntry{
		Source:     aws.String("test.source"),
		DetailType: aws.String("test.type"),
		Detail:     aws.String(detail),
	}
	if bus != "" {
		e.EventBusName = aws.String(bus)
	}
	return e
}

func put(t *testing.T, client *eventbridge.Client, entries ...types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
	t.Helper()
	if entries == nil {
		entries = []types.PutEventsRequestEntry{}
	}
	return client.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: entries})
}

func TestPutEvents(t *testing.T) {
	srv := eventbridgetest.New(t)
	arn := srv.CreateBus("lifecycle")
	if arn != "arn:aws:events:us-east-1:123456789012:event-bus/lifecycle" || arn != eventbridgetest.BusARN("lifecycle") {
		t.Errorf("CreateBus ARN = %q", arn)
	}
	client := srv.Client(t)

	when := time.Date(2026, 11, 24, 21, 0, 0, 250e6, time.UTC)
	withTime := entry("lifecycle", `{"n":1,"nested":{"ok":true},"big":12345678901234567890}`)
	withTime.Time = &when
	withTime.Resources = []string{"arn:aws:dynamodb:us-east-1:123456789012:table/t"}

	before := time.Now().Add(-time.Second)
	out, err := put(t, client,
		entry("", `{"bus":"none"}`),
		entry("default", `{"bus":"default"}`),
		withTime,
		entry(arn, `{"bus":"by arn"}`),
	)
	if err != nil {
		t.Fatal(err)
	}
	if out.FailedEntryCount != 0 || len(out.Entries) != 4 {
		t.Fatalf("FailedEntryCount %d, %d entries", out.FailedEntryCount, len(out.Entries))
	}
	evs := srv.Events()
	if len(evs) != 4 {
		t.Fatalf("Events: %d, want 4", len(evs))
	}
	for i, r := range out.Entries {
		if id := aws.ToString(r.EventId); !uuidRE.MatchString(id) || id != evs[i].ID || r.ErrorCode != nil {
			t.Errorf("entry %d: EventId %q (recorded %q), ErrorCode %v", i, id, evs[i].ID, r.ErrorCode)
		}
	}
	for i, want := range []string{"default", "default", "lifecycle", "lifecycle"} {
		if evs[i].Bus != want {
			t.Errorf("event %d: Bus %q, want %q", i, evs[i].Bus, want)
		}
		if evs[i].Source != "test.source" || evs[i].DetailType != "test.type" {
			t.Errorf("event %d: Source %q, DetailType %q", i, evs[i].Source, evs[i].DetailType)
		}
	}
	if evs[0].Detail["bus"] != "none" || evs[3].Detail["bus"] != "by arn" {
		t.Errorf("Detail: %v, %v", evs[0].Detail, evs[3].Detail)
	}
	e := evs[2]
	if e.Detail["n"] != json.Number("1") || e.Detail["big"] != json.Number("12345678901234567890") ||
		fmt.Sprint(e.Detail["nested"]) != "map[ok:true]" {
		t.Errorf("parsed Detail = %#v", e.Detail)
	}
	if e.RawDetail != aws.ToString(withTime.Detail) {
		t.Errorf("RawDetail = %q", e.RawDetail)
	}
	if !e.Time.Equal(when) {
		t.Errorf("Time = %v, want %v (the entry's)", e.Time, when)
	}
	if fmt.Sprint(e.Resources) != "[arn:aws:dynamodb:us-east-1:123456789012:table/t]" {
		t.Errorf("Resources = %v", e.Resources)
	}
	if got := evs[0].Time; got.Before(before) || got.After(time.Now().Add(time.Second)) {
		t.Errorf("Time without an entry Time = %v, want about now", got)
	}
	if srv.Calls() != 1 || len(srv.Dropped()) != 0 {
		t.Errorf("Calls %d, Dropped %d", srv.Calls(), len(srv.Dropped()))
	}
}

func TestEntryValidation(t *testing.T) {
	srv := eventbridgetest.New(t)
	client := srv.Client(t)
	tests := []struct {
		name     string
		edit     func(*types.PutEventsRequestEntry)
		code     string
		message  string
		accepted bool
	}{
		{"valid", func(*types.PutEventsRequestEntry) {}, "", "", true},
		{"no Source", func(e *types.PutEventsRequestEntry) { e.Source = nil }, "InvalidArgument", "Parameter Source is not valid. Reason: Source is a required argument.", false},
		{"empty Source", func(e *types.PutEventsRequestEntry) { e.Source = aws.String("") }, "InvalidArgument", "Parameter Source is not valid. Reason: Source is a required argument.", false},
		{"no DetailType", func(e *types.PutEventsRequestEntry) { e.DetailType = nil }, "InvalidArgument", "Parameter DetailType is not valid. Reason: DetailType is a required argument.", false},
		{"no Detail", func(e *types.PutEventsRequestEntry) { e.Detail = nil }, "InvalidArgument", "Parameter Detail is not valid. Reason: Detail is a required argument.", false},
		{"nothing", func(e *types.PutEventsRequestEntry) { *e = types.PutEventsRequestEntry{} }, "InvalidArgument", "Parameter Source is not valid. Reason: Source is a required argument.", false},
		{"Detail a string", func(e *types.PutEventsRequestEntry) { e.Detail = aws.String(`"text"`) }, "MalformedDetail", "Detail is malformed.", false},
		{"Detail an array", func(e *types.PutEventsRequestEntry) { e.Detail = aws.String(`[{"a":1}]`) }, "MalformedDetail", "Detail is malformed.", false},
		{"Detail a serialized object", func(e *types.PutEventsRequestEntry) { e.Detail = aws.String(`"{\"a\":1}"`) }, "MalformedDetail", "Detail is malformed.", false},
		{"Detail not JSON", func(e *types.PutEventsRequestEntry) { e.Detail = aws.String(`{"a":`) }, "MalformedDetail", "Detail is malformed.", false},
		{"Detail with trailing data", func(e *types.PutEventsRequestEntry) { e.Detail = aws.String(`{} {}`) }, "MalformedDetail", "Detail is malformed.", false},
		{"Detail null", func(e *types.PutEventsRequestEntry) { e.Detail = aws.String(`null`) }, "MalformedDetail", "Detail is malformed.", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entry("", `{"k":"v"}`)
			tt.edit(&e)
			before := len(srv.Events())
			out, err := put(t, client, e)
			if err != nil {
				t.Fatalf("PutEvents: %v (an entry failure is not a request failure)", err)
			}
			r := out.Entries[0]
			if aws.ToString(r.ErrorCode) != tt.code || aws.ToString(r.ErrorMessage) != tt.message {
				t.Errorf("entry: %q %q, want %q %q", aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage), tt.code, tt.message)
			}
			wantFailed := int32(1)
			if tt.accepted {
				wantFailed = 0
			}
			if out.FailedEntryCount != wantFailed || (r.EventId != nil) != tt.accepted {
				t.Errorf("FailedEntryCount %d, EventId %v", out.FailedEntryCount, r.EventId)
			}
			if got := len(srv.Events()) - before; got != int(1-wantFailed) {
				t.Errorf("%d events recorded", got)
			}
		})
	}

	t.Run("mixed batch keeps order", func(t *testing.T) {
		before := len(srv.Events())
		bad := entry("", `[]`)
		out, err := put(t, client, entry("", `{"i":0}`), bad, entry("", `{"i":2}`))
		if err != nil {
			t.Fatal(err)
		}
		if out.FailedEntryCount != 1 || out.Entries[0].EventId == nil || aws.ToString(out.Entries[1].ErrorCode) != "MalformedDetail" || out.Entries[2].EventId == nil {
			t.Errorf("results: %d failed, %+v", out.FailedEntryCount, out.Entries)
		}
		evs := srv.Events()[before:]
		if len(evs) != 2 || evs[0].Detail["i"] != json.Number("0") || evs[1].Detail["i"] != json.Number("2") {
			t.Errorf("recorded %+v", evs)
		}
	})
}

func TestRequestValidation(t *testing.T) {
	srv := eventbridgetest.New(t)
	client := srv.Client(t)
	many := func(n int) []types.PutEventsRequestEntry {
		es := make([]types.PutEventsRequestEntry, n)
		for i := range es {
			es[i] = entry("", `{"a":1}`)
		}
		return es
	}
	huge := entry("", `{"pad":"`+strings.Repeat("x", eventbridgetest.MaxRequestSize)+`"}`)

	tests := []struct {
		name    string
		entries []types.PutEventsRequestEntry
		want    string // the start of the message, "" for success
	}{
		{"10 entries", many(10), ""},
		{"11 entries", many(11), "1 validation error detected: Value '[PutEventsRequestEntry(time=null, source=test.source, resources=null, detailType=test.type, detail={\"a\":1}, eventBusName=null, traceHeader=null, kmsKeyIdentifier=null, internalMetadata=null), "},
		{"no entries", many(0), "1 validation error detected: Value '[]' at 'entries' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"bad bus name", []types.PutEventsRequestEntry{entry("", `{}`), entry("my bus!", `{}`)}, "1 validation error detected: Value 'my bus!' at 'entries.2.member.eventBusName' failed to satisfy constraint: Member must satisfy regular expression pattern: "},
		{"empty bus name", []types.PutEventsRequestEntry{entry("", `{}`), {Source: aws.String("s"), DetailType: aws.String("t"), Detail: aws.String("{}"), EventBusName: aws.String("")}}, "2 validation errors detected: Value '' at 'entries.2.member.eventBusName' failed to satisfy constraint: Member must have length greater than or equal to 1; "},
		{"too big", []types.PutEventsRequestEntry{huge}, "Total size of the entries in the request is over the limit."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(srv.Events())
			_, err := put(t, client, tt.entries...)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			apiErr := checkAPIError(t, err, "ValidationException", 400)
			if !strings.HasPrefix(apiErr.ErrorMessage(), tt.want) {
				t.Errorf("message %q, want it to start with %q", apiErr.ErrorMessage(), tt.want)
			}
			if tt.name == "11 entries" && !strings.HasSuffix(apiErr.ErrorMessage(), "]' at 'entries' failed to satisfy constraint: Member must have length less than or equal to 10") {
				t.Errorf("message %q", apiErr.ErrorMessage())
			}
			if got := len(srv.Events()) - before; got != 0 {
				t.Errorf("a failed request recorded %d events", got)
			}
		})
	}
}

func TestUnknownBus(t *testing.T) {
	srv := eventbridgetest.New(t)
	srv.CreateBus("known")
	client := srv.Client(t)

	// As on AWS: accepted with an EventId, and dropped.
	for _, bus := range []string{"nope", eventbridgetest.BusARN("nope"), "arn:aws:events:us-east-1:999999999999:event-bus/known", "arn:aws:events:eu-west-1:123456789012:event-bus/known"} {
		out, err := put(t, client, entry(bus, `{}`))
		if err != nil || out.FailedEntryCount != 0 || out.Entries[0].EventId == nil {
			t.Errorf("bus %q: %v, %+v", bus, err, out)
		}
	}
	if n := len(srv.Events()); n != 0 {
		t.Errorf("%d events recorded for unknown buses", n)
	}
	dropped := srv.Dropped()
	if len(dropped) != 4 || dropped[0].Bus != "nope" || dropped[1].Bus != "nope" {
		t.Errorf("Dropped = %+v", dropped)
	}

	srv.RejectUnknownBuses(true)
	out, err := put(t, client, entry("known", `{}`), entry("nope", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	r := out.Entries[1]
	if out.FailedEntryCount != 1 || aws.ToString(r.ErrorCode) != "ResourceNotFoundException" || aws.ToString(r.ErrorMessage) != "Event bus nope does not exist." {
		t.Errorf("strict: %d failed, %q %q", out.FailedEntryCount, aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage))
	}
	if evs := srv.Events(); len(evs) != 1 || evs[0].Bus != "known" {
		t.Errorf("strict: Events = %+v", evs)
	}
	if len(srv.Dropped()) != 4 {
		t.Errorf("strict: an entry was dropped instead of failed")
	}
}

func TestFailNext(t *testing.T) {
	tests := []struct {
		code     string
		status   int
		message  string
		modeled  any  // nil, or a pointer to the modeled error type
		throttle bool // the SDK's retryer treats it as throttling
	}{
		{"ThrottlingException", 400, "Rate exceeded", new(*types.ThrottlingException), true},
		{"InternalException", 500, "An internal error occurred.", new(*types.InternalException), false},
		{"AccessDeniedException", 400, "User: arn:aws:sts::123456789012:assumed-role/test/test is not authorized to perform: events:PutEvents", new(*types.AccessDeniedException), false},
		{"ResourceNotFoundException", 400, "Event bus custom does not exist.", new(*types.ResourceNotFoundException), false},
		{"ValidationException", 400, "Validation error.", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			srv := eventbridgetest.New(t)
			srv.CreateBus("custom")
			client := srv.Client(t)
			srv.FailNext(2, tt.code)
			for i := range 2 {
				_, err := put(t, client, entry("custom", `{}`))
				apiErr := checkAPIError(t, err, tt.code, tt.status)
				if !strings.HasPrefix(apiErr.ErrorMessage(), tt.message) {
					t.Errorf("call %d: message %q, want %q…", i, apiErr.ErrorMessage(), tt.message)
				}
				if tt.modeled != nil && !errors.As(err, tt.modeled) {
					t.Errorf("error %T is not the modeled %T", err, tt.modeled)
				}
				if got := retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary; got != tt.throttle {
					t.Errorf("SDK sees a throttle: %v, want %v", got, tt.throttle)
				}
			}
			if _, err := put(t, client, entry("custom", `{}`)); err != nil {
				t.Errorf("third call: %v", err)
			}
			if srv.Calls() != 3 || len(srv.Events()) != 1 {
				t.Errorf("Calls %d, Events %d; want 3, 1", srv.Calls(), len(srv.Events()))
			}
		})
	}

	t.Run("cleared", func(t *testing.T) {
		srv := eventbridgetest.New(t)
		client := srv.Client(t)
		srv.FailNext(5, "ThrottlingException")
		srv.FailNext(0, "")
		if _, err := put(t, client, entry("", `{}`)); err != nil {
			t.Errorf("after FailNext(0, \"\"): %v", err)
		}
	})

	t.Run("SDK retries throttling", func(t *testing.T) {
		srv := eventbridgetest.New(t)
		opts := srv.Options()
		opts.Retryer = retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})
		client := eventbridge.New(opts)
		srv.FailNext(2, "ThrottlingException")
		if _, err := put(t, client, entry("", `{}`)); err != nil {
			t.Fatalf("with the standard retryer: %v", err)
		}
		if srv.Calls() != 3 || len(srv.Events()) != 1 {
			t.Errorf("Calls %d, Events %d; want 3, 1", srv.Calls(), len(srv.Events()))
		}
	})
}

func TestFailEntries(t *testing.T) {
	srv := eventbridgetest.New(t)
	client := srv.Client(t)
	srv.FailEntries(2, "InternalFailure")

	out, err := put(t, client, entry("", `{"i":0}`), entry("", `{"i":1}`), entry("", `{"i":2}`))
	if err != nil {
		t.Fatalf("PutEvents: %v (entry failures are a 200)", err)
	}
	if out.FailedEntryCount != 2 {
		t.Errorf("FailedEntryCount = %d, want 2", out.FailedEntryCount)
	}
	for i, r := range out.Entries[:2] {
		if aws.ToString(r.ErrorCode) != "InternalFailure" || aws.ToString(r.ErrorMessage) != "The request processing has failed because of an unknown error, exception or failure." || r.EventId != nil {
			t.Errorf("entry %d: %q %q %v", i, aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage), r.EventId)
		}
	}
	if out.Entries[2].EventId == nil {
		t.Errorf("entry 2 failed: %q", aws.ToString(out.Entries[2].ErrorCode))
	}
	if evs := srv.Events(); len(evs) != 1 || evs[0].Detail["i"] != json.Number("2") {
		t.Errorf("Events = %+v", evs)
	}

	// The budget spans calls, then runs out.
	srv.FailEntries(1, "ThrottlingException")
	for i, wantFailed := range []int32{1, 0} {
		out, err := put(t, client, entry("", `{}`))
		if err != nil || out.FailedEntryCount != wantFailed {
			t.Errorf("call %d: %v, FailedEntryCount %d, want %d", i, err, out.FailedEntryCount, wantFailed)
		}
	}
	if got := srv.Calls(); got != 3 {
		t.Errorf("Calls = %d", got)
	}
}

func TestWait(t *testing.T) {
	srv := eventbridgetest.New(t)
	client := srv.Client(t)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 5 * time.Millisecond)
			if _, err := put(t, client, entry("", fmt.Sprintf(`{"i":%d}`, i))); err != nil {
				errs <- err
			}
		})
	}
	evs := srv.Wait(t, 8, 10*time.Second)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(evs) != 8 {
		t.Errorf("Wait returned %d events", len(evs))
	}
	seen := map[string]bool{}
	for _, e := range evs {
		seen[string(e.Detail["i"].(json.Number))] = true
	}
	if len(seen) != 8 {
		t.Errorf("distinct events: %v", seen)
	}

	t.Run("timeout fails the test", func(t *testing.T) {
		ft := &fatalTB{TB: t}
		done := make(chan []Event)
		go func() {
			defer close(done)
			done <- srv.Wait(ft, 9, 50*time.Millisecond)
		}()
		<-done
		if !strings.Contains(ft.msg, "8 event(s) after 50ms, want 9") {
			t.Errorf("Fatalf: %q", ft.msg)
		}
	})
}

// Event is short for the server's record in these tests.
type Event = eventbridgetest.Event

// fatalTB records a Fatalf and ends its goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUnknownOperation(t *testing.T) {
	srv := eventbridgetest.New(t)
	_, err := srv.Client(t).ListEventBuses(context.Background(), &eventbridge.ListEventBusesInput{})
	checkAPIError(t, err, "UnknownOperationException", 400)
	if srv.Calls() != 0 {
		t.Errorf("Calls = %d: another operation counted as PutEvents", srv.Calls())
	}
}

func checkAPIError(t *testing.T, err error, code string, status int) smithy.APIError {
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
	return apiErr
}

// rawRequest sends a hand-made request to srv and returns status, headers and
// body.
func rawRequest(t *testing.T, srv *eventbridgetest.Server, method string, header map[string]string, body string) (int, http.Header, string) {
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

func goodHeaders() map[string]string {
	return map[string]string{
		"Content-Type":  "application/x-amz-json-1.1",
		"X-Amz-Target":  "AWSEvents.PutEvents",
		"X-Amz-Date":    "20260101T000000Z",
		"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/events/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + strings.Repeat("ab", 32),
	}
}

func TestWireShapes(t *testing.T) {
	srv := eventbridgetest.New(t)

	status, h, body := rawRequest(t, srv, "POST", goodHeaders(),
		`{"Entries":[{"Source":"s","DetailType":"t","Detail":"{}","Time":1764018000.5},{"Source":"s","DetailType":"t","Detail":"x"}]}`)
	if status != 200 || h.Get("Content-Type") != "application/x-amz-json-1.1" || h.Get("X-Amzn-RequestId") == "" {
		t.Errorf("success: status %d, headers %v", status, h)
	}
	id := srv.Events()[0].ID
	if want := `{"FailedEntryCount":1,"Entries":[{"EventId":"` + id + `"},{"ErrorCode":"MalformedDetail","ErrorMessage":"Detail is malformed."}]}`; body != want {
		t.Errorf("success body\n%s\nwant\n%s", body, want)
	}
	if got := srv.Events()[0].Time; !got.Equal(time.Unix(1764018000, 500e6)) {
		t.Errorf("fractional epoch Time = %v", got)
	}

	status, h, body = rawRequest(t, srv, "POST", goodHeaders(), `{"Entries":[]}`)
	if status != 400 || h.Get("X-Amzn-ErrorType") != "ValidationException" ||
		body != `{"__type":"ValidationException","message":"1 validation error detected: Value '[]' at 'entries' failed to satisfy constraint: Member must have length greater than or equal to 1"}` {
		t.Errorf("validation: %d %q %s", status, h.Get("X-Amzn-ErrorType"), body)
	}

	status, _, body = rawRequest(t, srv, "POST", goodHeaders(), `{}`)
	if status != 400 || !strings.Contains(body, `Value null at 'entries' failed to satisfy constraint: Member must not be null`) {
		t.Errorf("no Entries: %d %s", status, body)
	}

	srv.FailNext(1, "ThrottlingException")
	status, h, body = rawRequest(t, srv, "POST", goodHeaders(), `{"Entries":[{"Source":"s","DetailType":"t","Detail":"{}"}]}`)
	if status != 400 || h.Get("X-Amzn-ErrorType") != "ThrottlingException" || body != `{"__type":"ThrottlingException","message":"Rate exceeded"}` {
		t.Errorf("throttling: %d %q %s", status, h.Get("X-Amzn-ErrorType"), body)
	}

	srv.FailNext(1, "InternalException")
	status, _, body = rawRequest(t, srv, "POST", goodHeaders(), `{"Entries":[{"Source":"s","DetailType":"t","Detail":"{}"}]}`)
	if status != 500 || !strings.HasPrefix(body, `{"__type":"InternalException",`) {
		t.Errorf("internal: %d %s", status, body)
	}

	h2 := goodHeaders()
	h2["X-Amz-Target"] = "AWSEvents.ListEventBuses"
	status, h, body = rawRequest(t, srv, "POST", h2, `{}`)
	if status != 400 || h.Get("X-Amzn-ErrorType") != "UnknownOperationException" || body != `{"__type":"UnknownOperationException"}` {
		t.Errorf("unknown operation: %d %q %s", status, h.Get("X-Amzn-ErrorType"), body)
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
	srv := eventbridgetest.New(rec)
	const body = `{"Entries":[{"Source":"s","DetailType":"t","Detail":"{}"}]}`
	tests := []struct {
		name   string
		method string
		edit   func(map[string]string)
		body   string
		want   string // substring of the reported violation
	}{
		{"method", "PUT", nil, body, "want POST"},
		{"content type", "POST", func(h map[string]string) { h["Content-Type"] = "application/json" }, body, "Content-Type"},
		{"no auth", "POST", func(h map[string]string) { delete(h, "Authorization") }, body, "SigV4"},
		{"wrong service", "POST", func(h map[string]string) {
			h["Authorization"] = strings.Replace(h["Authorization"], "/events/", "/eventbridge/", 1)
		}, body, "SigV4"},
		{"no date", "POST", func(h map[string]string) { delete(h, "X-Amz-Date") }, body, "X-Amz-Date"},
		{"unknown member", "POST", nil, `{"Entries":[{"Source":"s","Detail-Type":"t"}]}`, "body"},
		{"not JSON", "POST", nil, `Entries=1`, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := goodHeaders()
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
	if n := len(srv.Events()); n != 0 {
		t.Errorf("%d events recorded from broken requests", n)
	}
}

func TestSetEnv(t *testing.T) {
	srv := eventbridgetest.New(t)
	srv.SetEnv(t)

	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	client := eventbridge.NewFromConfig(cfg)
	if _, err := put(t, client, entry("", `{"via":"env"}`)); err != nil {
		t.Fatal(err)
	}
	if evs := srv.Events(); len(evs) != 1 || evs[0].Detail["via"] != "env" {
		t.Errorf("Events = %+v", evs)
	}

	srv.FailNext(5, "ThrottlingException")
	if _, err := put(t, client, entry("", `{}`)); err == nil {
		t.Fatal("want a throttling error")
	}
	if got := srv.Calls(); got != 2 {
		t.Errorf("Calls = %d, want 2 (AWS_MAX_ATTEMPTS=1)", got)
	}
}
