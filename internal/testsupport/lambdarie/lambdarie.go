// Package lambdarie runs real Lambda bootstrap binaries under the AWS Lambda
// Runtime Interface Emulator (RIE) for tests.
//
// Build compiles a function package exactly as Lambda's provided.al2023
// runtime expects it (a static linux "bootstrap"), Start runs it under the
// emulator on free loopback ports, and Invoke sends events to it:
//
//	bin := lambdarie.Build(t, "./functions/callback")
//	fn := lambdarie.Start(t, bin, map[string]string{"TABLE_NAME": table})
//	out, err := fn.Invoke(ctx, event)
//
// Quirks of the emulator version pinned in go.mod, which this package hides:
//
//   - A function error comes back as HTTP 200 with the runtime's
//     {"errorMessage","errorType"} body and no X-Amz-Function-Error header (the
//     emulator drops the headers of its internal response writer); Invoke
//     recognises that body and returns a *FunctionError.
//   - A timeout comes back as HTTP 200 with the plain-text body "Task timed out
//     after N.00 seconds"; the runtime is SIGKILLed and initialised again on the
//     next invoke. Invoke returns a *FunctionError of type Sandbox.Timedout.
//   - An init failure or a crashed runtime comes back as HTTP 502 with an empty
//     body (the reason is only in the logs).
//   - Two invokes at once on one emulator crash it (nil dereference after
//     "ReserveFailed: AlreadyReserved"), and an invoke whose client went away
//     keeps running. Invoke therefore runs one invoke at a time per Function
//     and keeps the slot until the emulator has answered, even when the
//     caller's context ends first. Start two Functions for real concurrency.
//   - The emulator forwards its whole environment to the function, so the
//     environment given to Start is exactly what the function sees (plus the
//     AWS_LAMBDA_* variables the emulator adds).
//   - The runtime runs in its own process group; Stop sends SIGTERM to the
//     emulator (which SIGKILLs the runtime and exits) and then makes sure no
//     process of the function is left.
//
// When a Function stops, its logs go to logcheck.Feed, so a test binary run
// through logcheck.Main fails if a function logged a registered credential.
package lambdarie

import (
	"archive/zip"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
)

const (
	invokePath = "/2015-03-31/functions/function/invocations"

	// DefaultTimeout is AWS_LAMBDA_FUNCTION_TIMEOUT (seconds) unless env sets it.
	DefaultTimeout = 10

	readyWait     = 15 * time.Second
	readyPoll     = 2 * time.Millisecond
	stopGrace     = 3 * time.Second
	maxReplyBytes = 16 << 20 // Lambda's synchronous limit is 6 MB
)

// ---------------------------------------------------------------------------
// Building

type buildResult struct {
	once sync.Once
	path string
	err  error
}

var (
	buildMu sync.Mutex
	builds  = map[string]*buildResult{}
	names   = map[string]string{} // bootstrap path -> default function name

	workOnce sync.Once
	workDir  string
	workErr  error
)

// workdir returns this process's directory for binaries,
// $TMPDIR/lambdarie-<pid>-*. Directories left by test processes that no
// longer run are removed on first use, so nothing piles up.
func workdir() (string, error) {
	workOnce.Do(func() {
		sweepStale()
		workDir, workErr = os.MkdirTemp("", fmt.Sprintf("lambdarie-%d-", os.Getpid()))
	})
	return workDir, workErr
}

func sweepStale() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "lambdarie-*-*"))
	for _, m := range matches {
		parts := strings.SplitN(filepath.Base(m), "-", 3)
		if len(parts) != 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(m)
		}
	}
}

// Zip returns the code zip of a provided.al2023 function, as `sam build`
// packages it: the executable bin as the single entry "bootstrap", with
// method (zip.Deflate as sam does, or zip.Store, which Lambda takes too and
// which is much faster under the race detector).
func Zip(bin string, method uint16) ([]byte, error) {
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: method}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err == nil {
		_, err = w.Write(b)
	}
	if err == nil {
		err = zw.Close()
	}
	return buf.Bytes(), err
}

