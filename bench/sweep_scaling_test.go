package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// scalingWorkers are the worker counts BenchmarkSweepScaling measures.
var scalingWorkers = []int{1, 2, 4, 8, 16, 32}

// defaultWorkers is the broker's default REFRESH_WORKERS: the point the
// cost figures use.
const defaultWorkers = 8

// BenchmarkSweepScaling measures refresh throughput against the number of
// workers C with a provider answering in providerLatency, next to the
// Little's-law ceiling C / latency (a worker can have one provider call
// in flight), and next to what DynamoDB (dynalite on this host) allows:
// the ddb-bound case, measured first in the same run. Each case refreshes
// max(100, 50·C) connections, about two seconds of sweeping at the
// ceiling. With BENCH_OUT set it writes sweep.json and sweep.md for
// docs/performance.md. Run with -benchtime 1x.
func BenchmarkSweepScaling(b *testing.B) {
	cases := []sweepCase{{name: "ddb-bound/C=16/delay=0", workers: 16, conns: 2000}}
	for _, c := range scalingWorkers {
		cases = append(cases, sweepCase{name: fmt.Sprintf("C=%d", c), workers: c, delay: providerLatency, conns: max(100, 50*c)})
	}
	var results []*sweepResult
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { results = append(results, runSweepCase(b, c)) })
	}
	if len(results) != len(cases) {
		return // a case failed; it said why
	}
	if err := writeSweepReport(os.Getenv("BENCH_OUT"), results); err != nil {
		b.Fatal(err)
	}
}

// sweepPoint is one worker count in sweep.json.
type sweepPoint struct {
	Workers       int     `json:"workers"`
	PerS          float64 `json:"per_s"`
	CeilingPerS   float64 `json:"ceiling_per_s"`
	DDBReqPerConn float64 `json:"ddb_req_per_conn"`
}

// sweepReport is sweep.json (see /bench/report).
type sweepReport struct {
	LatencyMS          float64      `json:"latency_ms"`
	DDBBoundPerS       float64      `json:"ddb_bound_per_s"`
	Points             []sweepPoint `json:"points"`
	DefaultWorkers     int          `json:"default_workers"`
	LambdaMSPerRefresh float64      `json:"lambda_ms_per_refresh"`
	DDBReqPerConn      float64      `json:"ddb_req_per_conn"`
}

// writeSweepReport writes sweep.json and sweep.md into dir ("" writes
// nothing). results[0] is the ddb-bound case.
func writeSweepReport(dir string, results []*sweepResult) error {
	rep := sweepReport{LatencyMS: float64(providerLatency.Milliseconds()), DDBBoundPerS: results[0].throughput(), DefaultWorkers: defaultWorkers}
	var md strings.Builder
	md.WriteString("## Refresh sweep throughput\n\n")
	fmt.Fprintf(&md, "A sweep on DynamoDB (dynalite) against a provider that answers every token request in %d ms, "+
		"C workers, max(100, 50·C) due connections per case. The Little's-law ceiling is C ÷ %d ms: with one provider call "+
		"in flight per worker, throughput = concurrency ÷ latency (the lease and the save overlap other workers' provider "+
		"calls, so they do not lower it). For context, the ddb-bound case (C=16, a provider that answers at once) made "+
		"%.0f refreshes/s in the same run: dynalite, the benchmark and the provider share this host's 2 cores, so the "+
		"high-C points are bounded by the host, not by the broker.\n\n",
		providerLatency.Milliseconds(), providerLatency.Milliseconds(), rep.DDBBoundPerS)
	md.WriteString("![refresh throughput against workers](performance-sweep.svg)\n\n")
	md.WriteString("| workers C | refreshed/s | ceiling C ÷ latency | × ceiling | DynamoDB req/conn |\n| ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results[1:] {
		all, _ := r.ddbTotal()
		p := sweepPoint{
			Workers: r.c.workers, PerS: r.throughput(), CeilingPerS: r.c.ceiling(),
			DDBReqPerConn: float64(all) / float64(r.sum.Refreshed),
		}
		rep.Points = append(rep.Points, p)
		fmt.Fprintf(&md, "| %d | %.1f | %.0f | %.3f | %.3f |\n", p.Workers, p.PerS, p.CeilingPerS, p.PerS/p.CeilingPerS, p.DDBReqPerConn)
		if p.Workers == defaultWorkers {
			// The refresh function is busy for the sweep's wall time: per
			// connection that is 1 / throughput.
			rep.LambdaMSPerRefresh = 1000 / p.PerS
			rep.DDBReqPerConn = p.DDBReqPerConn
		}
	}
	fmt.Fprintf(&md, "\nAt the default %d workers a refreshed connection costs %.1f ms of the refresh function's wall time "+
		"and %.3f DynamoDB requests (lease `UpdateItem` + result `PutItem`, plus the amortised due-index queries).\n",
		defaultWorkers, rep.LambdaMSPerRefresh, rep.DDBReqPerConn)
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "sweep.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sweep.md"), []byte(md.String()), 0o644)
}
