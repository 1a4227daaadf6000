package moto

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// CreateBus creates the event bus name and returns its ARN. Every account
// has the bus "default" already.
func (a *Account) CreateBus(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := eventbridge.NewFromConfig(a.Config()).CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: &name})
	if err != nil {
		t.Fatalf("moto: create bus %s: %v", name, err)
	}
	return aws.ToString(out.EventBusArn)
}

// Subscriber is an SQS queue that an EventBridge rule delivers the events
// matching its pattern to: what an app subscribing to the bus sees.
type Subscriber struct {
	sqs      *sqs.Client
	queueURL string
}

// Subscribe creates an SQS queue and, on bus (a name or ARN), a rule with
// the event pattern whose target is the queue.
func (a *Account) Subscribe(t testing.TB, bus, pattern string) *Subscriber {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cfg := a.Config()
	name := "subscriber-" + rand.Text()
	s := &Subscriber{sqs: sqs.NewFromConfig(cfg)}
	q, err := s.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name})
	if err != nil {
		t.Fatalf("moto: create queue: %v", err)
	}
	s.queueURL = aws.ToString(q.QueueUrl)
	eb := eventbridge.NewFromConfig(cfg)
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: &name, EventBusName: &bus, EventPattern: &pattern}); err != nil {
		t.Fatalf("moto: put rule with pattern %s on %s: %v", pattern, bus, err)
	}
	// The target delivers the whole event, as a target without an input
	// transformer does on AWS. Moto renders the event without a
	// transformer by parsing eight JSON paths per delivery (~130 ms here)
	// and leaves out the event's "account"; a template of the whole event
	// takes one path (~20 ms) and keeps every member.
	target := ebtypes.Target{Id: aws.String("queue"), Arn: aws.String(a.ARN("sqs", name)), InputTransformer: &ebtypes.InputTransformer{
		InputPathsMap: map[string]string{"source": "$.source"}, // unused; an empty map means moto's eight
		InputTemplate: aws.String("<aws.events.event.json>"),
	}}
	out, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: &name, EventBusName: &bus, Targets: []ebtypes.Target{target}})
	if err != nil || out.FailedEntryCount != 0 {
		t.Fatalf("moto: put target of rule %s: %v %+v", name, err, out)
	}
	return s
}

// Event is an EventBridge event as a subscriber receives it.
type Event struct {
	ID         string         `json:"id"`
	DetailType string         `json:"detail-type"`
	Source     string         `json:"source"`
	Account    string         `json:"account"`
	Time       time.Time      `json:"time"`
	Region     string         `json:"region"`
	Resources  []string       `json:"resources"`
	Detail     map[string]any `json:"detail"`
	// Body is the message as delivered, for checks on everything it holds.
	Body string `json:"-"`
}

// Receive returns the next n events delivered to the subscriber, in the
// order delivered, and deletes them from its queue. It fails the test if
// fewer arrive within timeout, or if more than n are waiting: moto delivers
// an event to its rules' targets before PutEvents answers, so an event
// published before Receive is already waiting. Like t.Fatal, it must be
// called from the test's goroutine.
func (s *Subscriber) Receive(t testing.TB, n int, timeout time.Duration) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout+30*time.Second)
	defer cancel()
	var got []Event
	deadline := time.Now().Add(timeout)
	for len(got) < n {
		batch := s.receive(t, ctx, min(n-len(got), 10))
		got = append(got, batch...)
		if len(batch) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("moto: %d event(s) after %v, want %d: %s", len(got), timeout, n, summary(got))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if extra := s.receive(t, ctx, 10); len(extra) > 0 {
		t.Errorf("moto: %d event(s) more than the %d expected: %s, then %s", len(extra), n, summary(got), summary(extra))
		got = append(got, extra...)
	}
	return got
}

// receive takes up to max waiting messages off the queue.
func (s *Subscriber) receive(t testing.TB, ctx context.Context, max int) []Event {
	t.Helper()
	out, err := s.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &s.queueURL, MaxNumberOfMessages: int32(max)})
	if err != nil {
		t.Fatalf("moto: receive from %s: %v", s.queueURL, err)
	}
	if len(out.Messages) == 0 {
		return nil
	}
	events := make([]Event, len(out.Messages))
	done := make([]sqstypes.DeleteMessageBatchRequestEntry, len(out.Messages))
	for i, m := range out.Messages {
		body := aws.ToString(m.Body)
		if err := json.Unmarshal([]byte(body), &events[i]); err != nil {
			t.Fatalf("moto: a delivered message is not an event: %v: %s", err, body)
		}
		events[i].Body = body
		done[i] = sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle}
	}
	if _, err := s.sqs.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &s.queueURL, Entries: done}); err != nil {
		t.Fatalf("moto: delete received messages: %v", err)
	}
	return events
}

// summary names each event by detail-type and detail, for a failure
// message.
func summary(events []Event) string {
	s := "["
	for i, e := range events {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %v", e.DetailType, e.Detail)
	}
	return s + "]"
}
