package childproc_test

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// The helper servers are this test binary, run with helperEnv set to a
// mode and portEnv to the port to serve on.
const (
	helperEnv = "CHILDPROC_HELPER"
	portEnv   = "CHILDPROC_PORT"
	sayEnv    = "CHILDPROC_SAY" // a line the helper server prints
)

// serve is the helper server: it prints a line (and $CHILDPROC_SAY), then
//
//	tcp:   accepts connections and serves HTTP 200 on every path;
//	late:  serves /ready with 503 for half a second, then 200;
//	exit:  exits with status 3;
//	never: sleeps without listening.
func serve(mode, port string) int {
	fmt.Printf("helper %s on port %s\n", mode, port)
	if say := os.Getenv(sayEnv); say != "" {
		fmt.Println("helper says", say)
	}
	switch mode {
	case "exit":
		return 3
	case "never":
		time.Sleep(time.Hour)
		return 0
	}
	start := time.Now()
	err := http.ListenAndServe("127.0.0.1:"+port, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mode == "late" && time.Since(start) < 500*time.Millisecond {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	fmt.Println(err)
	return 1
}

// helper returns a Spec that runs the helper server in mode.
func helper(mode string) childproc.Spec {
	return childproc.Spec{
		Name: "helper-" + mode,
		Command: func(port int) *exec.Cmd {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), helperEnv+"="+mode, portEnv+"="+strconv.Itoa(port))
			return cmd
		},
	}
}

func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func TestStart(t *testing.T) {
	tests := []struct {
		name      string
		mode      string
		readyPath string
		timeout   time.Duration
		wantErr   string // "" for a server that starts
	}{
		{"ready when the port accepts", "tcp", "", 0, ""},
		{"ready when the path answers 200", "late", "/ready", 0, ""},
		{"exits first", "exit", "", 0, "helper-exit exited before it answered on 127.0.0.1:"},
		{"never answers", "never", "", 500 * time.Millisecond, "helper-never did not answer on 127.0.0.1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := helper(tt.mode)
			spec.ReadyPath, spec.Timeout = tt.readyPath, tt.timeout
			begin := time.Now()
			p, err := childproc.Start(spec)
			if tt.wantErr != "" {
				if err == nil {
					p.Stop()
					t.Fatalf("Start succeeded, want an error with %q", tt.wantErr)
				}
				// The error holds the server's output.
				for _, want := range []string{tt.wantErr, "helper " + tt.mode + " on port"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			if p.URL != "http://"+p.Addr || !strings.HasPrefix(p.Addr, "127.0.0.1:") {
				t.Errorf("Addr %q, URL %q", p.Addr, p.URL)
			}
			if tt.readyPath != "" {
				if d := time.Since(begin); d < 500*time.Millisecond {
					t.Errorf("ready after %v, before the path answered 200", d)
				}
				resp, err := http.Get(p.URL + tt.readyPath)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s after Start: %v %v", tt.readyPath, resp, err)
				}
				resp.Body.Close()
			}
			if !accepts(p.Addr) {
				t.Errorf("%s does not accept connections after Start", p.Addr)
			}
			if out := p.Output(); !strings.Contains(out, "helper "+tt.mode+" on port") {
				t.Errorf("Output() = %q", out)
			}
		})
	}
}

// A server whose path never answers 200 is not ready, however soon its
// port accepts.
func TestReadyPathNotOK(t *testing.T) {
	spec := helper("late")
	spec.ReadyPath, spec.Timeout = "/ready", 200*time.Millisecond
	p, err := childproc.Start(spec)
	if err == nil {
		p.Stop()
		t.Fatal("Start succeeded while the path answered 503")
	}
	if !strings.Contains(err.Error(), "did not answer on http://127.0.0.1:") || !strings.Contains(err.Error(), "/ready within 200ms") {
		t.Errorf("error %q", err)
	}
}