// MakeBootstrap builds pkgs for linux/arch with the Makefile's one recipe
// for Lambda bootstraps (`make bootstrap`, the recipe of `make build` and
// of the build-<LogicalId> targets `sam build` runs), into out: a file for
// one package, a directory ending in a separator for several (each binary
// named after its package). vars are further make variables, such as
// "LAMBDA_LDFLAGS=" for a build that keeps its symbols.
func MakeBootstrap(arch, out string, vars []string, pkgs ...string) error {
	root, err := modroot.Dir()
	if err != nil {
		return err
	}
	gocmd, err := modroot.GoCommand()
	if err != nil {
		return err
	}
	makecmd, err := exec.LookPath("make")
	if err != nil {
		return errors.New("make is not in PATH: the Lambda bootstraps are built by the Makefile's recipe (README: prerequisites)")
	}
	args := append([]string{"--no-print-directory", "-s", "bootstrap",
		"PKG=" + strings.Join(pkgs, " "), "OUT=" + out, "LAMBDA_ARCH=" + arch, "GO=" + gocmd}, vars...)
	cmd := exec.Command(makecmd, args...)
	cmd.Dir = root
	// A make that runs the tests (make test) passes its own flags down
	// through the environment; this make gets none of them.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// Build compiles pkg (a path relative to the module root such as
// "./functions/callback", or an import path) as Lambda's provided.al2023
// runtime runs it, for this machine's architecture, with the Makefile's
// recipe (MakeBootstrap):
//
//	GOOS=linux GOARCH=<host> CGO_ENABLED=0 go build $(LAMBDA_FLAGS) -o <dir>/bootstrap
//
// and returns the absolute path of the bootstrap. Each package is built once
// per test process, whichever test asks first; a failed build fails every
// test that asks for it, with the compiler's output.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	key := pkg
	if strings.HasPrefix(pkg, ".") {
		key = "./" + filepath.ToSlash(filepath.Clean(pkg))
	}
	buildMu.Lock()
	br, ok := builds[key]
	if !ok {
		br = &buildResult{}
		builds[key] = br
	}
	buildMu.Unlock()

	br.once.Do(func() {
		dir, err := workdir()
		if err != nil {
			br.err = err
			return
		}
		name := filepath.Base(strings.TrimSuffix(key, "/"))
		out := filepath.Join(dir, "fn-"+strings.Trim(unsafeChars.ReplaceAllString(key, "_"), "_."))
		if err := os.MkdirAll(out, 0o755); err != nil {
			br.err = err
			return
		}
		bin := filepath.Join(out, "bootstrap")
		br.err = MakeBootstrap(runtime.GOARCH, bin, nil, pkg)
		if br.err == nil {
			br.path = bin
			buildMu.Lock()
			names[bin] = name
			buildMu.Unlock()
		}
	})
	if br.err != nil {
		t.Fatalf("lambdarie: building %s: %v", pkg, br.err)
	}
	return br.path
}

// emulatorBinary returns the emulator at the version go.mod pins, built
// once per test process.
func emulatorBinary(t testing.TB) string {
	t.Helper()
	bin, err := modroot.Tool("aws-lambda-rie")
	if err != nil {
		t.Fatalf("lambdarie: building the emulator: %v", err)
	}
	return bin
}

// ---------------------------------------------------------------------------
// Running

// Function is a bootstrap running under the emulator. Its methods are safe
// for concurrent use.
type Function struct {
	name      string
	test      string // the test that started it, for logcheck
	bootstrap string
	timeout   time.Duration
	invokeURL string

	cmd     *exec.Cmd
	started time.Time     // just before the emulator was started
	done    chan struct{} // closed when the emulator has exited
	logs    syncbuf.Buffer

	ctx    context.Context // cancelled by Stop: aborts invokes in flight
	cancel context.CancelFunc
	slot   chan struct{} // one invoke at a time (see package doc)
	client *http.Client

	stopOnce sync.Once
}

