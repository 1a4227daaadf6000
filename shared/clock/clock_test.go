package clock

import (
	"context"
	"testing"
	"time"
)

// TestRecordClock: Now is the record clock when one is set, time.Now
// otherwise; measurement stays real either way.
func TestRecordClock(t *testing.T) {
	fixed := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	c := Clock{Record: func() time.Time { return fixed }}
	if !c.Now().Equal(fixed) {
		t.Errorf("Now = %v, want the record clock's %v", c.Now(), fixed)
	}
	if d := time.Since(Clock{}.Now()); d < 0 || d > time.Minute {
		t.Errorf("the zero Clock's Now is %v from time.Now", d)
	}
	start := c.Start()
	if d := c.Since(start); d < 0 || d > time.Minute {
		t.Errorf("Since(Start()) = %v with a faked record clock: measurement must stay real", d)
	}
}

// TestFits: whether a call of length need, after wait, ends before ctx's
// deadline (real time).
func TestFits(t *testing.T) {
	tests := []struct {
		name       string
		deadline   time.Duration // 0: none
		wait, need time.Duration
		want       bool
	}{
		{name: "no deadline", wait: time.Hour, need: time.Hour, want: true},
		{name: "fits", deadline: time.Minute, need: 10 * time.Second, want: true},
		{name: "call too long", deadline: 5 * time.Second, need: 10 * time.Second, want: false},
		{name: "wait plus call too long", deadline: 15 * time.Second, wait: 10 * time.Second, need: 10 * time.Second, want: false},
		{name: "wait plus call fit", deadline: time.Minute, wait: 10 * time.Second, need: 10 * time.Second, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			c := Clock{Record: func() time.Time { return time.Time{} }} // a record clock far off moves nothing
			if got := c.Fits(ctx, tt.wait, tt.need); got != tt.want {
				t.Errorf("Fits = %v, want %v", got, tt.want)
			}
			left, ok := c.Left(ctx)
			if ok != (tt.deadline > 0) || ok && (left <= 0 || left > tt.deadline) {
				t.Errorf("Left = %v %v, want (0, %v]", left, ok, tt.deadline)
			}
		})
	}
}
