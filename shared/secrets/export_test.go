package secrets

import "time"

// SetClock replaces the Cache's clock, for tests.
func SetClock(c *Cache, now func() time.Time) { c.now = now }

// TTL reports the Cache's effective TTL, for tests.
func TTL(c *Cache) time.Duration { return c.ttl }

// Cached reports how many values the Cache holds, expired or not, for tests.
func Cached(c *Cache) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
