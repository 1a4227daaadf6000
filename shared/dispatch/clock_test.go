package dispatch

import (
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/fakeclock"
	"github.com/oauthbroker/oauthbroker/shared/clock"
)

func newFakeClock() *fakeclock.Clock {
	return fakeclock.At(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// recordClock is the dispatcher's clock on c: c's record time, real deadlines.
func recordClock(c *fakeclock.Clock) clock.Clock { return clock.Clock{Record: c.Now} }
