// Package logcheck checks that no credential appears in anything a test
// process logs: security checklist row S22, "no code, state, token, secret
// or signed link in any log line or error message".
//
// Test servers and fixtures Register the credentials they issue or hold
// (client secrets, authorization codes, access and refresh tokens, states,
// binding cookies, signed links and their signatures, PKCE verifiers,
// signing keys). A package's TestMain runs its tests through Main:
//
//	func TestMain(m *testing.M) { logcheck.Main(m) }
//
// (dynalite.Main and moto.Main do so too). While the tests run, Main captures the
// process's standard output and standard error at the file descriptor
// level, so it sees log/slog, the log package, direct writes, panics, race
// reports and the output of child processes that inherit them; it copies
// everything on to the real streams, so `go test` output is unchanged
// except that a registered value is replaced by a redacted hint. Output that
// test support keeps in memory — the logs of each Lambda function run under
// the emulator, of dynalite, a broker's log buffer — is handed over with
// Feed. After the tests, Main searches all of it for every registered value
// and for its URL query, URL path, JSON and Go-quoted escapings. A hit
// prints the row (S22), where it was found and a hint (the first 4
// characters and the length, never the value), and makes the test binary
// exit non-zero even if every test passed.
//
// Values shorter than MinLen bytes are ignored: short strings collide with
// ordinary output ("v1", "csecret").
//
// The testing framework's own output (t.Log, t.Error, --- FAIL lines) is
// written to standard output and is checked like any other output: a test
// that prints a credential leaks it into CI logs just as well. go test
// prints a passing test's t.Log output only with -v, so that output is
// checked exactly when it is shown; run with -v to check all of it.
//
// The streams are read by a tee process (the test binary run again), so a
// panicking or killed test process still gets all its output shown. Capture
// works on Linux and the BSDs (including macOS); elsewhere only fed output is
// checked.
package logcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// MinLen is the length in bytes below which Register ignores a value.
const MinLen = 8

// Row is the security checklist row this package enforces.
const Row = "S22"

// maxReported is how many hits the report lists one by one.
const maxReported = 20

type entry struct {
	hint string // first 4 characters and the length
	at   string // file:line of the Register call
}

type form struct {
	text string
	e    *entry
	how  string // "as is", "URL query-escaped", ...
}

type fed struct {
	source, output string
}

var reg struct {
	mu     sync.Mutex
	values map[string]*entry
	index  map[uint64][]form // by the first 8 bytes of each form
	fed    []fed
	live   *capture // while the tests run: announce new values to the tee
}

// Register records values that must never appear in any log of this test
// process. Values shorter than MinLen bytes are ignored. It is safe for
// concurrent use and cheap enough to call for every credential a test
// server issues.
func Register(values ...string) {
	at := ""
	for _, v := range values {
		if len(v) < MinLen {
			continue
		}
		if at == "" {
			at = caller()
		}
		add(v, at)
	}
}

// add registers v, at least MinLen bytes long, as registered at at.
func add(v, at string) {
	fs := forms(v)
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if _, ok := reg.values[v]; ok {
		return
	}
	if reg.values == nil {
		reg.values = map[string]*entry{}
		reg.index = map[uint64][]form{}
	}
	e := &entry{hint: hint(v), at: at}
	reg.values[v] = e
	for _, f := range fs {
		k := key(f.text)
		reg.index[k] = append(reg.index[k], form{f.text, e, f.how})
	}
	if reg.live != nil {
		reg.live.announce(v)
	}
}

// Feed hands logcheck output that test support kept in memory instead of
// writing it to a stream, such as the logs of a Lambda function run under
// the emulator; source names it in a report ("Lambda function callback in
// TestFlow"). Output fed after the tests have finished is not checked.
func Feed(source, output string) {
	if output == "" {
		return
	}
	reg.mu.Lock()
	reg.fed = append(reg.fed, fed{source, output})
	reg.mu.Unlock()
}

// M is what Run needs of a *testing.M. A wrapper that embeds *testing.M and
// overrides Run can add its own teardown, which then happens before the
// check.
type M interface {
	Run() int
}

var _ M = (*testing.M)(nil)

// Main runs the tests with Run and exits with its code. Call it from
// TestMain.
func Main(m M) {
	os.Exit(Run(m))
}

