package dispatch

import (
	"sync/atomic"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/clock"
)

// fakeClock is a record clock that moves only when a test moves it.
type fakeClock struct{ unixNano atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.unixNano.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.unixNano.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.unixNano.Add(int64(d)) }

// clock is the dispatcher's clock on c: c's record time, real deadlines.
func (c *fakeClock) clock() clock.Clock { return clock.Clock{Record: c.Now} }