// Start runs bootstrap under the emulator, on two free loopback ports (its
// invoke API and the Runtime API), and waits until both accept connections.
//
// The environment is a minimal base, not the developer's: PATH, HOME (a fresh
// temporary directory, so no ~/.aws files are read), AWS_REGION and
// AWS_DEFAULT_REGION=us-east-1, fake AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
// AWS_EC2_METADATA_DISABLED=true, AWS_LAMBDA_FUNCTION_NAME (the package's
// last path element), AWS_LAMBDA_FUNCTION_TIMEOUT (DefaultTimeout),
// AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 and AWS_LAMBDA_FUNCTION_VERSION — with
// env laid over it. The emulator and the function log into one buffer
// (Logs), which is printed if the test fails. The emulator is stopped, and no
// process of it left behind, when the test ends.
func Start(t testing.TB, bootstrap string, env map[string]string) *Function {
	t.Helper()
	rie := emulatorBinary(t)
	abs, err := filepath.Abs(bootstrap)
	if err != nil {
		t.Fatalf("lambdarie: %v", err)
	}
	if st, err := os.Stat(abs); err != nil || st.IsDir() {
		t.Fatalf("lambdarie: bootstrap %s: not a file (%v)", abs, err)
	}

	buildMu.Lock()
	name := names[abs]
	buildMu.Unlock()
	if name == "" {
		name = "function"
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	vars := map[string]string{
		"PATH":                            path,
		"HOME":                            t.TempDir(),
		"AWS_REGION":                      "us-east-1",
		"AWS_DEFAULT_REGION":              "us-east-1",
		"AWS_ACCESS_KEY_ID":               "AKIALAMBDARIETEST000",
		"AWS_SECRET_ACCESS_KEY":           "lambdarie-fake-secret-access-key",
		"AWS_EC2_METADATA_DISABLED":       "true",
		"AWS_LAMBDA_FUNCTION_NAME":        name,
		"AWS_LAMBDA_FUNCTION_TIMEOUT":     strconv.Itoa(DefaultTimeout),
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
	}
	for k, v := range env {
		vars[k] = v
	}
	// The emulator panics on a timeout that is not a whole number.
	secs, err := strconv.Atoi(vars["AWS_LAMBDA_FUNCTION_TIMEOUT"])
	if err != nil || secs <= 0 {
		t.Fatalf("lambdarie: AWS_LAMBDA_FUNCTION_TIMEOUT=%q: want a positive whole number of seconds", vars["AWS_LAMBDA_FUNCTION_TIMEOUT"])
	}
	environ := make([]string, 0, len(vars))
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}

	var f *Function
	for attempt := 1; ; attempt++ {
		f, err = launch(rie, abs, environ)
		if err == nil {
			break
		}
		retry := f != nil && strings.Contains(f.Logs(), "address already in use") && attempt < 3
		if f != nil && !retry {
			t.Fatalf("lambdarie: starting %s: %v\n--- emulator output ---\n%s", name, err, f.Logs())
		}
		if !retry {
			t.Fatalf("lambdarie: starting %s: %v", name, err)
		}
	}
	f.name = name
	f.test = t.Name()
	f.timeout = time.Duration(secs) * time.Second
	t.Cleanup(func() {
		f.Stop()
		if t.Failed() {
			t.Logf("lambdarie: output of %s (emulator and function):\n%s", f.name, f.Logs())
		}
	})
	return f
}

