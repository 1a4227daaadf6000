package logcheck

import (
	"crypto/rand"
	"fmt"
	"log"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// plant returns a fresh value that looks like a token.
func plant(prefix string) string { return prefix + rand.Text() }

func TestFindsEveryEscaping(t *testing.T) {
	v := plant(`tok/+ "<&>é`)
	Register(v)
	var text, json strings.Builder
	slog.New(slog.NewTextHandler(&text, nil)).Info("x", "token", v)
	slog.New(slog.NewJSONHandler(&json, nil)).Info("x", "token", v)
	for _, tt := range []struct{ name, text string }{
		{"as is", "msg=" + v},
		{"query", "url=https://x.test/cb?code=" + url.QueryEscape(v) + "&state=1"},
		{"path", "path=/cb/" + url.PathEscape(v)},
		{"slog text", text.String()},
		{"slog JSON", json.String()},
		{"fmt %q", fmt.Sprintf("token %q", v)},
	} {
		hits := find([]fed{{"text", "line one\n" + tt.text + "\n"}})
		if len(hits) != 1 || hits[0].line != 2 || hits[0].source != "text" {
			t.Errorf("%s: %d hits %+v", tt.name, len(hits), hits)
		}
	}
}

func TestIgnoresShortValues(t *testing.T) {
	Register("short77", "")
	if hits := find([]fed{{"text", "a short77 b"}}); len(hits) != 0 {
		t.Errorf("a value under %d bytes was registered", MinLen)
	}
	v := plant("eight...")
	Register(v[:MinLen])
	if hits := find([]fed{{"text", "x" + v[:MinLen] + "x"}}); len(hits) != 1 {
		t.Errorf("a value of %d bytes was not registered", MinLen)
	}
}

func TestRegisterConcurrently(t *testing.T) {
	var wg sync.WaitGroup
	vals := make([]string, 64)
	for i := range vals {
		vals[i] = plant("conc-")
		wg.Go(func() { Register(vals[i]) })
	}
	for range 4 {
		wg.Go(func() { _ = redact([]byte(strings.Join(vals, " "))) })
	}
	wg.Wait()
	if hits := find([]fed{{"text", strings.Join(vals, "\n")}}); len(hits) != len(vals) {
		t.Errorf("%d hits, want %d", len(hits), len(vals))
	}
}

func TestRedactHidesValue(t *testing.T) {
	v := plant("redact-")
	Register(v)
	got := string(redact([]byte("a " + v + " b " + url.QueryEscape(v+"/") + "\n")))
	if strings.Contains(got, v) || !strings.Contains(got, "[S22 redacted \"reda\"… ") {
		t.Errorf("redact: %q", got)
	}
}

// The helper process: a test binary under Main that leaks (or does not),
// selected by $LOGCHECK_HELPER, with the value in $LOGCHECK_VALUE.
func TestLogcheckHelperProcess(t *testing.T) {
	mode, v := os.Getenv("LOGCHECK_HELPER"), os.Getenv("LOGCHECK_VALUE")
	if mode == "" {
		t.Skip("helper process for TestS22_PlantedLeakFailsTheRun")
	}
	Register(v)
	switch mode {
	case "slog":
		slog.New(slog.NewTextHandler(os.Stderr, nil)).Info("token refreshed", "access_token", v)
	case "slog-json":
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Info("token refreshed", "access_token", v)
	case "log":
		log.Printf("refresh token %s", v)
	case "fd":
		syscall.Write(2, []byte("direct "+v+"\n"))
	case "child":
		cmd := exec.Command("/bin/sh", "-c", `printf 'child says %s\n' "$LOGCHECK_VALUE"`)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
	case "tlog":
		t.Logf("token %s", v)
	case "fed":
		Feed("Lambda function callback in TestFlow",
			`{"level":"INFO","msg":"redirect","location":"https://app.test/cb?code=`+url.QueryEscape(v)+`"}`+"\n")
	case "panic": // the process dies: no check, but all output still shown
		slog.Info("token refreshed", "access_token", v)
		t.Log("just before the panic")
		var m map[string]int
		m["x"]++
	case "clean":
		slog.Info("connected", "provider", "acme", "token_len", len(v))
	case "short": // too short to be registered: printed as is
		slog.Info("connected", "id", v)
	}
}

func TestS22_PlantedLeakFailsTheRun(t *testing.T) {
	if os.Getenv("LOGCHECK_HELPER") != "" {
		t.Skip("in the helper process")
	}
	for _, tt := range []struct {
		mode, value string
		args        []string
		split       bool // stdout and stderr apart, not one pipe as under go test
		wantFail    bool
		wantSource  string
	}{
		{mode: "slog", value: plant("leak-slog-"), split: true, wantFail: true, wantSource: "stderr of the test process"},
		{mode: "slog-json", value: plant(`leak"json<&>`), wantFail: true, wantSource: "stdout/stderr of the test process"},
		{mode: "log", value: plant("leak-log-"), wantFail: true, wantSource: "stdout/stderr of the test process"},
		{mode: "fd", value: plant("leak-fd-"), split: true, wantFail: true, wantSource: "stderr of the test process"},
		{mode: "child", value: plant("leak-child-"), wantFail: true, wantSource: "stdout/stderr of the test process"},
		{mode: "tlog", value: plant("leak-tlog-"), args: []string{"-test.v"}, split: true, wantFail: true, wantSource: "stdout of the test process"},
		{mode: "fed", value: plant("leak/fed+"), wantFail: true, wantSource: "Lambda function callback in TestFlow"},
		{mode: "panic", value: plant("leak-panic-"), wantFail: true},
		{mode: "clean", value: plant("clean-")},
		{mode: "short", value: "short77"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			if tt.mode == "child" {
				if _, err := os.Stat("/bin/sh"); err != nil {
					t.Skip("no /bin/sh")
				}
			}
			Register(tt.value) // this process must not print it either
			cmd := HelperCommand("TestLogcheckHelperProcess", "LOGCHECK_HELPER="+tt.mode, "LOGCHECK_VALUE="+tt.value)
			cmd.Args = append(cmd.Args, tt.args...)

			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stdout
			if tt.split {
				cmd.Stderr = &stderr
			}
			err := cmd.Run()
			text := stdout.String() + stderr.String()
			for _, f := range forms(tt.value) {
				if strings.Contains(text, f.text) {
					t.Fatalf("the run printed the value (%s):\n%s", f.how, strings.ReplaceAll(text, f.text, "<VALUE>"))
				}
			}
			failed := err != nil
			if failed != tt.wantFail {
				t.Fatalf("exit error %v, want failure %v; output:\n%s", err, tt.wantFail, text)
			}
			if !tt.wantFail {
				if strings.Contains(text, Row) || !strings.Contains(text, "PASS") {
					t.Fatalf("clean run reported:\n%s", text)
				}
				return
			}
			if tt.mode == "panic" {
				for _, want := range []string{"--- FAIL: TestLogcheckHelperProcess", "just before the panic", "panic: assignment to entry in nil map", "access_token=[S22 redacted"} {
					if !strings.Contains(text, want) {
						t.Errorf("output lacks %q:\n%s", want, text)
					}
				}
				return
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1", err)
			}
			for _, want := range []string{"logcheck: S22 FAIL", " in " + tt.wantSource + ", line ", "registered at logcheck_test.go:", "PASS"} {
				if !strings.Contains(text, want) {
					t.Errorf("output lacks %q:\n%s", want, text)
				}
			}
		})
	}
}
