// Package schedule is the refresh function's adapter: the EventBridge
// Scheduler event in (events/refresh.json, the template's schedule
// input), the broker's sweep summary out. Anything but the refresh event
// is refused before the store is read, so a misconfigured schedule or a
// stray invocation fails loudly instead of sweeping.
package schedule

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/oauthbroker/oauthbroker/shared/broker"
)

// ActionRefreshDue is the schedule event's action: renew what is due.
const ActionRefreshDue = "refresh-due"

// Event is the schedule's input.
type Event struct {
	Source string `json:"source"`
	Action string `json:"action"`
}

// errNotSchedule refuses an invocation that is not the schedule's event.
var errNotSchedule = errors.New(`refresh: want the schedule event {"action":"refresh-due"}`)

// Handler is the refresh function's Lambda handler: one sweep
// (broker.Sweep) per schedule event.
func Handler(b *broker.Broker) func(context.Context, json.RawMessage) (broker.RefreshSummary, error) {
	return func(ctx context.Context, raw json.RawMessage) (broker.RefreshSummary, error) {
		var ev Event
		if err := json.Unmarshal(raw, &ev); err != nil || ev.Action != ActionRefreshDue {
			return broker.RefreshSummary{}, errNotSchedule
		}
		return b.Sweep(ctx)
	}
}
