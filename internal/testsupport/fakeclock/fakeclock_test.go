package fakeclock_test

import (
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/fakeclock"
)

func TestClockMovesOnlyWhenMoved(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	c := fakeclock.At(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("At: Now = %v, want %v", got, start)
	}
	time.Sleep(time.Millisecond)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("moved by itself: %v", got)
	}
	c.Add(90 * time.Minute)
	if got, want := c.Now(), start.Add(90*time.Minute); !got.Equal(want) {
		t.Fatalf("Add: Now = %v, want %v", got, want)
	}
	later := start.Add(48 * time.Hour)
	c.Set(later)
	if got := c.Now(); !got.Equal(later) {
		t.Fatalf("Set: Now = %v, want %v", got, later)
	}
	if got := new(fakeclock.Clock).Now(); !got.Equal(time.Unix(0, 0)) {
		t.Fatalf("zero Clock reads %v, want the epoch", got)
	}
}

// TestClockConcurrentAdds: no Add is lost when many goroutines move the
// clock at once (run with -race).
func TestClockConcurrentAdds(t *testing.T) {
	c := fakeclock.At(time.Unix(0, 0))
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				c.Add(time.Second)
				_ = c.Now()
			}
		}()
	}
	wg.Wait()
	if got, want := c.Now(), time.Unix(5000, 0); !got.Equal(want) {
		t.Fatalf("after 5000 adds of 1s: %v, want %v", got, want)
	}
}