// launch starts one emulator; on failure it returns the (stopped) Function
// for its logs, if the process had started.
func launch(rie, bootstrap string, environ []string) (*Function, error) {
	ports, err := childproc.FreePorts(2)
	if err != nil {
		return nil, err
	}
	apiAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	runtimeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))

	cmd := exec.Command(rie,
		"--runtime-interface-emulator-address", apiAddr,
		"--runtime-api-address", runtimeAddr,
		bootstrap)
	cmd.Dir = filepath.Dir(bootstrap) // like /var/task
	cmd.Env = environ
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 2 * time.Second

	ctx, cancel := context.WithCancel(context.Background())
	f := &Function{
		bootstrap: bootstrap,
		invokeURL: "http://" + apiAddr + invokePath,
		cmd:       cmd,
		done:      make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
		slot:      make(chan struct{}, 1),
		client: &http.Client{Transport: &http.Transport{
			Proxy:             nil, // never a proxy from the environment
			DisableKeepAlives: true,
		}},
	}
	cmd.Stdout = &f.logs
	cmd.Stderr = &f.logs
	f.started = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		close(f.done)
	}()

	deadline := time.Now().Add(readyWait)
	for {
		if accepts(apiAddr) && accepts(runtimeAddr) {
			return f, nil
		}
		select {
		case <-f.done:
			f.Stop()
			return f, fmt.Errorf("emulator exited before it was ready: %v", cmd.ProcessState)
		case <-time.After(readyPoll):
		}
		if time.Now().After(deadline) {
			f.Stop()
			return f, fmt.Errorf("emulator not listening on %s and %s after %v", apiAddr, runtimeAddr, readyWait)
		}
	}
}

func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// URL is the emulator's invoke endpoint
// (http://127.0.0.1:<port>/2015-03-31/functions/function/invocations).
// Prefer Invoke: the emulator crashes on two invokes at once.
func (f *Function) URL() string { return f.invokeURL }

// Name is the function's AWS_LAMBDA_FUNCTION_NAME default (the package's
// last path element), unless env overrode it.
func (f *Function) Name() string { return f.name }

// Started is when the emulator process was started, for measuring cold
// starts: the emulator starts the runtime (the bootstrap) only on the first
// invoke, so the time from Started to the first invoke's answer covers the
// emulator's own start, the runtime's init and the first invoke.
func (f *Function) Started() time.Time { return f.started }

// RuntimePID returns the process id of the function's runtime (the running
// bootstrap), or 0 if none runs: before the first invoke, after Stop, or
// where the platform has no /proc (only Linux is supported).
func (f *Function) RuntimePID() int {
	if f.cmd.Process == nil {
		return 0
	}
	select {
	case <-f.done:
		return 0
	default:
	}
	for _, p := range descendants(f.cmd.Process.Pid) {
		if p.alive() && p.isExe(f.bootstrap) {
			return p.pid
		}
	}
	return 0
}

// Logs returns everything the emulator and the function wrote so far.
func (f *Function) Logs() string { return f.logs.String() }

// Stop stops the emulator and the function's runtime and waits until they are
// gone. It is idempotent and also runs when the test ends.
func (f *Function) Stop() {
	f.stopOnce.Do(func() {
		f.cancel()
		if f.cmd.Process == nil {
			return
		}
		pid := f.cmd.Process.Pid
		kids := descendants(pid)
		// The emulator traps SIGTERM: it SIGKILLs the runtime, waits, exits.
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.done:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-pid, syscall.SIGKILL) // its own process group
			<-f.done
		}
		for _, k := range kids {
			k.kill()
		}
		deadline := time.Now().Add(stopGrace)
		for _, k := range kids {
			for k.alive() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		logcheck.Feed(fmt.Sprintf("Lambda function %s (emulator and function) in %s", cmp.Or(f.name, "function"), cmp.Or(f.test, "?")), f.Logs())
	})
}

// ---------------------------------------------------------------------------
// Invoking

// FunctionError is an invoke that failed inside the function: the handler
// returned an error or panicked (Type and Message are the runtime's errorType
// and errorMessage), the invoke timed out (Type "Sandbox.Timedout"), or the
// runtime failed to start or crashed (Status 502, see the logs).
type FunctionError struct {
	Type    string
	Message string
	Status  int    // HTTP status of the emulator's answer
	Payload []byte // the emulator's answer as is
}

func (e *FunctionError) Error() string {
	switch {
	case e.Type != "":
		return fmt.Sprintf("lambda function error %s: %s", e.Type, e.Message)
	default:
		return fmt.Sprintf("lambda invoke failed: emulator answered %d %s%s", e.Status, http.StatusText(e.Status), e.Message)
	}
}

var timedOut = regexp.MustCompile(`^Task timed out after \d+(\.\d+)? seconds$`)

