package lifecycle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/smithy-go"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/eventbridgetest"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
)

var when = time.Date(2026, 11, 24, 21, 0, 0, 0, time.UTC)

// events returns one Event of each Type, as the broker would make them.
func events() []lifecycle.Event {
	return []lifecycle.Event{
		{Type: lifecycle.Created, Provider: "acme", ConnectionID: "c1", Status: "connected", Time: when},
		{Type: lifecycle.Recovered, Provider: "acme", ConnectionID: "c1", Status: "connected", Time: when},
		{Type: lifecycle.NeedsReauth, Provider: "acme", ConnectionID: "c1", Status: "needs_reauth", Time: when, FailureClass: "invalid_grant"},
		{Type: lifecycle.Failing, Provider: "getresponse360", ConnectionID: "cust:42@eu", Status: "failing", Time: when, FailureClass: "provider_unavailable"},
		{Type: lifecycle.Deleted, Provider: "acme", ConnectionID: "c1", Status: "deleted", Time: when},
	}
}

func TestDetail(t *testing.T) {
	tests := []struct {
		e              lifecycle.Event
		wantDetailType string
		wantDetail     string
	}{
		{events()[0], "oauthbroker.connection.created",
			`{"provider":"acme","connection_id":"c1","status":"connected","timestamp":"2026-11-24T21:00:00Z"}`},
		{events()[1], "oauthbroker.connection.recovered",
			`{"provider":"acme","connection_id":"c1","status":"connected","timestamp":"2026-11-24T21:00:00Z"}`},
		{events()[2], "oauthbroker.connection.needs_reauth",
			`{"provider":"acme","connection_id":"c1","status":"needs_reauth","timestamp":"2026-11-24T21:00:00Z","failure_class":"invalid_grant"}`},
		{events()[3], "oauthbroker.connection.failing",
			`{"provider":"getresponse360","connection_id":"cust:42@eu","status":"failing","timestamp":"2026-11-24T21:00:00Z","failure_class":"provider_unavailable"}`},
		{events()[4], "oauthbroker.connection.deleted",
			`{"provider":"acme","connection_id":"c1","status":"deleted","timestamp":"2026-11-24T21:00:00Z"}`},
		{ // another zone and sub-second precision: RFC 3339 in UTC, whole seconds
			lifecycle.Event{Type: lifecycle.Created, Provider: "p", ConnectionID: "c", Status: "connected",
				Time: time.Date(2026, 11, 24, 22, 0, 0, 999e6, time.FixedZone("CET", 3600))},
			"oauthbroker.connection.created",
			`{"provider":"p","connection_id":"c","status":"connected","timestamp":"2026-11-24T21:00:00Z"}`},
	}
	for _, tt := range tests {
		t.Run(string(tt.e.Type), func(t *testing.T) {
			if got := tt.e.DetailType(); got != tt.wantDetailType {
				t.Errorf("DetailType() = %q, want %q", got, tt.wantDetailType)
			}
			if got := tt.e.Detail(); got != tt.wantDetail {
				t.Errorf("Detail()\n got %s\nwant %s", got, tt.wantDetail)
			}
		})
	}

	t.Run("zero Time is now", func(t *testing.T) {
		e := lifecycle.Event{Type: lifecycle.Deleted, Provider: "p", ConnectionID: "c", Status: "deleted"}
		var d map[string]string
		if err := json.Unmarshal([]byte(e.Detail()), &d); err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339, d["timestamp"])
		if err != nil || time.Since(ts) > time.Minute || !strings.HasSuffix(d["timestamp"], "Z") {
			t.Errorf("timestamp %q (%v)", d["timestamp"], err)
		}
	})
}

func TestTypes(t *testing.T) {
	want := []string{"created", "recovered", "needs_reauth", "failing", "deleted"}
	var got []string
	for _, ty := range lifecycle.Types {
		if !ty.Valid() {
			t.Errorf("%q not Valid", ty)
		}
		got = append(got, string(ty))
	}
	if !slices.Equal(got, want) {
		t.Errorf("Types = %q, want %q", got, want)
	}
	for _, ty := range []lifecycle.Type{"", "Created", "connected", "refreshed"} {
		if ty.Valid() {
			t.Errorf("%q Valid", ty)
		}
	}
}

