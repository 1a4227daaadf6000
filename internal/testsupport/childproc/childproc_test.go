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
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

// The helper servers are this test binary, run with helperEnv set to a
// mode and portEnv to the port to serve on (see TestMain).
const (
	helperEnv = "CHILDPROC_HELPER"
	portEnv   = "CHILDPROC_PORT"
	sayEnv    = "CHILDPROC_SAY" // a line the helper server prints
)

// serve is the helper server. It prints a line (and $CHILDPROC_SAY), then
// in mode "tcp" serves 200 on every path, in "late" 503 for half a second
// first, in "exit" exits with status 3, and in "never" sleeps.
func serve(mode, port string) int {
	fmt.Printf("helper %s on port %s\n%s\n", mode, port, os.Getenv(sayEnv))
	switch mode {
	case "exit":
		return 3
	case "never":
		time.Sleep(time.Hour)
	}
	start := time.Now()
	fmt.Println(http.ListenAndServe("127.0.0.1:"+port, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mode == "late" && time.Since(start) < 500*time.Millisecond {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})))
	return 1
}

// helper returns a Spec that runs the helper server in mode, with env.
func helper(mode string, env ...string) childproc.Spec {
	return childproc.Spec{
		Name: "helper-" + mode,
		Command: func(port int) *exec.Cmd {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), append(env, helperEnv+"="+mode, portEnv+"="+strconv.Itoa(port))...)
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
		name, mode, readyPath string
		timeout               time.Duration
		wantErr               string // "" for a server that starts
	}{
		{"ready when the port accepts", "tcp", "", 0, ""},
		{"ready when the path answers 200", "late", "/ready", 0, ""},
		{"path not 200 in time", "late", "/ready", 200 * time.Millisecond, "helper-late did not answer on http://127.0.0.1:"},
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
				// The error holds the server's output.
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "helper "+tt.mode+" on port") {
					t.Fatalf("Start error %v, want one with %q and the output", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(begin); tt.readyPath != "" && d < 500*time.Millisecond {
				t.Errorf("ready after %v, before the path answered 200", d)
			}
			if p.URL != "http://"+p.Addr || !accepts(p.Addr) || !strings.Contains(p.Output(), "helper "+tt.mode+" on port") {
				t.Errorf("URL %q, Addr %q accepting %v, output %q", p.URL, p.Addr, accepts(p.Addr), p.Output())
			}
			p.Stop()
			p.Stop() // a second Stop does nothing
			if accepts(p.Addr) {
				t.Errorf("%s still accepts connections after Stop", p.Addr)
			}
		})
	}
}

// fakeM is a logcheck.M that runs run as its tests.
type fakeM func()

func (m fakeM) Run() int { m(); return 0 }

func TestServers(t *testing.T) {
	starts := 0
	servers := func(mode string) *childproc.Servers[*childproc.Process] {
		starts = 0
		return childproc.NewServers("helper", func() (*childproc.Process, error) {
			starts++
			return childproc.Start(helper(mode))
		}, (*childproc.Process).Stop)
	}

	msgs := failures.Of(t, func(tb testing.TB) { servers("tcp").Shared(tb) })
	if len(msgs) != 1 || msgs[0] != "helper.Shared needs TestMain to call helper.Main or helper.Wrap" {
		t.Errorf("Shared without Wrap: failures %q", msgs)
	}

	s := servers("tcp")
	var first, second, own *childproc.Process
	t.Run("own", func(t *testing.T) { own = s.Start(t) })
	s.Wrap(fakeM(func() { first, second = s.Shared(t), s.Shared(t) })).Run()
	if first != second || starts != 2 || accepts(first.Addr) || accepts(own.Addr) {
		t.Errorf("after %d starts, the shared server (%p, %p) accepts %v after the tests, the test's own %v after its cleanup",
			starts, first, second, accepts(first.Addr), accepts(own.Addr))
	}

	s = servers("exit")
	s.Wrap(fakeM(func() {
		msgs = append(failures.Of(t, func(tb testing.TB) { s.Shared(tb) }), failures.Of(t, func(tb testing.TB) { s.Shared(tb) })...)
	})).Run()
	if len(msgs) != 2 || !strings.Contains(msgs[1], "helper-exit exited before it answered") || starts != 1 {
		t.Errorf("a shared server that cannot start: after %d starts, failures %q", starts, msgs)
	}
}

// The helper process of TestS22_OutputIsFedToLogcheck: its helper server
// prints a registered value, as a careless server would.
func TestLeakHelperProcess(t *testing.T) {
	if os.Getenv("CHILDPROC_LEAK_HELPER") == "" {
		t.Skip("helper process for TestS22_OutputIsFedToLogcheck")
	}
	secret := "leaked-" + rand.Text()
	logcheck.Register(secret)
	p, err := childproc.Start(helper("tcp", sayEnv+"="+secret))
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
	out, err := logcheck.HelperCommand("TestLeakHelperProcess", "CHILDPROC_LEAK_HELPER=1").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("helper exited with %v, want status 1; output:\n%s", err, out)
	}
	for _, want := range []string{"PASS\n", "logcheck: S22 FAIL: 1 occurrence(s)", "in helper-tcp http://127.0.0.1:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("helper output lacks %q:\n%s", want, out)
		}
	}
}