func TestStopKillsAndIsIdempotent(t *testing.T) {
	p, err := childproc.Start(helper("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if accepts(p.Addr) {
		t.Errorf("%s still accepts connections after Stop", p.Addr)
	}
	p.Stop()
}

func TestFreePorts(t *testing.T) {
	ports, err := childproc.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Errorf("ports %v: %d repeated or invalid", ports, p)
		}
		seen[p] = true
	}
}

// fakeM is a logcheck.M whose tests are run.
type fakeM struct{ run func() }

func (m fakeM) Run() int { m.run(); return 0 }

func TestShared(t *testing.T) {
	var starts atomic.Int32
	newShared := func() *childproc.Shared[*childproc.Process] {
		return childproc.NewShared("helper", func() (*childproc.Process, error) {
			starts.Add(1)
			return childproc.Start(helper("tcp"))
		}, (*childproc.Process).Stop)
	}

	t.Run("needs Wrap", func(t *testing.T) {
		msgs := failures.Of(t, func(tb testing.TB) { newShared().Get(tb) })
		if len(msgs) != 1 || msgs[0] != "helper.Shared needs TestMain to call helper.Main or helper.Wrap" {
			t.Errorf("failures %q", msgs)
		}
	})

	t.Run("one server, stopped after the tests", func(t *testing.T) {
		starts.Store(0)
		s := newShared()
		var first, second *childproc.Process
		s.Wrap(fakeM{func() {
			first, second = s.Get(t), s.Get(t)
			if !accepts(first.Addr) {
				t.Errorf("shared server does not accept connections during the tests")
			}
		}}).Run()
		if first != second || starts.Load() != 1 {
			t.Errorf("two Gets gave %p and %p after %d starts, want one server", first, second, starts.Load())
		}
		if accepts(first.Addr) {
			t.Errorf("shared server still accepts connections after the tests")
		}
	})

	t.Run("a failed start fails every Get", func(t *testing.T) {
		starts.Store(0)
		s := childproc.NewShared("helper", func() (*childproc.Process, error) {
			starts.Add(1)
			return childproc.Start(helper("exit"))
		}, (*childproc.Process).Stop)
		var msgs []string
		s.Wrap(fakeM{func() {
			msgs = append(msgs, failures.Of(t, func(tb testing.TB) { s.Get(tb) })...)
			msgs = append(msgs, failures.Of(t, func(tb testing.TB) { s.Get(tb) })...)
		}}).Run()
		if len(msgs) != 2 || !strings.Contains(msgs[1], "helper-exit exited before it answered") || starts.Load() != 1 {
			t.Errorf("after %d starts, failures %q", starts.Load(), msgs)
		}
	})
}

// The helper process of TestS22_OutputIsFedToLogcheck: its helper server
// prints a registered value, as a careless server would.
func TestLeakHelperProcess(t *testing.T) {
	if os.Getenv("CHILDPROC_LEAK_HELPER") == "" {
		t.Skip("helper process for TestS22_OutputIsFedToLogcheck")
	}
	secret := "leaked-" + rand.Text()
	logcheck.Register(secret)
	spec := helper("tcp")
	command := spec.Command
	spec.Command = func(port int) *exec.Cmd {
		cmd := command(port)
		cmd.Env = append(cmd.Env, sayEnv+"="+secret)
		return cmd
	}
	p, err := childproc.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
}

// What a server writes reaches logcheck when it stops: a registered value
// in it fails the run, and the report names the server.
func TestS22_OutputIsFedToLogcheck(t *testing.T) {
	if os.Getenv("CHILDPROC_LEAK_HELPER") != "" {
		t.Skip("in the helper process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeakHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CHILDPROC_LEAK_HELPER=1",
		"GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0") // a passing -race binary sleeps 1 s at exit
	out, err := cmd.CombinedOutput()
	text := string(out)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("helper exited with %v, want status 1; output:\n%s", err, text)
	}
	for _, want := range []string{
		"PASS\n", // the helper itself passed
		"logcheck: S22 FAIL: 1 occurrence(s)",
		"in helper-tcp http://127.0.0.1:",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("helper output lacks %q:\n%s", want, text)
		}
	}
}
