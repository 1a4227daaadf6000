package store

import (
	"maps"
	"slices"
	"time"
)

// The form in which every Store returns records, one definition for the
// stores that build it (store/embedded) and the conformance suite that
// expects it (internal/testsupport/storetest); store/dynamo gets there by
// keeping whole seconds.

// Stored returns r as a Store returns it: times in the form of StoredTime,
// nil for an empty slice or map, and slices and maps of its own.
func (r StateRecord) Stored() StateRecord {
	r.Scopes = nilIfEmpty(slices.Clone(r.Scopes))
	r.Params = nilIfEmpty(maps.Clone(r.Params))
	r.ExpiresAt = StoredTime(r.ExpiresAt)
	return r
}

// Stored returns c as a Store returns it: times in the form of StoredTime,
// nil for an empty map, and maps of its own.
func (c Connection) Stored() Connection {
	c.Metadata = nilIfEmpty(maps.Clone(c.Metadata))
	c.Params = nilIfEmpty(maps.Clone(c.Params))
	for _, t := range []*time.Time{&c.ExpiresAt, &c.NextRefresh, &c.CreatedAt, &c.UpdatedAt, &c.Lease.Until} {
		*t = StoredTime(*t)
	}
	return c
}

// StoredTime is t truncated to the second in UTC; the zero time, and the
// Unix epoch (DynamoDB's 0), give the zero time.
func StoredTime(t time.Time) time.Time {
	if t.IsZero() || t.Unix() == 0 {
		return time.Time{}
	}
	return time.Unix(t.Unix(), 0).UTC()
}

func nilIfEmpty[T ~[]string | ~map[string]string](v T) T {
	if len(v) == 0 {
		return nil
	}
	return v
}
