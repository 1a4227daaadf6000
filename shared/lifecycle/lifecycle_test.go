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

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
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
	want := []string{"created", "recovered", "needs_reauth", "failing", "deleted", "abandoned"}
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

// allEvents is a rule's pattern matching every lifecycle event: the
// README's pattern with every detail-type.
const allEvents = `{"source":["oauthbroker"],"detail-type":["oauthbroker.connection.created","oauthbroker.connection.recovered",` +
	`"oauthbroker.connection.needs_reauth","oauthbroker.connection.failing","oauthbroker.connection.deleted"]}`

// bus is EventBridge on moto in an account of the test's own, seen
// through a proxy that counts and fails calls, with the bus
// oauthbroker-events and a subscriber of every lifecycle event on it.
type bus struct {
	acct  *moto.Account
	proxy *moto.Proxy
	sub   *moto.Subscriber
}

const busName = "oauthbroker-events"

func newBus(t *testing.T) *bus {
	t.Helper()
	acct, proxy := moto.Shared(t).NewAccount(t).Proxied(t)
	acct.CreateBus(t, busName)
	return &bus{acct: acct, proxy: proxy, sub: acct.Subscribe(t, busName, allEvents)}
}

// publisher returns an EventBridge publisher onto busName through a client
// without retries.
func (b *bus) publisher(busName string) *lifecycle.EventBridge {
	return lifecycle.NewEventBridge(eventbridge.NewFromConfig(b.acct.Config()), busName)
}

// puts counts the PutEvents calls.
func (b *bus) puts() int { return b.proxy.Calls("PutEvents", nil) }

// wantDetail is the detail a subscriber sees for e, published at when.
func wantDetail(e lifecycle.Event) map[string]any {
	want := map[string]any{"provider": e.Provider, "connection_id": e.ConnectionID, "status": e.Status, "timestamp": "2026-11-24T21:00:00Z"}
	if e.FailureClass != "" {
		want["failure_class"] = e.FailureClass
	}
	return want
}