// tokenish matches names of members that could carry a credential.
var tokenish = regexp.MustCompile(`(?i)token|secret|code|key|password|credential|verifier|state|cookie|sig|assertion|auth`)

func TestNoTokenField(t *testing.T) {
	// The Event struct: exactly these fields, all plain.
	var fields []string
	et := reflect.TypeFor[lifecycle.Event]()
	for f := range et.Fields() {
		fields = append(fields, f.Name+" "+f.Type.String())
		if tokenish.MatchString(f.Name) {
			t.Errorf("Event field %s looks like it could hold a credential", f.Name)
		}
	}
	wantFields := []string{"Type lifecycle.Type", "Provider string", "ConnectionID string", "Status string", "Time time.Time", "FailureClass string"}
	if !slices.Equal(fields, wantFields) {
		t.Errorf("Event fields = %q, want %q: a new field needs a look at what it may carry", fields, wantFields)
	}

	// Every detail: only the contract's members.
	allowed := []string{"provider", "connection_id", "status", "timestamp", "failure_class"}
	for _, e := range events() {
		var d map[string]any
		if err := json.Unmarshal([]byte(e.Detail()), &d); err != nil {
			t.Fatal(err)
		}
		for k, v := range d {
			if !slices.Contains(allowed, k) || tokenish.MatchString(k) {
				t.Errorf("%s: detail member %q", e.Type, k)
			}
			if _, ok := v.(string); !ok {
				t.Errorf("%s: detail member %q is %T, want a string", e.Type, k, v)
			}
		}
	}
}

// newPublisher returns an EventBridge publisher onto bus of a fresh server,
// through a real client without retries.
func newPublisher(t *testing.T, bus string) (*lifecycle.EventBridge, *eventbridgetest.Server) {
	t.Helper()
	srv := eventbridgetest.New(t)
	srv.CreateBus("oauthbroker-events")
	return lifecycle.NewEventBridge(srv.Client(t), bus), srv
}

func TestEventBridgePublish(t *testing.T) {
	pub, srv := newPublisher(t, "oauthbroker-events")
	for _, e := range events() {
		t.Run(string(e.Type), func(t *testing.T) {
			before := len(srv.Events())
			if err := pub.Publish(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			evs := srv.Events()[before:]
			if len(evs) != 1 {
				t.Fatalf("%d events on the bus", len(evs))
			}
			got := evs[0]
			if got.Bus != "oauthbroker-events" || got.Source != "oauthbroker" || got.DetailType != e.DetailType() {
				t.Errorf("bus %q, source %q, detail-type %q", got.Bus, got.Source, got.DetailType)
			}
			if got.RawDetail != e.Detail() {
				t.Errorf("detail %s, want %s", got.RawDetail, e.Detail())
			}
			want := map[string]any{"provider": e.Provider, "connection_id": e.ConnectionID, "status": e.Status, "timestamp": "2026-11-24T21:00:00Z"}
			if e.FailureClass != "" {
				want["failure_class"] = e.FailureClass
			}
			if !reflect.DeepEqual(got.Detail, want) {
				t.Errorf("parsed detail %v, want %v", got.Detail, want)
			}
			if !got.Time.Equal(when) {
				t.Errorf("event time %v, want %v", got.Time, when)
			}
		})
	}
	if got := srv.Calls(); got != len(events()) {
		t.Errorf("Calls = %d, want one PutEvents per Publish", got)
	}
}

func TestEventBridgeBusName(t *testing.T) {
	tests := []struct {
		name, bus, wantBus string
	}{
		{"name", "oauthbroker-events", "oauthbroker-events"},
		{"ARN", eventbridgetest.BusARN("oauthbroker-events"), "oauthbroker-events"},
		{"empty is the default bus", "", "default"},
		{"default", "default", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, srv := newPublisher(t, tt.bus)
			if err := pub.Publish(context.Background(), events()[0]); err != nil {
				t.Fatal(err)
			}
			if evs := srv.Events(); len(evs) != 1 || evs[0].Bus != tt.wantBus {
				t.Errorf("Events = %+v, want one on %q", evs, tt.wantBus)
			}
		})
	}
}

