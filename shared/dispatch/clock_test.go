package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/fakeclock"
	"github.com/oauthbroker/oauthbroker/shared/clock"
)

func newFakeClock() *fakeclock.Clock {
	return fakeclock.At(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// recordClock is the dispatcher's clock on c: c's record time, real deadlines.
func recordClock(c *fakeclock.Clock) clock.Clock { return clock.Clock{Record: c.Now} }

// caseContext is a test case's context: it times out after deadline when
// deadline is positive, is cancelled from the start when cancelled is set,
// and is cancelled when the test ends.
func caseContext(t *testing.T, deadline time.Duration, cancelled bool) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	if deadline > 0 {
		ctx, cancel = context.WithTimeout(t.Context(), deadline)
	}
	t.Cleanup(cancel)
	if cancelled {
		cancel()
	}
	return ctx
}
