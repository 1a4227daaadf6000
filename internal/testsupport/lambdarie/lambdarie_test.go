package lambdarie

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
)

const helloPkg = "./internal/testsupport/lambdarie/testdata/hello"

type helloReply struct {
	Event        json.RawMessage `json:"event"`
	Greeting     string          `json:"greeting"`
	FunctionName string          `json:"function_name"`
	Region       string          `json:"region"`
	Profile      string          `json:"profile"`
	HasDeadline  bool            `json:"has_deadline"`
	Pad          string          `json:"pad"`
}

func TestBuildCachesPerPackage(t *testing.T) {
	a := Build(t, helloPkg)
	c := Build(t, "./internal/testsupport/lambdarie/testdata/hello/")
	if a != c {
		t.Fatalf("same package built twice: %s and %s", a, c)
	}
	if filepath.Base(a) != "bootstrap" || !filepath.IsAbs(a) {
		t.Fatalf("Build returned %s, want an absolute path to a file named bootstrap", a)
	}
	head := make([]byte, 4)
	fh, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.Read(head); err != nil || string(head) != "\x7fELF" {
		t.Fatalf("bootstrap is not an ELF binary: %q %v", head, err)
	}
}

func TestBuildFailureShowsCompilerOutput(t *testing.T) {
	for range 2 { // the second call gets the cached failure
		msg := strings.Join(failures.Of(t, func(tb testing.TB) {
			Build(tb, "./internal/testsupport/lambdarie/testdata/broken")
			tb.Errorf("Build returned")
		}), "\n")
		if !strings.Contains(msg, "cannot use \"not a number\"") || !strings.Contains(msg, "main.go:6") {
			t.Fatalf("Build failure message lacks the compiler output:\n%s", msg)
		}
	}
}

func TestTwoFunctionsAtOnce(t *testing.T) {
	t.Setenv("AWS_PROFILE", "developer-profile-must-not-leak")
	bin := Build(t, helloPkg)
	one := Start(t, bin, map[string]string{"HELLO_GREETING": "hello from one"})
	two := Start(t, bin, map[string]string{"HELLO_GREETING": "hello from two", "AWS_LAMBDA_FUNCTION_NAME": "second"})
	if one.URL() == two.URL() {
		t.Fatalf("both functions on %s", one.URL())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	replies := make([]helloReply, 2)
	errs := make([]error, 2)
	for i, fn := range []*Function{one, two} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn.InvokeJSON(ctx, map[string]any{"n": i, "s": "ü"}, &replies[i])
		}()
	}
	wg.Wait()
	for i, want := range []struct{ greeting, name string }{{"hello from one", "hello"}, {"hello from two", "second"}} {
		if errs[i] != nil {
			t.Fatalf("function %d: %v", i, errs[i])
		}
		r := replies[i]
		if r.Greeting != want.greeting || r.FunctionName != want.name {
			t.Errorf("function %d: greeting %q name %q, want %q %q", i, r.Greeting, r.FunctionName, want.greeting, want.name)
		}
		if string(r.Event) != fmt.Sprintf(`{"n":%d,"s":"ü"}`, i) {
			t.Errorf("function %d: event echoed as %s", i, r.Event)
		}
		if r.Region != "us-east-1" || !r.HasDeadline {
			t.Errorf("function %d: region %q deadline %v", i, r.Region, r.HasDeadline)
		}
		if r.Profile != "" {
			t.Errorf("function %d: developer's AWS_PROFILE leaked in: %q", i, r.Profile)
		}
	}

	// Raw Invoke returns the payload as the function wrote it.
	raw, err := one.Invoke(ctx, []byte(`"just a string"`))
	if err != nil || !strings.HasPrefix(string(raw), `{"event":"just a string","greeting":"hello from one"`) {
		t.Fatalf("Invoke = %s, %v", raw, err)
	}
	if logs := one.Logs(); !strings.Contains(logs, "START RequestId") || !strings.Contains(logs, "INIT REPORT") {
		t.Errorf("logs lack the emulator's lines:\n%s", logs)
	}
}

func TestHandlerErrorIsAnError(t *testing.T) {
	fn := Start(t, Build(t, helloPkg), nil)
	ctx := context.Background()

	payload, err := fn.Invoke(ctx, []byte(`{"fail":"boom"}`))
	var fe *FunctionError
	if !errors.As(err, &fe) {
		t.Fatalf("handler error: got %v (payload %s), want *FunctionError", err, payload)
	}
	if fe.Type != "errorString" || fe.Message != "boom" || fe.Status != 200 {
		t.Fatalf("FunctionError = %+v", fe)
	}
	if !strings.Contains(string(payload), `"errorMessage":"boom"`) {
		t.Errorf("payload %s", payload)
	}
	// InvokeJSON surfaces it too, and a bad event is a function error.
	if err := fn.InvokeJSON(ctx, map[string]string{"fail": "again"}, nil); !errors.As(err, &fe) || fe.Message != "again" {
		t.Fatalf("InvokeJSON error: %v", err)
	}
	if _, err := fn.Invoke(ctx, []byte(`not json`)); !errors.As(err, &fe) || fe.Type != "SyntaxError" {
		t.Fatalf("bad event: %v", err)
	}
	// The function still works, and its own log line is captured.
	var r helloReply
	if err := fn.InvokeJSON(ctx, map[string]int{"ok": 1}, &r); err != nil || string(r.Event) != `{"ok":1}` {
		t.Fatalf("after errors: %+v %v", r, err)
	}
	if !strings.Contains(fn.Logs(), `{"errorMessage":"boom","errorType":"errorString"}`) {
		t.Errorf("function log not captured:\n%s", fn.Logs())
	}
}