// Invoke sends event (nil means {}) to the function and returns its payload.
// A function error, a timeout or a crashed runtime come back as a
// *FunctionError, together with the raw payload. Invokes on one Function run
// one at a time; when ctx ends first, Invoke returns ctx's error but the next
// invoke still waits until the emulator has answered this one.
func (f *Function) Invoke(ctx context.Context, event []byte) ([]byte, error) {
	if event == nil {
		event = []byte("{}")
	}
	select {
	case f.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("lambdarie: invoke %s: %w", f.name, ctx.Err())
	case <-f.done:
		return nil, fmt.Errorf("lambdarie: invoke %s: emulator not running", f.name)
	}
	type result struct {
		payload []byte
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() { <-f.slot }()
		p, err := f.invoke(event)
		ch <- result{p, err}
	}()
	select {
	case r := <-ch:
		return r.payload, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("lambdarie: invoke %s: %w", f.name, ctx.Err())
	}
}

func (f *Function) invoke(event []byte) ([]byte, error) {
	// The emulator always answers within the function timeout (it resets
	// the runtime then); the margin covers a cold start.
	ctx, cancel := context.WithTimeout(f.ctx, f.timeout+15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.invokeURL, bytes.NewReader(event))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lambdarie: invoke %s: %w", f.name, err)
	}
	defer resp.Body.Close()
	payload, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("lambdarie: invoke %s: reading reply: %w", f.name, err)
	}
	if len(payload) > maxReplyBytes {
		return nil, fmt.Errorf("lambdarie: invoke %s: reply larger than %d bytes", f.name, maxReplyBytes)
	}
	if fe := functionError(resp, payload); fe != nil {
		return payload, fe
	}
	return payload, nil
}

// functionError recognises the ways the emulator reports a failed invoke.
func functionError(resp *http.Response, payload []byte) *FunctionError {
	fe := &FunctionError{Status: resp.StatusCode, Payload: payload}
	if resp.StatusCode/100 != 2 {
		if len(payload) > 0 {
			fe.Message = ": " + string(payload)
		} else {
			fe.Message = " (init failure or crashed runtime; see the logs)"
		}
		return fe
	}
	trimmed := bytes.TrimSpace(payload)
	if timedOut.Match(trimmed) {
		fe.Type, fe.Message = "Sandbox.Timedout", string(trimmed)
		return fe
	}
	var obj map[string]json.RawMessage
	if len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(trimmed, &obj) != nil {
		if resp.Header.Get("X-Amz-Function-Error") != "" { // as Lambda itself signals it
			fe.Type, fe.Message = resp.Header.Get("X-Amz-Function-Error"), string(trimmed)
			return fe
		}
		return nil
	}
	var typ, msg string
	_, hasType := obj["errorType"]
	_, hasMsg := obj["errorMessage"]
	_ = json.Unmarshal(obj["errorType"], &typ)
	_ = json.Unmarshal(obj["errorMessage"], &msg)
	onlyErrorKeys := true
	for k := range obj {
		switch k {
		case "errorType", "errorMessage", "stackTrace", "cause", "requestId":
		default:
			onlyErrorKeys = false
		}
	}
	if (hasType && hasMsg && onlyErrorKeys) || resp.Header.Get("X-Amz-Function-Error") != "" {
		if typ == "" {
			typ = resp.Header.Get("X-Amz-Function-Error")
		}
		fe.Type, fe.Message = typ, msg
		return fe
	}
	return nil
}

// InvokeJSON marshals in (a []byte or json.RawMessage is sent as is), invokes
// the function and unmarshals its payload into out (if out is not nil).
func (f *Function) InvokeJSON(ctx context.Context, in any, out any) error {
	var event []byte
	switch v := in.(type) {
	case []byte:
		event = v
	case json.RawMessage:
		event = v
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("lambdarie: marshal event: %w", err)
		}
		event = b
	}
	payload, err := f.Invoke(ctx, event)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(payload, out); err != nil {
		return fmt.Errorf("lambdarie: unmarshal payload of %s into %T: %w (payload %.200q)", f.name, out, err, payload)
	}
	return nil
}

// ---------------------------------------------------------------------------
