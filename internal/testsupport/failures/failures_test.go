package failures_test

import (
	"slices"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
)

func TestOf(t *testing.T) {
	tests := []struct {
		name string
		fn   func(testing.TB)
		want []string
	}{
		{"none", func(testing.TB) {}, nil},
		{"errors go on", func(tb testing.TB) {
			tb.Errorf("one %d", 1)
			tb.Errorf("two")
		}, []string{"one 1", "two"}},
		{"fatal stops", func(tb testing.TB) {
			tb.Errorf("before")
			tb.Fatalf("fatal %s", "here")
			tb.Errorf("never")
		}, []string{"before", "fatal here"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := failures.Of(t, tt.fn); !slices.Equal(got, tt.want) {
				t.Errorf("Of = %q, want %q", got, tt.want)
			}
		})
	}
}

// What fn registers with Cleanup runs when the test ends, not when fn
// returns.
func TestCleanupIsTheTests(t *testing.T) {
	ran := false
	t.Run("inner", func(t *testing.T) {
		failures.Of(t, func(tb testing.TB) { tb.Cleanup(func() { ran = true }) })
		if ran {
			t.Error("cleanup ran when fn returned")
		}
	})
	if !ran {
		t.Error("cleanup did not run when the test ended")
	}
}

// Want passes one failure naming everything asked for, and fails t on
// anything else.
func TestWant(t *testing.T) {
	for _, tt := range []struct {
		name   string
		fn     func(testing.TB)
		wants  []string
		passes bool
	}{
		{"one naming all", func(tb testing.TB) { tb.Fatalf("tool not installed: run 'make tools'") }, []string{"not installed", "make tools"}, true},
		{"one naming some", func(tb testing.TB) { tb.Fatalf("tool not installed") }, []string{"not installed", "make tools"}, false},
		{"none", func(testing.TB) {}, []string{"make tools"}, false},
		{"two", func(tb testing.TB) {
			tb.Errorf("run 'make tools'")
			tb.Errorf("run 'make tools'")
		}, []string{"make tools"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := failures.Of(t, func(tb testing.TB) { failures.Want(tb, tt.fn, tt.wants...) })
			if passed := len(got) == 0; passed != tt.passes {
				t.Errorf("Want reported %q, want passing %v", got, tt.passes)
			}
		})
	}
}