func TestLargeReplyAndSerialisedInvokes(t *testing.T) {
	fn := Start(t, Build(t, helloPkg), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var r helloReply
	if err := fn.InvokeJSON(ctx, map[string]int{"pad": 1 << 20}, &r); err != nil || len(r.Pad) != 1<<20 {
		t.Fatalf("1 MiB reply: %d bytes, %v", len(r.Pad), err)
	}
	// Concurrent callers on one Function must not crash the emulator.
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r helloReply
			if err := fn.InvokeJSON(ctx, map[string]int{"i": i, "sleep_ms": 20}, &r); err != nil {
				errs <- err
			} else if string(r.Event) != fmt.Sprintf(`{"i":%d,"sleep_ms":20}`, i) {
				errs <- fmt.Errorf("reply for %d: %s", i, r.Event)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestTimeoutAndCancellation(t *testing.T) {
	fn := Start(t, Build(t, helloPkg), map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"})
	ctx := context.Background()

	// stall: the function ignores its deadline, so the emulator's timeout
	// is what ends it (a function that honours its context may return
	// its own deadline error first).
	_, err := fn.Invoke(ctx, []byte(`{"stall_ms":3000}`))
	var fe *FunctionError
	if !errors.As(err, &fe) || fe.Type != "Sandbox.Timedout" {
		t.Fatalf("timeout: got %v", err)
	}
	// The emulator starts a fresh runtime for the next invoke.
	if _, err := fn.Invoke(ctx, []byte(`{}`)); err != nil {
		t.Fatalf("after timeout: %v", err)
	}

	// A caller that gives up returns at once; the next invoke waits for the
	// emulator instead of crashing it with a second invoke.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := fn.Invoke(short, []byte(`{"sleep_ms":600}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled invoke: %v", err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("cancelled invoke took %v", d)
	}
	var r helloReply
	if err := fn.InvokeJSON(ctx, map[string]string{"after": "cancel"}, &r); err != nil || string(r.Event) != `{"after":"cancel"}` {
		t.Fatalf("invoke after a cancelled one: %+v %v\n%s", r, err, fn.Logs())
	}
	if strings.Contains(fn.Logs(), "panic:") {
		t.Fatalf("emulator panicked:\n%s", fn.Logs())
	}
}

func TestStartRejectsBadTimeout(t *testing.T) {
	bin := Build(t, helloPkg)
	msg := strings.Join(failures.Of(t, func(tb testing.TB) {
		Start(tb, bin, map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "2.5"})
	}), "\n")
	if !strings.Contains(msg, "AWS_LAMBDA_FUNCTION_TIMEOUT") {
		t.Fatalf("got %q", msg)
	}
}

func TestNothingLeftAfterCleanup(t *testing.T) {
	bin := Build(t, helloPkg)
	var procs []proc
	var riePID int
	t.Run("run", func(t *testing.T) {
		fn := Start(t, bin, nil)
		if _, err := fn.Invoke(context.Background(), nil); err != nil { // starts the runtime
			t.Fatal(err)
		}
		riePID = fn.cmd.Process.Pid
		procs = descendants(riePID)
		sawRuntime := false
		for _, p := range procs {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid)); exe == bin {
				sawRuntime = true
			}
		}
		if !sawRuntime {
			t.Fatalf("runtime process of %s not found among %+v", bin, procs)
		}
		if _, _, _, start, ok := stat(riePID); ok {
			procs = append(procs, proc{pid: riePID, start: start})
		}
	})
	if len(procs) < 2 {
		t.Fatalf("recorded processes: %+v", procs)
	}
	for _, p := range procs {
		if p.alive() {
			t.Errorf("process %d still runs after cleanup", p.pid)
		}
	}
}

func TestStartedAndRuntimePID(t *testing.T) {
	before := time.Now()
	fn := Start(t, Build(t, helloPkg), nil)
	if s := fn.Started(); s.Before(before) || s.After(time.Now()) {
		t.Fatalf("Started() = %v, want between %v and now", s, before)
	}
	if pid := fn.RuntimePID(); pid != 0 {
		t.Fatalf("RuntimePID() = %d before the first invoke, want 0", pid)
	}
	if _, err := fn.Invoke(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	pid := fn.RuntimePID()
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); pid == 0 || exe != fn.bootstrap {
		t.Fatalf("RuntimePID() = %d (%s), want the process of %s", pid, exe, fn.bootstrap)
	}
	fn.Stop()
	if pid := fn.RuntimePID(); pid != 0 {
		t.Fatalf("RuntimePID() = %d after Stop, want 0", pid)
	}
}