// Run runs m with the process's output captured, then checks the captured
// and fed output for registered values. It returns m.Run's code, or 1 if
// the tests passed but a registered value was found.
func Run(m M) int {
	if spec := os.Getenv(teeEnv); spec != "" {
		return runTee(spec)
	}
	c, err := startCapture()
	if err != nil {
		fmt.Fprintf(os.Stderr, "logcheck: %s: cannot capture the test output: %v\n", Row, err)
		return 1
	}
	code := m.Run()
	sources := c.stop()
	reg.mu.Lock()
	sources = append(sources, reg.fed...)
	reg.mu.Unlock()
	if hits := find(sources); len(hits) > 0 {
		report(os.Stderr, hits)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// ---------------------------------------------------------------------------
// Searching

type hit struct {
	source string
	line   int
	f      form
}

// find returns every occurrence of a registered form in sources.
func find(sources []fed) []hit {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	var hits []hit
	for _, s := range sources {
		line, last := 1, 0
		scan(s.output, func(i int, f form) int {
			line += strings.Count(s.output[last:i], "\n")
			last = i
			hits = append(hits, hit{s.source, line, f})
			return len(f.text)
		})
	}
	return hits
}

// scan calls fn for each registered form in text, leftmost first; fn
// returns how far to skip. reg.mu is held.
func scan(text string, fn func(i int, f form) int) {
	if len(reg.index) == 0 {
		return
	}
	for i := 0; i+MinLen <= len(text); i++ {
		fs, ok := reg.index[key(text[i:])]
		if !ok {
			continue
		}
		best := -1
		for j, f := range fs { // the longest form at i
			if strings.HasPrefix(text[i:], f.text) && (best < 0 || len(f.text) > len(fs[best].text)) {
				best = j
			}
		}
		if best >= 0 {
			i += fn(i, fs[best]) - 1
		}
	}
}

// redact replaces every registered form in b by its hint.
func redact(b []byte) []byte {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	text := string(b)
	var out []byte
	last := 0
	scan(text, func(i int, f form) int {
		out = append(out, text[last:i]...)
		out = append(out, "[S22 redacted "+f.e.hint+"]"...)
		last = i + len(f.text)
		return len(f.text)
	})
	if out == nil {
		return b
	}
	return append(out, text[last:]...)
}

// key packs the first 8 bytes of s.
func key(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// forms returns v and the ways a log line may spell it.
func forms(v string) []form {
	seen := map[string]bool{}
	var out []form
	keep := func(s, how string) {
		if len(s) >= MinLen && !seen[s] {
			seen[s] = true
			out = append(out, form{text: s, how: how})
		}
	}
	keep(v, "as is")
	keep(url.QueryEscape(v), "URL query-escaped")
	keep(url.PathEscape(v), "URL path-escaped")
	if b, err := json.Marshal(v); err == nil {
		keep(string(b[1:len(b)-1]), "JSON-escaped")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		keep(string(b[1:len(b)-1]), "JSON-escaped")
	}
	q := strconv.Quote(v)
	keep(q[1:len(q)-1], "Go-quoted")
	return out
}

// hint shows the first 4 characters and the length of v, never more.
func hint(v string) string {
	n, i := 0, 0
	for i < len(v) && n < 4 {
		_, size := utf8.DecodeRuneInString(v[i:])
		i += size
		n++
	}
	return fmt.Sprintf("%q… %d bytes", strings.ToValidUTF8(v[:i], "?"), len(v))
}

// caller is the file:line that called Register.
func caller() string {
	_, file, line, ok := runtime.Caller(2)
	if !ok {
		return "?"
	}
	return filepath.Base(file) + ":" + strconv.Itoa(line)
}

func report(w *os.File, hits []hit) {
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].source < hits[j].source })
	fmt.Fprintf(w, "logcheck: %s FAIL: %d occurrence(s) of registered credentials in the test run's output "+
		"(security checklist %s: no code, state, token, secret or signed link in any log line or error message)\n",
		Row, len(hits), Row)
	for i, h := range hits {
		if i == maxReported {
			fmt.Fprintf(w, "logcheck:   … and %d more\n", len(hits)-maxReported)
			break
		}
		fmt.Fprintf(w, "logcheck:   %s (registered at %s) in %s, line %d, %s\n", h.f.e.hint, h.f.e.at, h.source, h.line, h.f.how)
	}
}