func TestEventBridgeZeroTime(t *testing.T) {
	pub, srv := newPublisher(t, "oauthbroker-events")
	e := events()[0]
	e.Time = time.Time{}
	if err := pub.Publish(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	got := srv.Events()[0]
	ts, err := time.Parse(time.RFC3339, got.Detail["timestamp"].(string))
	if err != nil || time.Since(ts) > time.Minute {
		t.Errorf("timestamp %v (%v)", got.Detail["timestamp"], err)
	}
	if !got.Time.Truncate(time.Second).Equal(ts) {
		t.Errorf("event time %v, detail timestamp %v: want the same instant", got.Time, ts)
	}
}

func TestEventBridgeErrors(t *testing.T) {
	tests := []struct {
		name     string
		bus      string
		setup    func(*eventbridgetest.Server)
		event    func() lifecycle.Event
		want     []string // substrings of the error; none means success
		apiError string   // the smithy.APIError code the error wraps, if any
		calls    int
		dropped  int
	}{
		{
			name:  "throttled",
			setup: func(s *eventbridgetest.Server) { s.FailNext(1, "ThrottlingException") },
			want:  []string{"oauthbroker.connection.created of acme/c1", "ThrottlingException", "Rate exceeded"}, apiError: "ThrottlingException", calls: 1,
		},
		{
			name:  "internal error",
			setup: func(s *eventbridgetest.Server) { s.FailNext(1, "InternalException") },
			want:  []string{"InternalException"}, apiError: "InternalException", calls: 1,
		},
		{
			name:  "access denied",
			setup: func(s *eventbridgetest.Server) { s.FailNext(1, "AccessDeniedException") },
			want:  []string{"AccessDeniedException", "events:PutEvents"}, apiError: "AccessDeniedException", calls: 1,
		},
		{
			name:  "partial failure",
			setup: func(s *eventbridgetest.Server) { s.FailEntries(1, "InternalFailure") },
			want:  []string{"EventBridge failed the entry: InternalFailure: The request processing has failed"}, calls: 1,
		},
		{
			name:  "entry throttled",
			setup: func(s *eventbridgetest.Server) { s.FailEntries(1, "ThrottlingException") },
			want:  []string{"EventBridge failed the entry: ThrottlingException"}, calls: 1,
		},
		{
			name: "unknown bus, as AWS does: accepted and dropped",
			bus:  "no-such-bus",
			want: nil, calls: 1, dropped: 1,
		},
		{
			name:  "unknown bus, server rejecting it",
			bus:   "no-such-bus",
			setup: func(s *eventbridgetest.Server) { s.RejectUnknownBuses(true) },
			want:  []string{"EventBridge failed the entry: ResourceNotFoundException: Event bus no-such-bus does not exist."}, calls: 1,
		},
		{
			name:  "unknown type",
			event: func() lifecycle.Event { e := events()[0]; e.Type = "refreshed"; return e },
			want:  []string{`unknown event type "refreshed"`}, calls: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := tt.bus
			if bus == "" {
				bus = "oauthbroker-events"
			}
			pub, srv := newPublisher(t, bus)
			if tt.setup != nil {
				tt.setup(srv)
			}
			e := events()[0]
			if tt.event != nil {
				e = tt.event()
			}
			err := pub.Publish(context.Background(), e)
			switch {
			case len(tt.want) == 0 && err != nil:
				t.Errorf("Publish: %v, want nil", err)
			case len(tt.want) > 0 && err == nil:
				t.Errorf("Publish: nil, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tt.apiError != "" {
				if apiErr, ok := errors.AsType[smithy.APIError](err); !ok || apiErr.ErrorCode() != tt.apiError {
					t.Errorf("error %v does not wrap API error %s", err, tt.apiError)
				}
			}
			if got := srv.Calls(); got != tt.calls {
				t.Errorf("Calls = %d, want %d", got, tt.calls)
			}
			if got := len(srv.Dropped()); got != tt.dropped {
				t.Errorf("Dropped = %d, want %d", got, tt.dropped)
			}
			if len(tt.want) > 0 && len(srv.Events()) != 0 {
				t.Errorf("a failed Publish put %d events on the bus", len(srv.Events()))
			}
		})
	}
}

func TestEventBridgeRetriesThrottling(t *testing.T) {
	srv := eventbridgetest.New(t)
	opts := srv.Options()
	opts.Retryer = retry.NewStandard(func(o *retry.StandardOptions) {
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
	})
	pub := lifecycle.NewEventBridge(eventbridge.New(opts), "")
	srv.FailNext(1, "ThrottlingException")
	if err := pub.Publish(context.Background(), events()[0]); err != nil {
		t.Fatalf("Publish: %v (the SDK retries a throttled call)", err)
	}
	if srv.Calls() != 2 || len(srv.Events()) != 1 {
		t.Errorf("Calls %d, Events %d; want 2, 1", srv.Calls(), len(srv.Events()))
	}
}

func TestEventBridgeConcurrent(t *testing.T) {
	pub, srv := newPublisher(t, "oauthbroker-events")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			e := events()[i%len(events())]
			if err := pub.Publish(context.Background(), e); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if evs := srv.Wait(t, 20, 10*time.Second); len(evs) != 20 {
		t.Errorf("%d events", len(evs))
	}
}

func TestEventBridgeNil(t *testing.T) {
	var pub *lifecycle.EventBridge
	var p lifecycle.Publisher = pub
	if err := p.Publish(context.Background(), events()[0]); err != nil {
		t.Errorf("nil *EventBridge: %v", err)
	}
}

func TestLog(t *testing.T) {
	for _, e := range events() {
		t.Run(string(e.Type), func(t *testing.T) {
			var buf bytes.Buffer
			pub := lifecycle.NewLog(slog.New(slog.NewJSONHandler(&buf, nil)))
			if err := pub.Publish(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d lines: %q", len(lines), buf.String())
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
				t.Fatal(err)
			}
			delete(rec, "time")
			want := map[string]any{
				"level": "INFO", "msg": "lifecycle event", "detail_type": e.DetailType(),
				"provider": e.Provider, "connection_id": e.ConnectionID, "status": e.Status, "timestamp": "2026-11-24T21:00:00Z",
			}
			if e.FailureClass != "" {
				want["failure_class"] = e.FailureClass
			}
			if !reflect.DeepEqual(rec, want) {
				t.Errorf("log line %v, want %v", rec, want)
			}
		})
	}

	t.Run("unknown type", func(t *testing.T) {
		var buf bytes.Buffer
		pub := lifecycle.NewLog(slog.New(slog.NewTextHandler(&buf, nil)))
		if err := pub.Publish(context.Background(), lifecycle.Event{Type: "bogus"}); err == nil || buf.Len() != 0 {
			t.Errorf("Publish: %v, logged %q", err, buf.String())
		}
	})
}

func TestDiscardAndRecorder(t *testing.T) {
	if err := lifecycle.Discard.Publish(context.Background(), events()[0]); err != nil {
		t.Errorf("Discard: %v", err)
	}

	var rec lifecycle.Recorder
	var wg sync.WaitGroup
	for _, e := range events() {
		wg.Go(func() {
			if err := rec.Publish(context.Background(), e); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := rec.Publish(context.Background(), lifecycle.Event{Type: "bogus"}); err == nil {
		t.Error("Recorder accepted an unknown type")
	}
	got := rec.Events()
	if len(got) != len(events()) {
		t.Fatalf("Recorder has %d events", len(got))
	}
	for _, e := range events() {
		if !slices.Contains(got, e) {
			t.Errorf("Recorder lacks %+v", e)
		}
	}
}
