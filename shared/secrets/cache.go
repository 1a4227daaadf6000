package secrets

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"
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

	mu      sync.Mutex
	entries map[string]cacheEntry
	calls   map[string]*cacheCall
}

type cacheEntry struct {
	value   []byte
	expires time.Time
}

// cacheCall is an upstream read in flight; done is closed once value and err
// are set.
type cacheCall struct {
	done  chan struct{}
	value []byte
	err   error
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
		calls:   make(map[string]*cacheCall),
	}
}

// Secret implements Source. The returned slice is the caller's own.
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
		call, joined := c.calls[name]
		if !joined {
			call = &cacheCall{done: make(chan struct{})}
			c.calls[name] = call
			c.mu.Unlock()
			c.fetch(ctx, name, call)
		} else {
			c.mu.Unlock()
		}

		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// A joiner whose own context is still live does not inherit the
		// leader's cancellation: it tries again, possibly as the leader.
		if joined && isContextErr(call.err) && ctx.Err() == nil {
			continue
		}
		if call.err != nil {
			return nil, call.err
		}
		return bytes.Clone(call.value), nil
	}
}

// fetch reads name upstream for call and publishes the result.
func (c *Cache) fetch(ctx context.Context, name string, call *cacheCall) {
	// If src panics, joiners get this error and the name is not stuck.
	call.err = errors.New("secrets: source panicked")
	defer func() {
		c.mu.Lock()
		if c.calls[name] == call { // else invalidated while in flight: not cached
			delete(c.calls, name)
			if call.err == nil {
				now := c.now()
				// Expired values leave memory when anything new arrives,
				// not only when their own name is read again.
				for n, e := range c.entries {
					if !now.Before(e.expires) {
						delete(c.entries, n)
					}
				}
				c.entries[name] = cacheEntry{value: bytes.Clone(call.value), expires: now.Add(c.ttl)}
			}
		}
		c.mu.Unlock()
		close(call.done)
	}()
	call.value, call.err = c.src.Secret(ctx, name)
}

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
	delete(c.calls, name)
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
