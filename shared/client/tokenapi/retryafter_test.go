package tokenapi

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// now is a whole second, as an HTTP-date is; nowFrac is not, as a
// machine's clock is not.
var (
	now     = time.Date(2026, 11, 24, 20, 0, 0, 0, time.UTC)
	nowFrac = now.Add(300 * time.Millisecond)
)

func TestParseRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		now  time.Time
		want time.Duration
	}{
		{"empty", "", now, 0},
		{"blank", "  ", now, 0},
		{"one second", "1", now, time.Second},
		{"spaces around", " 120 ", now, 2 * time.Minute},
		{"zero", "0", now, 0},
		{"leading zeros", "007", now, 7 * time.Second},
		{"negative", "-5", now, 0},
		{"plus sign", "+5", now, 0}, // not 1*DIGIT
		{"fraction", "1.5", now, 0},
		{"word", "soon", now, 0},
		{"digits then text", "5s", now, 0},
		{"a day exactly", "86400", now, MaxRetryAfter},
		{"two days", "172800", now, MaxRetryAfter},
		{"beyond uint64", "99999999999999999999999", now, MaxRetryAfter},
		{"date in 30 s", now.Add(30 * time.Second).Format(http.TimeFormat), now, 30 * time.Second},
		{"date, clock between seconds", now.Add(30 * time.Second).Format(http.TimeFormat), nowFrac, 30 * time.Second}, // 29.7 s, rounded up
		{"date now", now.Format(http.TimeFormat), now, 0},
		{"date past", now.Add(-time.Hour).Format(http.TimeFormat), now, 0},
		{"date in two days", now.Add(48 * time.Hour).Format(http.TimeFormat), now, MaxRetryAfter},
		{"date far future", "Fri, 31 Dec 9999 23:59:59 GMT", now, MaxRetryAfter},
		{"RFC 850 date", now.Add(time.Minute).Format(time.RFC850), now, time.Minute},
		{"asctime date", now.Add(time.Minute).Format(time.ANSIC), now, time.Minute},
		{"date not GMT", now.Add(time.Minute).Format(time.RFC1123Z), now, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseRetryAfter(tt.in, tt.now); got != tt.want {
				t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParseRetryAfter: whatever a provider or a gateway sends, the wait is
// whole seconds between 0 and MaxRetryAfter, delay-seconds read as their
// number, and surrounding spaces change nothing.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", " 7 ", "-1", "+1", "1.5", "99999999999999999999",
		now.Add(time.Minute).Format(http.TimeFormat), now.Add(time.Minute).Format(time.RFC850), "Fri, 31 Dec 9999 23:59:59 GMT"} {
		f.Add(s, int64(0))
	}
	f.Fuzz(func(t *testing.T, v string, nowNanos int64) {
		at := now.Add(time.Duration(nowNanos))
		got := ParseRetryAfter(v, at)
		if got < 0 || got > MaxRetryAfter || got%time.Second != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v: not whole seconds in [0, %v]", v, got, MaxRetryAfter)
		}
		if padded := ParseRetryAfter(" \t"+v+" ", at); padded != got {
			t.Fatalf("padding changed %q: %v, then %v", v, got, padded)
		}
		trimmed := strings.TrimSpace(v)
		if n, err := strconv.ParseUint(trimmed, 10, 64); err == nil && isDigits(trimmed) {
			if want := time.Duration(min(n, uint64(MaxRetryAfter/time.Second))) * time.Second; got != want {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %v", v, got, want)
			}
		}
		if d, err := http.ParseTime(trimmed); err == nil && !isDigits(trimmed) {
			if wait := d.Sub(at); wait > 0 && wait < MaxRetryAfter && (got < wait || got-wait >= time.Second) {
				t.Fatalf("ParseRetryAfter(%q) at %v = %v, want %v rounded up", v, at, got, wait)
			}
		}
	})
}

func TestFormatRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "1"},
		{-time.Second, "1"},
		{time.Millisecond, "1"},
		{time.Second, "1"},
		{1200 * time.Millisecond, "2"},
		{57 * time.Second, "57"},
		{time.Hour, "3600"},
	} {
		if got := FormatRetryAfter(tt.d); got != tt.want {
			t.Errorf("FormatRetryAfter(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// What the token route writes, its client reads back as the same wait, in
// whole seconds rounded up.
func TestRetryAfterRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, time.Second, 1500 * time.Millisecond, 57 * time.Second, time.Hour} {
		want := max(time.Second, (d + time.Second - 1).Truncate(time.Second))
		if got := ParseRetryAfter(FormatRetryAfter(d), now); got != want {
			t.Errorf("wait %v: written %q, read back %v, want %v", d, FormatRetryAfter(d), got, want)
		}
	}
}
