package secrets_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/fakeclock"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
)

// upstream is Secrets Manager on moto, in an account of the test's own,
// seen through a proxy that counts and fails reads.
type upstream struct {
	acct  *moto.Account
	proxy *moto.Proxy
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	acct, proxy := moto.Shared(t).NewAccount(t).Proxied(t)
	return &upstream{acct, proxy}
}

// put stores value as the current version of the secret name.
func (u *upstream) put(t *testing.T, name, value string) { u.acct.PutSecret(t, name, value) }

// manager returns a Manager reading through the proxy, without retries.
func (u *upstream) manager() *secrets.Manager {
	return secrets.NewManager(secretsmanager.NewFromConfig(u.acct.Config()))
}

// calls counts the GetSecretValue requests for name.
func (u *upstream) calls(name string) int {
	return u.proxy.Calls("GetSecretValue", moto.Input("SecretId", name))
}

// wantCalls ends the test unless name was read upstream n times by now;
// what says when.
func (u *upstream) wantCalls(t *testing.T, name string, n int, what string) {
	t.Helper()
	if got := u.calls(name); got != n {
		t.Fatalf("%s: upstream calls = %d, want %d", what, got, n)
	}
}

// fail answers the next n reads of name with an AWS error.
func (u *upstream) fail(name string, n, status int, errorType, message string) {
	u.proxy.Inject("GetSecretValue", moto.Input("SecretId", name), n, moto.AWSError(status, errorType, message))
}

