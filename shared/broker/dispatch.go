package broker

import (
	"time"

	"github.com/oauthbroker/oauthbroker/shared/clock"
	"github.com/oauthbroker/oauthbroker/shared/dispatch"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// clientPause: a provider that refused the client credentials twice (with
// a fresh read of the secret between) is left alone this long, so one bad
// secret rotation marks one connection needs_reauth per pause — and
// raises the alarm — rather than every due connection.
const clientPause = 5 * time.Minute

// clock is the broker's time: Now (the record clock, faked by tests) for
// what is stored and compared with records, real time for deadlines and
// latencies (see package clock).
func (b *Broker) clock() clock.Clock { return clock.Clock{Record: b.Now} }

// gate is provider name's sending discipline in this process (its rate
// budget from the catalog, its pauses), kept across sweeps.
func (b *Broker) gate(name string) *dispatch.Gate {
	return b.gates.Get(name, func() time.Duration {
		if p, ok := b.Catalog.Get(name); ok {
			return p.RateLimit.Every()
		}
		return 0
	})
}

// observe counts a provider's answer (pe nil: a success) on its gate.
func (b *Broker) observe(name string, pe *provider.Error) {
	a := dispatch.Answer{}
	if pe != nil {
		a = dispatch.Answer{RateLimited: pe.Status == 429, RetryAfter: pe.RetryAfter, Unavailable: pe.Failure == provider.FailureUnavailable}
	}
	b.gate(name).Observe(b.clock().Now(), a)
}

// dispatchConfig is how a sweep dispatches its due keys: opt's workers,
// one whole provider call per request, no start within startReserve of
// the deadline, each provider on its gate.
func (b *Broker) dispatchConfig(opt RefreshOptions) dispatch.Config {
	return dispatch.Config{
		Workers:      opt.Workers,
		Call:         b.ProviderClient.Timeout(),
		StartReserve: startReserve,
		Gate:         b.gate,
		Clock:        b.clock(),
	}
}

// keyProvider is a due key's lane: its provider.
func keyProvider(k store.Key) string { return k.Provider }
