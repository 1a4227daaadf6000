package secrets

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// MaxTTL is the longest a Cache keeps a value, and its default TTL: a rotated
// secret reaches every warm Lambda instance within MaxTTL.
const MaxTTL = 5 * time.Minute

// Cache is a Source that keeps values read from another Source for a TTL.
//
// Only successful reads are cached; errors, including ErrNotFound, are not.
// Concurrent reads of a name that is not cached share a single upstream
// read. A Cache is safe for concurrent use.
type Cache struct {
	src Source
	ttl time.Duration
	now func() time.Time // for tests

	// loads shares an upstream read of a name among its readers. It is
	// joined with mu held: a load keeps its value under mu before it
	// ends, so a reader either finds the value or joins the load.
	loads singleflight.Group

	mu      sync.Mutex
	entries map[string]cacheEntry
	// gens counts each name's Invalidate calls: a load that began before
	// the last one does not keep its value.
	gens map[string]uint64
}

type cacheEntry struct {
	value   []byte
	expires time.Time
}

// NewCache returns a Cache reading through src. A ttl <= 0 means MaxTTL; a
// ttl above MaxTTL is clamped to it.
func NewCache(src Source, ttl time.Duration) *Cache {
	if ttl <= 0 || ttl > MaxTTL {
		ttl = MaxTTL
	}
	return &Cache{
		src:     src,
		ttl:     ttl,
		now:     time.Now,
		entries: make(map[string]cacheEntry),
		gens:    make(map[string]uint64),
	}
}

// Secret implements Source. The returned slice is the caller's own.
//
// The load runs with the context of the reader that began it, and a
// reader stops waiting when its own context ends. A reader that joined a
// load ended by its leader's context, while its own context is live, does
// not inherit that cancellation: it reads again, possibly as the leader.
func (c *Cache) Secret(ctx context.Context, name string) ([]byte, error) {
	for {
		c.mu.Lock()
		if e, ok := c.entries[name]; ok {
			if c.now().Before(e.expires) {
				c.mu.Unlock()
				return bytes.Clone(e.value), nil
			}
			delete(c.entries, name)
		}
		gen := c.gens[name]
		var led bool // set if this reader's function is the load; read after its result
		ch := c.loads.DoChan(name, func() (any, error) {
			led = true
			return c.load(ctx, name, gen)
		})
		c.mu.Unlock()

		var r singleflight.Result
		select {
		case r = <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var p *sourcePanic
		switch {
		case led && errors.As(r.Err, &p):
			panic(p.value) // as if the source had panicked in this goroutine
		case !led && isContextErr(r.Err) && ctx.Err() == nil:
			continue
		case r.Err != nil:
			return nil, r.Err
		}
		return bytes.Clone(r.Val.([]byte)), nil
	}
}

// load reads name upstream and keeps the value, unless name was
// invalidated since the load began (its gens count then is gen).
func (c *Cache) load(ctx context.Context, name string, gen uint64) (any, error) {
	value, err := c.read(ctx, name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[name] == gen {
		now := c.now()
		// Expired values leave memory when anything new arrives, not
		// only when their own name is read again.
		for n, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, n)
			}
		}
		c.entries[name] = cacheEntry{value: bytes.Clone(value), expires: now.Add(c.ttl)}
	}
	return value, nil
}

// read is src.Secret with a panic turned into a *sourcePanic: the load
// runs in a goroutine of its own, where a panic could not be recovered,
// and its readers must not wait for ever.
func (c *Cache) read(ctx context.Context, name string) (value []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			value, err = nil, &sourcePanic{v}
		}
	}()
	return c.src.Secret(ctx, name)
}

// sourcePanic is the error of a load whose source panicked: the readers
// that joined it get this error, the reader that began it panics again.
type sourcePanic struct{ value any }

func (*sourcePanic) Error() string { return "secrets: source panicked" }

// Invalidator is implemented by a Source that keeps values, such as
// Cache: a caller that has reason to believe a value changed upstream (the
// provider refused the client secret, a link names an unknown signing key)
// asserts it on its Source to read past the kept value once.
type Invalidator interface {
	// Invalidate makes the next read of name go upstream.
	Invalidate(name string)
}

var _ Invalidator = (*Cache)(nil)

// Invalidate drops name from the cache: the next read goes upstream. A read
// already in flight is not shared with later callers nor cached.
func (c *Cache) Invalidate(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, name)
	c.gens[name]++
	c.loads.Forget(name)
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