func newCache(t *testing.T, ttl time.Duration) (*secrets.Cache, *upstream, *fakeclock.Clock) {
	t.Helper()
	srv := newUpstream(t)
	clock := fakeclock.At(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := secrets.NewCache(srv.manager(), ttl)
	secrets.SetClock(c, clock.Now)
	return c, srv, clock
}

func mustSecret(t *testing.T, src secrets.Source, name, want string) {
	t.Helper()
	got, err := src.Secret(context.Background(), name)
	if err != nil || string(got) != want {
		t.Fatalf("Secret(%q) = %q, %v; want %q", name, got, err, want)
	}
}

func TestCacheTTL(t *testing.T) {
	c, srv, clock := newCache(t, time.Minute)
	srv.put(t, "k", "v1")

	mustSecret(t, c, "k", "v1")
	srv.wantCalls(t, "k", 1, "first read")

	srv.put(t, "k", "v2")
	clock.Add(59 * time.Second)
	mustSecret(t, c, "k", "v1") // still cached
	srv.wantCalls(t, "k", 1, "read within TTL")

	clock.Add(time.Second)
	mustSecret(t, c, "k", "v2")
	srv.wantCalls(t, "k", 2, "read after TTL")
	mustSecret(t, c, "k", "v2")
	srv.wantCalls(t, "k", 2, "read within new TTL")
}

// TestCacheForgetsExpired: expired values do not stay in memory until
// their own name is read again (the cache holds data keys and secrets).
func TestCacheForgetsExpired(t *testing.T) {
	c, srv, clock := newCache(t, time.Minute)
	for _, k := range []string{"a", "b", "c"} {
		srv.put(t, k, "v-"+k)
		mustSecret(t, c, k, "v-"+k)
	}
	if n := secrets.Cached(c); n != 3 {
		t.Fatalf("%d cached, want 3", n)
	}
	clock.Add(time.Minute)
	srv.put(t, "d", "v-d")
	mustSecret(t, c, "d", "v-d")
	if n := secrets.Cached(c); n != 1 {
		t.Errorf("%d cached after the others expired and d arrived, want 1", n)
	}
}

func TestCacheTTLClamp(t *testing.T) {
	for _, tt := range []struct{ in, want time.Duration }{
		{0, 5 * time.Minute},
		{-time.Second, 5 * time.Minute},
		{time.Minute, time.Minute},
		{5 * time.Minute, 5 * time.Minute},
		{time.Hour, 5 * time.Minute},
	} {
		if got := secrets.TTL(secrets.NewCache(nil, tt.in)); got != tt.want {
			t.Errorf("NewCache(ttl %v): TTL %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestCacheDoesNotCacheFailures(t *testing.T) {
	c, srv, _ := newCache(t, time.Minute)

	for i := range 2 {
		if _, err := c.Secret(context.Background(), "k"); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("read %d: err = %v, want ErrNotFound", i, err)
		}
	}
	srv.wantCalls(t, "k", 2, "not found twice (not cached)")

	srv.put(t, "k", "v")
	srv.fail("k", 1, 400, "ThrottlingException", "Rate exceeded")
	if _, err := c.Secret(context.Background(), "k"); err == nil || errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("throttled: err = %v", err)
	}
	mustSecret(t, c, "k", "v")
	srv.wantCalls(t, "k", 4, "after the throttled read")
}

func TestCacheInvalidate(t *testing.T) {
	c, srv, _ := newCache(t, time.Minute)
	srv.put(t, "k", "v1")
	mustSecret(t, c, "k", "v1")

	srv.put(t, "k", "v2")
	c.Invalidate("k")
	mustSecret(t, c, "k", "v2")
	mustSecret(t, c, "k", "v2")
	srv.wantCalls(t, "k", 2, "after Invalidate")
	c.Invalidate("never-read") // no-op
}

func TestCacheReturnsCopies(t *testing.T) {
	c, srv, _ := newCache(t, time.Minute)
	srv.put(t, "k", "value")
	got, _ := c.Secret(context.Background(), "k")
	clear(got)
	mustSecret(t, c, "k", "value")
}

// gate is a Source that holds every read until released.
type gate struct {
	src     secrets.Source
	entered chan struct{} // receives once per read
	release chan struct{}
	calls   atomic.Int32
	// readFirst: read src when entered, answer that when released (a
	// value read before a change upstream, answered after it).
	readFirst bool
}

func newGate(src secrets.Source) *gate {
	return &gate{src: src, entered: make(chan struct{}, 100), release: make(chan struct{})}
}

// gatedCache puts value upstream under "k" and returns a Cache reading it
// through a gate.
func gatedCache(t *testing.T, value string) (*upstream, *gate, *secrets.Cache) {
	srv := newUpstream(t)
	srv.put(t, "k", value)
	g := newGate(srv.manager())
	return srv, g, secrets.NewCache(g, time.Minute)
}

// read is what a Secret call returned.
type read struct {
	value string
	err   error
}

// readLater calls c.Secret(ctx, "k") in a goroutine; its answer comes on
// the channel.
func readLater(ctx context.Context, c *secrets.Cache) <-chan read {
	ch := make(chan read, 1)
	go func() {
		got, err := c.Secret(ctx, "k")
		ch <- read{string(got), err}
	}()
	return ch
}

// wantSourceReads checks how many reads reached the gate.
func wantSourceReads(t *testing.T, g *gate, n int32) {
	t.Helper()
	if got := g.calls.Load(); got != n {
		t.Errorf("source reads = %d, want %d", got, n)
	}
}

func (g *gate) Secret(ctx context.Context, name string) ([]byte, error) {
	g.calls.Add(1)
	var value []byte
	var err error
	if g.readFirst {
		value, err = g.src.Secret(ctx, name)
	}
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if g.readFirst {
		return value, err
	}
	return g.src.Secret(ctx, name)
}

func TestCacheConcurrentReadersShareOneCall(t *testing.T) {
	srv, g, c := gatedCache(t, "v")

	const readers = 20
	var started, done sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			got, err := c.Secret(context.Background(), "k")
			if err == nil && string(got) != "v" {
				err = errors.New("wrong value " + string(got))
			}
			errs <- err
		}()
	}
	started.Wait()
	<-g.entered
	time.Sleep(50 * time.Millisecond) // let every reader reach the cache
	close(g.release)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := srv.calls("k"); got != 1 {
		t.Errorf("upstream calls = %d, want 1", got)
	}
	wantSourceReads(t, g, 1)
}

