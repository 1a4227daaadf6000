// Package fakeclock is a clock for tests that moves only when the test
// moves it. It imports nothing of the repository's, so any package's
// internal tests may use it.
package fakeclock

import (
	"sync/atomic"
	"time"
)

// Clock is a settable clock, safe for concurrent use. The zero value reads
// the Unix epoch.
type Clock struct{ unixNano atomic.Int64 }

// At returns a clock that reads t.
func At(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.unixNano.Load()) }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.unixNano.Store(t.UnixNano()) }

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) { c.unixNano.Add(int64(d)) }