func TestEventBridgePublish(t *testing.T) {
	b := newBus(t)
	pub := b.publisher(busName)
	for _, e := range events() {
		t.Run(string(e.Type), func(t *testing.T) {
			if err := pub.Publish(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			got := b.sub.Receive(t, 1, 5*time.Second)[0]
			if got.Source != "oauthbroker" || got.DetailType != e.DetailType() || got.Account != b.acct.ID || got.Region != moto.Region {
				t.Errorf("source %q, detail-type %q, account %s, region %s", got.Source, got.DetailType, got.Account, got.Region)
			}
			if !reflect.DeepEqual(got.Detail, wantDetail(e)) {
				t.Errorf("detail %v, want %v", got.Detail, wantDetail(e))
			}
			if !got.Time.Equal(when) {
				t.Errorf("event time %v, want %v", got.Time, when)
			}
		})
	}
	if got := b.puts(); got != len(events()) {
		t.Errorf("%d PutEvents calls, want one per Publish", got)
	}
}

// TestReadmeRulePattern: the rule pattern the README documents, on the
// bus a function publishes to, delivers exactly the events it names.
func TestReadmeRulePattern(t *testing.T) {
	readme, err := modroot.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("A rule's pattern: `([^`]+)`").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md documents no rule pattern (\"A rule's pattern: `…`\")")
	}
	b := newBus(t)
	sub := b.acct.Subscribe(t, busName, string(m[1]))
	pub := b.publisher(busName)
	for _, e := range events() {
		if err := pub.Publish(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	got := sub.Receive(t, 1, 5*time.Second)[0]
	if got.DetailType != "oauthbroker.connection.needs_reauth" || !reflect.DeepEqual(got.Detail, wantDetail(events()[2])) {
		t.Errorf("the README's pattern delivered %s", got.Body)
	}
	b.sub.Receive(t, len(events()), 5*time.Second)
}

func TestEventBridgeBusName(t *testing.T) {
	tests := []struct {
		name string
		bus  func(*bus) string // the publisher's bus
		on   string            // the bus the event must reach
	}{
		{"name", func(*bus) string { return busName }, busName},
		{"ARN", func(b *bus) string { return b.acct.ARN("events", "event-bus/"+busName) }, busName},
		{"empty is the default bus", func(*bus) string { return "" }, "default"},
		{"default", func(*bus) string { return "default" }, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBus(t)
			def := b.acct.Subscribe(t, "default", allEvents)
			if err := b.publisher(tt.bus(b)).Publish(context.Background(), events()[0]); err != nil {
				t.Fatal(err)
			}
			want := map[string]int{busName: 0, "default": 0}
			want[tt.on] = 1
			b.sub.Receive(t, want[busName], 5*time.Second)
			def.Receive(t, want["default"], 5*time.Second)
		})
	}
}

func TestEventBridgeZeroTime(t *testing.T) {
	b := newBus(t)
	e := events()[0]
	e.Time = time.Time{}
	if err := b.publisher(busName).Publish(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	got := b.sub.Receive(t, 1, 5*time.Second)[0]
	ts, err := time.Parse(time.RFC3339, got.Detail["timestamp"].(string))
	if err != nil || time.Since(ts) > time.Minute {
		t.Errorf("timestamp %v (%v)", got.Detail["timestamp"], err)
	}
	if !got.Time.Equal(ts) {
		t.Errorf("event time %v, detail timestamp %v: want the same instant", got.Time, ts)
	}
}

// failedEntry is a PutEvents answer whose one entry failed with code.
func failedEntry(code, message string) moto.Fault {
	return moto.Fault{Status: 200, Body: `{"FailedEntryCount":1,"Entries":[{"ErrorCode":"` + code + `","ErrorMessage":"` + message + `"}]}`}
}

func TestEventBridgeErrors(t *testing.T) {
	tests := []struct {
		name     string
		bus      string
		fault    *moto.Fault // the answer to the first PutEvents, instead of moto's
		event    func() lifecycle.Event
		want     []string // substrings of the error; none means success
		apiError string   // the smithy.APIError code the error wraps, if any
		calls    int
	}{
		{
			name:  "throttled",
			fault: new(moto.AWSError(400, "ThrottlingException", "Rate exceeded")),
			want:  []string{"oauthbroker.connection.created of acme/c1", "ThrottlingException", "Rate exceeded"}, apiError: "ThrottlingException", calls: 1,
		},
		{
			name:  "internal error",
			fault: new(moto.AWSError(500, "InternalException", "An internal error occurred.")),
			want:  []string{"InternalException"}, apiError: "InternalException", calls: 1,
		},
		{
			name: "access denied",
			fault: new(moto.AWSError(400, "AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/test/test is not authorized to perform: "+
				"events:PutEvents on resource: arn:aws:events:us-east-1:123456789012:event-bus/default")),
			want: []string{"AccessDeniedException", "events:PutEvents"}, apiError: "AccessDeniedException", calls: 1,
		},
		{
			name:  "partial failure",
			fault: new(failedEntry("InternalFailure", "The request processing has failed because of an unknown error, exception or failure.")),
			want:  []string{"EventBridge failed the entry: InternalFailure: The request processing has failed"}, calls: 1,
		},
		{
			name:  "entry throttled",
			fault: new(failedEntry("ThrottlingException", "Rate exceeded")),
			want:  []string{"EventBridge failed the entry: ThrottlingException"}, calls: 1,
		},
		{
			// AWS accepts an entry for a bus that does not exist and drops
			// it (see NewEventBridge); moto refuses the call, which makes
			// a misnamed bus visible in tests.
			name: "unknown bus",
			bus:  "no-such-bus",
			want: []string{"ResourceNotFoundException", "Event bus no-such-bus does not exist."}, apiError: "ResourceNotFoundException", calls: 1,
		},
		{
			name:  "unknown type",
			event: func() lifecycle.Event { e := events()[0]; e.Type = "refreshed"; return e },
			want:  []string{`unknown event type "refreshed"`}, calls: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBus(t)
			if tt.fault != nil {
				b.proxy.Inject("PutEvents", nil, 1, *tt.fault)
			}
			target := tt.bus
			if target == "" {
				target = busName
			}
			e := events()[0]
			if tt.event != nil {
				e = tt.event()
			}
			err := b.publisher(target).Publish(context.Background(), e)
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
			if got := b.puts(); got != tt.calls {
				t.Errorf("%d PutEvents calls, want %d", got, tt.calls)
			}
			b.sub.Receive(t, 0, 0) // a failed Publish puts nothing on the bus
		})
	}
}

// TestEventBridgeHangs: a Publish to an EventBridge that does not answer
// ends with the caller's context (the broker gives each event 2 s).
func TestEventBridgeHangs(t *testing.T) {
	b := newBus(t)
	b.proxy.Inject("PutEvents", nil, 1, moto.Hang)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.publisher(busName).Publish(ctx, events()[0])
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "oauthbroker.connection.created of acme/c1") {
		t.Errorf("Publish: %v, want the deadline, naming the event", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Publish returned after %v", d)
	}
}

func TestEventBridgeRetriesThrottling(t *testing.T) {
	b := newBus(t)
	client := eventbridge.NewFromConfig(b.acct.Config(), func(o *eventbridge.Options) {
		o.Retryer = retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})
	})
	b.proxy.Inject("PutEvents", nil, 1, moto.AWSError(400, "ThrottlingException", "Rate exceeded"))
	if err := lifecycle.NewEventBridge(client, busName).Publish(context.Background(), events()[0]); err != nil {
		t.Fatalf("Publish: %v (the SDK retries a throttled call)", err)
	}
	if b.puts() != 2 {
		t.Errorf("%d PutEvents calls, want 2", b.puts())
	}
	b.sub.Receive(t, 1, 5*time.Second)
}

func TestEventBridgeConcurrent(t *testing.T) {
	b := newBus(t)
	pub := b.publisher(busName)
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
	b.sub.Receive(t, 20, 10*time.Second)
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

func TestDiscard(t *testing.T) {
	if err := lifecycle.Discard.Publish(context.Background(), events()[0]); err != nil {
		t.Errorf("Discard: %v", err)
	}
}
