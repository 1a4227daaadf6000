//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package logcheck

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// How the capture works: descriptors 1 and 2 of the test process point into
// a pipe read by a tee process (the test binary itself, started with
// $LOGCHECK_TEE). The tee passes the output on, line by line and redacted,
// to the real streams, and sends an exact copy back through a second pipe
// for the check. Being a process of its own, it still passes everything on
// when the test process panics or is killed. Register announces each value
// to the tee through the same pipe, as a frame marked with a random
// nonce, so the tee knows it before it reads any output that follows.

const (
	teeEnv     = "LOGCHECK_TEE"         // nonce,streams: set in the tee process only
	flushAfter = 50 * time.Millisecond  // a partial line waits this long for its end
	idlePoll   = 250 * time.Millisecond // how often an idle tee looks at stopAt
	drainWait  = time.Second            // how long the tee waits for children that hold a pipe
	maxPending = 64 << 10               // a longer partial line is passed on at once
	// maxAnnounced is the longest value announced to the tee: a frame must
	// be one atomic pipe write (PIPE_BUF is at least 512 bytes). Longer
	// values are checked but not redacted in the live output.
	maxAnnounced = 470
)

// capture is the test process's side.
type capture struct {
	magic    string
	streams  []*stream
	tee      *exec.Cmd
	lifeline *os.File // closed when the tests are over
}

// stream is one pipe standing in for one or two descriptors.
type stream struct {
	name  string
	fds   []int      // the descriptors redirected into w
	saved []*os.File // their originals, in the same order
	w     *os.File   // the pipe to the tee
	copyR *os.File   // the tee's copy of the output
	raw   bytes.Buffer
	done  chan struct{} // closed when copyR is at EOF
}

func startCapture() (_ *capture, err error) {
	groups, names := [][]int{{1}, {2}}, []string{"stdout of the test process", "stderr of the test process"}
	if sameFile(1, 2) { // as under go test: one pipe keeps the two in order
		groups, names = [][]int{{1, 2}}, []string{"stdout/stderr of the test process"}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	nonce := rand.Text()
	c := &capture{magic: magicFor(nonce)}
	var teeSide []*os.File // closed here once the tee has them
	defer func() {
		for _, f := range teeSide {
			f.Close()
		}
		if err != nil {
			c.close()
		}
	}()
	var realOut [2]*os.File
	for i, fds := range groups {
		s := &stream{name: names[i], done: make(chan struct{})}
		c.streams = append(c.streams, s)
		for _, fd := range fds {
			saved, err := dupCloexec(fd)
			if err != nil {
				return nil, err
			}
			s.saved = append(s.saved, saved)
		}
		dr, dw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		cr, cw, err := os.Pipe()
		if err != nil {
			dr.Close()
			dw.Close()
			return nil, err
		}
		s.w, s.copyR = dw, cr
		teeSide = append(teeSide, dr, cw)
		realOut[i] = s.saved[0]
	}
	lr, lw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.lifeline = lw
	teeSide = append(teeSide, lr)

	c.tee = exec.Command(exe)
	c.tee.Env = append(os.Environ(),
		teeEnv+"="+nonce+","+strconv.Itoa(len(c.streams)), quickRaceExit())
	c.tee.Stdout, c.tee.Stderr = realOut[0], realOut[0]
	if realOut[1] != nil {
		c.tee.Stderr = realOut[1]
	}
	c.tee.ExtraFiles = teeSide
	if err := c.tee.Start(); err != nil {
		c.tee = nil
		return nil, fmt.Errorf("starting the tee process: %w", err)
	}

	for i, s := range c.streams {
		go s.collect()
		wfd := int(s.w.Fd())
		for _, fd := range groups[i] {
			if err := dup2(wfd, fd); err != nil {
				return nil, err
			}
			s.fds = append(s.fds, fd)
		}
	}

	reg.mu.Lock()
	reg.live = c
	for v := range reg.values {
		c.announce(v)
	}
	reg.mu.Unlock()
	return c, nil
}

func sameFile(a, b int) bool {
	var sa, sb syscall.Stat_t
	if syscall.Fstat(a, &sa) != nil || syscall.Fstat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// dupCloexec returns a copy of fd that no child inherits.
func dupCloexec(fd int) (*os.File, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	d, err := syscall.Dup(fd)
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(d)
	return os.NewFile(uintptr(d), "fd "+strconv.Itoa(fd)), nil
}

// collect keeps the tee's copy of the output.
func (s *stream) collect() {
	defer close(s.done)
	_, _ = io.Copy(&s.raw, s.copyR)
}

// announce tells the tee about v; reg.mu is held.
func (c *capture) announce(v string) {
	if len(v) > maxAnnounced {
		return
	}
	frame := []byte(c.magic + fmt.Sprintf("R%04x", len(v)) + v)
	for _, s := range c.streams {
		_, _ = s.w.Write(frame) // one write: no other output lands inside it
	}
}

// stop puts the original descriptors back, waits for the tee and returns
// what passed through.
func (c *capture) stop() []fed {
	reg.mu.Lock()
	reg.live = nil
	reg.mu.Unlock()
	for _, s := range c.streams {
		for i, fd := range s.fds {
			_ = dup2(int(s.saved[i].Fd()), fd)
		}
		s.fds = nil
		s.w.Close()
	}
	c.lifeline.Close()
	var out []fed
	for _, s := range c.streams {
		<-s.done
		out = append(out, fed{s.name, s.raw.String()})
	}
	_ = c.tee.Wait()
	c.close()
	return out
}

// close releases what the capture holds; the descriptors must be back.
func (c *capture) close() {
	for _, s := range c.streams {
		for i, fd := range s.fds {
			_ = dup2(int(s.saved[i].Fd()), fd)
		}
		for _, f := range append(s.saved, s.w, s.copyR) {
			if f != nil {
				f.Close()
			}
		}
	}
	if c.lifeline != nil {
		c.lifeline.Close()
	}
	if c.tee != nil && c.tee.ProcessState == nil {
		_ = c.tee.Wait()
	}
}

func magicFor(nonce string) string { return "\x00\x1bLC" + nonce }

// ---------------------------------------------------------------------------
// The tee process

// runTee is the tee process: spec is $LOGCHECK_TEE. Its descriptors 3, 4
// (and 5, 6) are each stream's pipe from the test process and the copy
// back; the last one is the lifeline, which reaches EOF when the test
// process is done or gone.
func runTee(spec string) int {
	nonce, n, _ := strings.Cut(spec, ",")
	streams, err := strconv.Atoi(n)
	if err != nil || streams < 1 || streams > 2 {
		fmt.Fprintf(os.Stderr, "logcheck: bad %s=%q\n", teeEnv, spec)
		return 2
	}
	// Outlive the test process: a Ctrl-C or go test's SIGQUIT on timeout is
	// for it; the tee ends when its pipes do.
	signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP)
	magic := magicFor(nonce)
	var stopAt atomic.Int64
	go func() {
		lifeline := os.NewFile(uintptr(3+2*streams), "lifeline")
		_, _ = io.Copy(io.Discard, lifeline)
		stopAt.Store(time.Now().Add(drainWait).UnixNano())
	}()
	var wg sync.WaitGroup
	for i := range streams {
		in, cp := pollable(3+2*i, "output"), os.NewFile(uintptr(4+2*i), "copy")
		out := os.Stdout
		if i == 1 {
			out = os.Stderr
		}
		wg.Go(func() {
			t := &teeStream{magic: magic, in: in, copy: cp, out: out, stopAt: &stopAt}
			t.run()
			cp.Close()
		})
	}
	wg.Wait()
	return 0
}

func pollable(fd int, name string) *os.File {
	_ = syscall.SetNonblock(fd, true) // so that read deadlines work
	return os.NewFile(uintptr(fd), name)
}

type teeStream struct {
	magic         string
	in, copy, out *os.File
	stopAt        *atomic.Int64
	pend          []byte // read, not yet parsed (a partial frame)
	line          []byte // output waiting for its newline
}

func (t *teeStream) run() {
	buf := make([]byte, 32<<10)
	for {
		wait := idlePoll
		if len(t.line) > 0 {
			wait = flushAfter
		}
		_ = t.in.SetReadDeadline(time.Now().Add(wait))
		n, err := t.in.Read(buf)
		t.pend = append(t.pend, buf[:n]...)
		t.parse()
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.flush()
			if at := t.stopAt.Load(); at != 0 && time.Now().UnixNano() > at {
				t.text(t.pend)
				t.flush()
				return
			}
		default: // EOF: every writer is gone
			t.text(t.pend)
			t.flush()
			return
		}
	}
}

