package broker

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// MetricsNamespace is the CloudWatch namespace of the refresh metrics.
const MetricsNamespace = "oauthbroker"

// emfMaxValues is the most values one Embedded Metric Format metric may
// carry in one record.
const emfMaxValues = 100

// refreshMetrics aggregates refresh outcomes per provider and outcome for
// CloudWatch Embedded Metric Format: one log record per pair and sweep,
// which CloudWatch turns into the metrics Refreshes (count) and
// RefreshLatency (milliseconds) with the dimensions provider and outcome —
// no PutMetricData call, no extra IAM permission. It is not safe for
// concurrent use.
type refreshMetrics struct {
	byKey map[[2]string]*metricAgg
}

type metricAgg struct {
	count     int
	latencies []float64 // at most emfMaxValues samples
}

func newRefreshMetrics() *refreshMetrics {
	return &refreshMetrics{byKey: map[[2]string]*metricAgg{}}
}

func (m *refreshMetrics) add(provider string, r result) {
	k := [2]string{provider, string(r.outcome)}
	a := m.byKey[k]
	if a == nil {
		a = &metricAgg{}
		m.byKey[k] = a
	}
	a.count++
	if len(a.latencies) < emfMaxValues && r.latency > 0 {
		a.latencies = append(a.latencies, float64(r.latency.Microseconds())/1000)
	}
}

// flush writes one EMF record per provider and outcome (keys sorted, for
// stable output) and empties m.
func (m *refreshMetrics) flush(ctx context.Context, log *slog.Logger, now time.Time) {
	keys := make([][2]string, 0, len(m.byKey))
	for k := range m.byKey {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	for _, k := range keys {
		a := m.byKey[k]
		metrics := []map[string]string{{"Name": "Refreshes", "Unit": "Count"}}
		if len(a.latencies) > 0 {
			metrics = append(metrics, map[string]string{"Name": "RefreshLatency", "Unit": "Milliseconds"})
		}
		attrs := []slog.Attr{
			slog.Any("_aws", map[string]any{
				"Timestamp": now.UnixMilli(),
				"CloudWatchMetrics": []map[string]any{{
					"Namespace":  MetricsNamespace,
					"Dimensions": [][]string{{"provider", "outcome"}},
					"Metrics":    metrics,
				}},
			}),
			slog.String("provider", k[0]),
			slog.String("outcome", k[1]),
			slog.Int("Refreshes", a.count),
		}
		if len(a.latencies) > 0 {
			attrs = append(attrs, slog.Any("RefreshLatency", a.latencies))
		}
		log.LogAttrs(ctx, slog.LevelInfo, "refresh metrics", attrs...)
	}
	clear(m.byKey)
}