// A read in flight when Invalidate is called is not joined by later reads.
func TestCacheInvalidateInFlight(t *testing.T) {
	srv, g, c := gatedCache(t, "old")

	first := readLater(context.Background(), c)
	<-g.entered // first read in flight

	srv.put(t, "k", "new")
	c.Invalidate("k")
	second := readLater(context.Background(), c)
	<-g.entered // a second upstream read started: not joined to the stale one
	close(g.release)
	<-first
	if got := (<-second).value; got != "new" {
		t.Errorf("read after Invalidate = %q, want new", got)
	}
	mustSecret(t, c, "k", "new")
	wantSourceReads(t, g, 2)
}

// The value of a read in flight when Invalidate is called, read before the
// change upstream, goes to its readers but is not kept.
func TestCacheInvalidatedReadNotKept(t *testing.T) {
	srv, g, c := gatedCache(t, "old")
	g.readFirst = true

	first := readLater(context.Background(), c)
	<-g.entered // "old" read, not yet answered
	srv.put(t, "k", "new")
	c.Invalidate("k")
	close(g.release)
	if got := (<-first).value; got != "old" {
		t.Errorf("read begun before Invalidate = %q, want old", got)
	}
	mustSecret(t, c, "k", "new")
	wantSourceReads(t, g, 2)
}

func TestCacheLeaderCanceled(t *testing.T) {
	srv, g, c := gatedCache(t, "v")

	leaderCtx, cancel := context.WithCancel(context.Background())
	leader := readLater(leaderCtx, c)
	<-g.entered

	joiner := readLater(context.Background(), c)
	time.Sleep(20 * time.Millisecond) // let the joiner join
	cancel()
	if err := (<-leader).err; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader err = %v, want context.Canceled", err)
	}
	<-g.entered // the joiner retried as leader
	close(g.release)
	if got := <-joiner; got.value != "v" || got.err != nil {
		t.Errorf("joiner got %q, %v; want v", got.value, got.err)
	}

	// A joiner whose own context ends stops waiting.
	c.Invalidate("k")
	g2 := newGate(srv.manager())
	c2 := secrets.NewCache(g2, time.Minute)
	go func() { _, _ = c2.Secret(context.Background(), "k") }()
	<-g2.entered
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if _, err := c2.Secret(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("joiner err = %v, want DeadlineExceeded", err)
	}
	close(g2.release)
}

// panicky is a Source whose first read, once released, panics; later reads
// go to src.
type panicky struct {
	*gate
	panicked atomic.Bool
}

func (p *panicky) Secret(ctx context.Context, name string) ([]byte, error) {
	if p.panicked.CompareAndSwap(false, true) {
		p.entered <- struct{}{}
		<-p.release
		panic("source bug")
	}
	return p.src.Secret(ctx, name)
}

// A source that panics panics the reader that began the read, as if it had
// read itself; the readers that joined get an error, and the name is not
// stuck: the next read goes upstream.
func TestCacheSourcePanics(t *testing.T) {
	srv := newUpstream(t)
	srv.put(t, "k", "v")
	p := &panicky{gate: newGate(srv.manager())}
	c := secrets.NewCache(p, time.Minute)

	leader := make(chan any)
	go func() {
		defer func() { leader <- recover() }()
		_, _ = c.Secret(context.Background(), "k")
	}()
	<-p.entered
	joiner := readLater(context.Background(), c)
	time.Sleep(20 * time.Millisecond) // let the joiner join
	close(p.release)
	if v := <-leader; v != "source bug" {
		t.Errorf("leader recovered %v, want the source's panic", v)
	}
	if err := (<-joiner).err; err == nil || err.Error() != "secrets: source panicked" {
		t.Errorf("joiner err = %v, want secrets: source panicked", err)
	}
	mustSecret(t, c, "k", "v")
}
