// Package lifecycle announces changes in the life of a connection: created,
// recovered, needs_reauth, failing, deleted and abandoned.
//
// An Event names the connection and its new status, never a token: it has
// no field that could hold one. A Publisher delivers events; EventBridge
// puts them on an Amazon EventBridge bus, where the app's rules route them,
// and Log writes them to a slog.Logger for local development.
//
// On the bus an event has source "oauthbroker", detail-type
// "oauthbroker.connection.<type>" and a detail such as
//
//	{"provider":"acme","connection_id":"c1","status":"connected","timestamp":"2026-11-24T21:00:00Z"}
//
// with "failure_class" added when the event has one.
package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Source is the source of every event on the bus.
const Source = "oauthbroker"

// Type is the kind of an Event.
type Type string

// The kinds of Event.
const (
	// Created means a connect (or a reconnect) stored the connection's
	// tokens.
	Created Type = "created"
	// Recovered means a refresh succeeded after failures.
	Recovered Type = "recovered"
	// NeedsReauth means only the customer can fix the connection, by
	// connecting again.
	NeedsReauth Type = "needs_reauth"
	// Failing means refreshes keep failing for a reason the customer may
	// not control, such as the provider being down.
	Failing Type = "failing"
	// Deleted means the connection was deleted.
	Deleted Type = "deleted"
	// Abandoned means a grant that waited for the app's confirmation was
	// not confirmed in time: it was revoked at the provider (where the
	// entry can) and dropped. The connection, if there is one, is as it
	// was; the event's status is "abandoned".
	Abandoned Type = "abandoned"
)

// Types lists every Type.
var Types = []Type{Created, Recovered, NeedsReauth, Failing, Deleted, Abandoned}

// Valid reports whether t is one of the Types.
func (t Type) Valid() bool {
	switch t {
	case Created, Recovered, NeedsReauth, Failing, Deleted, Abandoned:
		return true
	}
	return false
}

// Event is a change in the life of a connection.
type Event struct {
	Type         Type
	Provider     string
	ConnectionID string
	// Status is the connection's status after the change ("connected",
	// "needs_reauth", "failing", "deleted"), or "abandoned".
	Status string
	// Time is when the change happened. Publishers use the current time if
	// it is zero.
	Time time.Time
	// FailureClass, if not empty, says why the connection is failing or
	// needs reauthorization (e.g. "invalid_grant").
	FailureClass string
}

// DetailType returns the event's EventBridge detail-type,
// "oauthbroker.connection." followed by its Type.
func (e Event) DetailType() string {
	return "oauthbroker.connection." + string(e.Type)
}

// detail is an Event's EventBridge detail.
type detail struct {
	Provider     string `json:"provider"`
	ConnectionID string `json:"connection_id"`
	Status       string `json:"status"`
	Timestamp    string `json:"timestamp"`
	FailureClass string `json:"failure_class,omitempty"`
}

// Detail returns the event's EventBridge detail, a JSON object with the
// members provider, connection_id, status, timestamp (RFC 3339, UTC) and,
// if not empty, failure_class. A zero Time is rendered as the current time.
func (e Event) Detail() string { return e.detailAt(e.timeOrNow()) }

// detailAt returns the detail with timestamp t.
func (e Event) detailAt(t time.Time) string {
	// json.Marshal of a struct of strings cannot fail.
	b, _ := json.Marshal(detail{
		Provider:     e.Provider,
		ConnectionID: e.ConnectionID,
		Status:       e.Status,
		Timestamp:    t.UTC().Format(time.RFC3339),
		FailureClass: e.FailureClass,
	})
	return string(b)
}

// timeOrNow returns e.Time, or the current time if it is zero, in UTC.
func (e Event) timeOrNow() time.Time {
	if e.Time.IsZero() {
		return time.Now().UTC()
	}
	return e.Time.UTC()
}

// check returns an error if e cannot be published.
func (e Event) check() error {
	if !e.Type.Valid() {
		return fmt.Errorf("lifecycle: unknown event type %q", e.Type)
	}
	return nil
}

// A Publisher delivers lifecycle events. Publish returns once the event is
// delivered or has failed; implementations are safe for concurrent use.
type Publisher interface {
	Publish(ctx context.Context, e Event) error
}

// Discard is a Publisher that drops every event.
var Discard Publisher = discard{}

type discard struct{}

func (discard) Publish(context.Context, Event) error { return nil }

// Log is a Publisher that writes each event as one line to a slog.Logger,
// at level Info: the event's detail-type and the members of its detail.
type Log struct {
	// Logger receives the lines; nil means slog.Default().
	Logger *slog.Logger
}

// NewLog returns a Log writing to logger (slog.Default() if nil).
func NewLog(logger *slog.Logger) *Log { return &Log{Logger: logger} }

// Publish implements Publisher.
func (l *Log) Publish(ctx context.Context, e Event) error {
	if err := e.check(); err != nil {
		return err
	}
	logger := slog.Default()
	if l != nil && l.Logger != nil {
		logger = l.Logger
	}
	attrs := []slog.Attr{
		slog.String("detail_type", e.DetailType()),
		slog.String("provider", e.Provider),
		slog.String("connection_id", e.ConnectionID),
		slog.String("status", e.Status),
		slog.String("timestamp", e.timeOrNow().Format(time.RFC3339)),
	}
	if e.FailureClass != "" {
		attrs = append(attrs, slog.String("failure_class", e.FailureClass))
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "lifecycle event", attrs...)
	return nil
}