// parse takes the frames out of t.pend and passes the output on.
func (t *teeStream) parse() {
	b := t.pend
	for {
		i := bytes.Index(b, []byte(t.magic))
		if i < 0 {
			keep := partialSuffix(b, t.magic)
			t.text(b[:len(b)-keep])
			t.pend = append(t.pend[:0:0], b[len(b)-keep:]...)
			return
		}
		t.text(b[:i])
		f := b[i+len(t.magic):]
		if len(f) < 5 {
			t.pend = append(t.pend[:0:0], b[i:]...)
			return
		}
		size, err := strconv.ParseUint(string(f[1:5]), 16, 16)
		if f[0] != 'R' || err != nil { // not a frame after all
			t.text(b[i : i+len(t.magic)])
			b = f
			continue
		}
		if len(f) < 5+int(size) {
			t.pend = append(t.pend[:0:0], b[i:]...)
			return
		}
		add(string(f[5:5+size]), "")
		b = f[5+size:]
	}
}

// partialSuffix is the length of the longest end of b that begins magic.
func partialSuffix(b []byte, magic string) int {
	for k := min(len(b), len(magic)-1); k > 0; k-- {
		if string(b[len(b)-k:]) == magic[:k] {
			return k
		}
	}
	return 0
}

// text handles output: an exact copy back, complete lines on, redacted.
func (t *teeStream) text(b []byte) {
	if len(b) == 0 {
		return
	}
	_, _ = t.copy.Write(b)
	t.line = append(t.line, b...)
	if i := bytes.LastIndexByte(t.line, '\n'); i >= 0 {
		_, _ = t.out.Write(redact(t.line[:i+1]))
		t.line = append(t.line[:0], t.line[i+1:]...)
	}
	if len(t.line) > maxPending {
		t.flush()
	}
}

func (t *teeStream) flush() {
	if len(t.line) > 0 {
		_, _ = t.out.Write(redact(t.line))
		t.line = t.line[:0]
	}
}
