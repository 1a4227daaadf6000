package lifecycle

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
)

// EventBridge is a Publisher that puts each event on an Amazon EventBridge
// event bus.
type EventBridge struct {
	client *eventbridge.Client
	bus    string
}

// NewEventBridge returns an EventBridge that publishes through client onto
// the bus busName, a bus name or ARN; "" means the account's default bus.
//
// EventBridge accepts, and then drops, events for a bus that does not
// exist: Publish cannot report a wrong busName.
func NewEventBridge(client *eventbridge.Client, busName string) *EventBridge {
	return &EventBridge{client: client, bus: busName}
}

// Publish puts e on the bus with one PutEvents call, with source Source,
// e.DetailType(), e.Detail() and e.Time as the event's time. It returns an
// error if the call fails, after the client's own retries (which cover
// throttling), or if EventBridge fails the entry; the error names the
// entry's ErrorCode. A nil *EventBridge publishes nothing.
func (p *EventBridge) Publish(ctx context.Context, e Event) error {
	if p == nil {
		return nil
	}
	if err := e.check(); err != nil {
		return err
	}
	t := e.timeOrNow()
	entry := types.PutEventsRequestEntry{
		Source:     aws.String(Source),
		DetailType: aws.String(e.DetailType()),
		Detail:     aws.String(e.detailAt(t)),
		Time:       aws.Time(t),
	}
	if p.bus != "" {
		entry.EventBusName = aws.String(p.bus)
	}
	out, err := p.client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry}})
	if err != nil {
		return fmt.Errorf("lifecycle: publishing %s of %s/%s: %w", e.DetailType(), e.Provider, e.ConnectionID, err)
	}
	if out.FailedEntryCount == 0 && len(out.Entries) == 1 && out.Entries[0].ErrorCode == nil {
		return nil
	}
	code, msg := "unknown", fmt.Sprintf("FailedEntryCount %d, %d result entries", out.FailedEntryCount, len(out.Entries))
	if len(out.Entries) == 1 && out.Entries[0].ErrorCode != nil {
		code, msg = aws.ToString(out.Entries[0].ErrorCode), aws.ToString(out.Entries[0].ErrorMessage)
	}
	return fmt.Errorf("lifecycle: publishing %s of %s/%s: EventBridge failed the entry: %s: %s", e.DetailType(), e.Provider, e.ConnectionID, code, msg)
}
