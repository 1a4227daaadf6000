package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"
)

// coldStarts is how many fresh emulators BenchmarkColdStart starts per
// function ($COLDSTART_N overrides it).
var coldStarts = envInt("COLDSTART_N", 20)

// memoryInvokes is how many invokes BenchmarkMemory sends each function
// ($MEMORY_INVOKES overrides it).
var memoryInvokes = envInt("MEMORY_INVOKES", 1000)

// Targets of issue 7.
const (
	coldStartTarget = 1.3 // × hello's median
	sizeTargetMB    = 15  // unzipped bootstrap
	rssTargetMB     = 64  // peak RSS of the runtime
)

// coldStart is what BenchmarkColdStart measured for one function.
type coldStart struct {
	name string
	// total: emulator start → first answer; ready: emulator start →
	// its two ports accept; first: the first invoke (runtime start, init
	// and handler); warm: a second invoke of the same event.
	total, ready, first, warm []time.Duration
	// init is the median package initialisation by group (initGroups),
	// in ms, from GODEBUG=inittrace=1.
	init map[string]float64
}

// initRuns is how many more starts per function run with
// GODEBUG=inittrace=1 (not timed) to break package initialisation down.
const initRuns = 7

// initGroups are the groups package initialisation is summed by.
var initGroups = []string{"AWS SDK", "oauthbroker", "yaml.v3", "other"}

func initGroup(pkg string) string {
	switch {
	case strings.HasPrefix(pkg, "github.com/aws/aws-sdk-go-v2"), strings.HasPrefix(pkg, "github.com/aws/smithy-go"):
		return "AWS SDK"
	case strings.HasPrefix(pkg, "github.com/oauthbroker/oauthbroker/"):
		return "oauthbroker"
	case strings.HasPrefix(pkg, "gopkg.in/yaml"):
		return "yaml.v3"
	}
	return "other"
}

// initLine is a line GODEBUG=inittrace=1 prints for each package.
var initLine = regexp.MustCompile(`(?m)^init (\S+) @[0-9.]+ ms, ([0-9.]+) ms clock`)

// BenchmarkColdStart starts each function (and hello) coldStarts times under
// a fresh emulator and times emulator start → first answer. It measures
// once, whatever b.N, and reports per function in sub-benchmarks; run it
// with -benchtime 1x.
func BenchmarkColdStart(b *testing.B) {
	began := time.Now()
	s := newLambdaStack(b)
	for _, f := range s.funcs {
		lambdarie.Build(b, f.pkg)
	}
	res := make([]*coldStart, len(s.funcs))
	for i, f := range s.funcs {
		res[i] = &coldStart{name: f.name}
	}
	// Round -1 warms the page cache and the servers and is not counted;
	// each round starts the functions in a new random order, so drift on
	// the host is spread over all of them.
	for round := -1; round < coldStarts; round++ {
		for _, i := range rand.Perm(len(s.funcs)) {
			total, ready, first, warm := startOnce(b, s, s.funcs[i])
			if round >= 0 {
				r := res[i]
				r.total, r.ready = append(r.total, total), append(r.ready, ready)
				r.first, r.warm = append(r.first, first), append(r.warm, warm)
			}
		}
	}

	for i, f := range s.funcs {
		res[i].init = traceInit(b, s, f)
	}

	hello := medianOf(res[0].total)
	out := coldStartJSON{Arch: runtime.GOARCH, Starts: coldStarts}
	for _, r := range res {
		fj := coldStartFuncJSON{Name: r.name, MedianMS: millis(medianOf(r.total)), P90MS: millis(p90Of(r.total)),
			ReadyMS: millis(medianOf(r.ready)), FirstMS: millis(medianOf(r.first)), WarmMS: millis(medianOf(r.warm)), InitGroupsMS: r.init}
		for _, g := range initGroups {
			fj.InitMS += r.init[g]
		}
		fj.InitMS = round2dp(fj.InitMS)
		if r.name != "hello" {
			fj.Ratio = round2dp(millis(medianOf(r.total)) / millis(hello))
		}
		out.Functions = append(out.Functions, fj)
	}
	for _, fj := range out.Functions {
		b.Run(fj.Name, func(b *testing.B) {
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(fj.MedianMS, "median_ms")
			b.ReportMetric(fj.P90MS, "p90_ms")
			if fj.Name != "hello" {
				b.ReportMetric(fj.Ratio, "x_hello")
			}
		})
	}
	writeLambdaSection(b, "coldstart", coldStartMarkdown(out, time.Since(began)), out)
}

// startOnce starts f under a new emulator, invokes it twice and stops it.
func startOnce(b *testing.B, s *lambdaStack, f lambdaFunc) (total, ready, first, warm time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	fn := s.start(b, f)
	defer fn.Stop()
	t0 := time.Now()
	payload, err := fn.Invoke(ctx, f.event)
	t1 := time.Now()
	if err == nil {
		err = f.check(payload)
	}
	if err != nil {
		b.Fatalf("%s: first invoke: %v\n%s", f.name, err, fn.Logs())
	}
	if payload, err = fn.Invoke(ctx, f.event); err == nil {
		err = f.check(payload)
	}
	if err != nil {
		b.Fatalf("%s: second invoke: %v\n%s", f.name, err, fn.Logs())
	}
	return t1.Sub(fn.Started()), t0.Sub(fn.Started()), t1.Sub(t0), time.Since(t1)
}

// traceInit starts f initRuns times with GODEBUG=inittrace=1 and returns
// the median package initialisation time of each group, and of each of the
// module's own packages, in ms.
func traceInit(b *testing.B, s *lambdaStack, f lambdaFunc) map[string]float64 {
	b.Helper()
	runs := map[string][]float64{}
	for range initRuns {
		fn := s.start(b, f, "GODEBUG", "inittrace=1")
		ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
		_, err := fn.Invoke(ctx, f.event)
		cancel()
		fn.Stop()
		if err != nil {
			b.Fatalf("%s with inittrace: %v\n%s", f.name, err, fn.Logs())
		}
		// The emulator, a Go program too, traces its own initialisation
		// first; the runtime's trace starts at the last "init runtime".
		logs := fn.Logs()
		logs = logs[max(0, strings.LastIndex(logs, "init runtime @")):]
		lines := initLine.FindAllStringSubmatch(logs, -1)
		if len(lines) == 0 {
			b.Fatalf("%s: no inittrace lines in its log:\n%s", f.name, fn.Logs())
		}
		sum := map[string]float64{}
		for _, m := range lines {
			v, _ := strconv.ParseFloat(m[2], 64)
			g := initGroup(m[1])
			sum[g] += v
			if g == "oauthbroker" {
				sum[m[1]] += v
			}
		}
		for k := range sum {
			if strings.HasPrefix(k, "github.com/oauthbroker/") {
				runs[k] = append(runs[k], sum[k])
			}
		}
		for _, g := range initGroups {
			runs[g] = append(runs[g], sum[g])
		}
	}
	out := map[string]float64{}
	for g, vs := range runs {
		for len(vs) < initRuns {
			vs = append(vs, 0)
		}
		slices.Sort(vs)
		out[g] = round2dp(vs[len(vs)/2])
	}
	return out
}

type coldStartJSON struct {
	Arch      string              `json:"arch"`
	Starts    int                 `json:"starts"`
	Functions []coldStartFuncJSON `json:"functions"`
}

type coldStartFuncJSON struct {
	Name     string  `json:"name"`
	MedianMS float64 `json:"median_ms"`
	P90MS    float64 `json:"p90_ms"`
	Ratio    float64 `json:"ratio,omitempty"`
	// Medians of the parts of MedianMS, and of a second (warm) invoke.
	ReadyMS float64 `json:"ready_ms"`
	FirstMS float64 `json:"first_invoke_ms"`
	WarmMS  float64 `json:"warm_invoke_ms"`
	// InitMS is package initialisation (before main): the sum of the
	// groups' medians, and those by group.
	InitMS       float64            `json:"init_ms"`
	InitGroupsMS map[string]float64 `json:"init_groups_ms"` // also the module's own packages

}

func coldStartMarkdown(out coldStartJSON, took time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "## Cold start\n\n")
	fmt.Fprintf(&sb, "| function | median ms | p90 ms | × hello | emulator ready ms | first invoke ms | warm invoke ms | package init ms |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	var over []string
	for _, f := range out.Functions {
		ratio := "—"
		if f.Name != "hello" {
			ratio = fmt.Sprintf("%.2f", f.Ratio)
			if f.Ratio > coldStartTarget {
				ratio = "**" + ratio + "**"
				over = append(over, f.Name)
			}
		}
		fmt.Fprintf(&sb, "| %s | %.1f | %.1f | %s | %.1f | %.1f | %.1f | %.1f |\n", f.Name, f.MedianMS, f.P90MS, ratio, f.ReadyMS, f.FirstMS, f.WarmMS, f.InitMS)
	}
	fmt.Fprintf(&sb, "\nEach bootstrap (built as Lambda runs it, %s) was started %d times under a fresh Lambda Runtime Interface Emulator in a working environment "+
		"(dynalite, local-kms, Secrets Manager and EventBridge on moto, a providers file), with one realistic event: authorize a validly signed link (302), "+
		"callback a query without state (400 page), refresh the schedule's event on an empty table, token an unknown connection (404); hello is a bare aws-lambda-go function. "+
		"A start is timed from the emulator's process start to the first invoke's answer (p90 by nearest rank); the emulator starts the runtime only on that invoke, "+
		"so its own start (\"emulator ready\") and overhead are in every figure, hello's included. "+
		"\"Warm invoke\" is a second invoke of the same event (the request's own work), \"package init\" the Go package initialisation before main "+
		"(GODEBUG=inittrace=1, median of %d more starts per group). The starts took %.0f s.\n\n", out.Arch, out.Starts, initRuns, took.Seconds())

	fmt.Fprintf(&sb, "| package init ms |")
	for _, f := range out.Functions {
		fmt.Fprintf(&sb, " %s |", f.Name)
	}
	sb.WriteString("\n| --- |" + strings.Repeat(" --- |", len(out.Functions)) + "\n")
	for _, g := range initGroups {
		fmt.Fprintf(&sb, "| %s |", g)
		for _, f := range out.Functions {
			fmt.Fprintf(&sb, " %.1f |", f.InitGroupsMS[g])
		}
		sb.WriteString("\n")
	}
	sb.WriteString("\n")

	if len(over) == 0 {
		fmt.Fprintf(&sb, "Target (median ≤ %.1f× hello's): **met** by every function.\n", coldStartTarget)
		return sb.String()
	}
	hello := out.Functions[0]
	var extra, initExtra, sdk []float64
	for _, f := range out.Functions[1:] {
		extra = append(extra, (f.FirstMS-f.WarmMS)-(hello.FirstMS-hello.WarmMS))
		initExtra = append(initExtra, f.InitMS-hello.InitMS)
		sdk = append(sdk, f.InitGroupsMS["AWS SDK"])
	}
	span := func(xs []float64) string { return fmt.Sprintf("%.0f–%.0f ms", slices.Min(xs), slices.Max(xs)) }
	fmt.Fprintf(&sb, "Target (median ≤ %.1f× hello's): **not met** by %s. "+
		"Leaving the request's own work (warm invoke) aside, a function's first invoke costs %s more than hello's; "+
		"its package initialisation alone takes %s more than hello's, %s of it in the AWS SDK, whose generated packages build a value per API shape and endpoint table of every linked service "+
		"(DynamoDB, KMS, EventBridge, Secrets Manager, and STS, SSO, SSO OIDC and Sign-In, which `config.LoadDefaultConfig` links for its credential chain). "+
		"%sThe rest is setup (catalog, AWS clients) and the first AWS calls. With hello's start at %.0f ms, 1.3× leaves %.0f ms for all of it.\n",
		coldStartTarget, strings.Join(over, ", "), span(extra), span(initExtra), span(sdk), ownInit(out.Functions[1:]), hello.MedianMS, 0.3*hello.MedianMS)
	return sb.String()
}

// ownInit names the module's own package that takes longest to
// initialise, over all functions.
func ownInit(fs []coldStartFuncJSON) string {
	pkg, worst := "", 0.0
	for _, f := range fs {
		for k, v := range f.InitGroupsMS {
			if strings.HasPrefix(k, "github.com/") && v > worst {
				pkg, worst = k, v
			}
		}
	}
	if pkg == "" {
		return ""
	}
	return fmt.Sprintf("The module's own largest is `%s` (%.1f ms). ", strings.TrimPrefix(pkg, "github.com/oauthbroker/oauthbroker/"), worst)
}

// ---------------------------------------------------------------------------
// Memory

// BenchmarkMemory sends each function memoryInvokes invokes of its event
// under the emulator and reads the runtime's peak RSS (VmHWM). It measures
// once, whatever b.N; run it with -benchtime 1x.
func BenchmarkMemory(b *testing.B) {
	began := time.Now()
	s := newLambdaStack(b)
	out := memoryJSON{Invocations: memoryInvokes}
	for _, f := range s.funcs {
		out.Functions = append(out.Functions, measureMemory(b, s, f))
	}
	for _, m := range out.Functions {
		b.Run(m.Name, func(b *testing.B) {
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(m.PeakRSSMB, "peak_rss_MB")
		})
	}
	writeLambdaSection(b, "memory", memoryMarkdown(out, time.Since(began)), out)
}

type memoryJSON struct {
	Invocations int              `json:"invocations"`
	Functions   []memoryFuncJSON `json:"functions"`
}

type memoryFuncJSON struct {
	Name      string  `json:"name"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// AfterFirstMB is the peak after the first invoke; InvokeMS the mean
	// time of one invoke through the emulator.
	AfterFirstMB float64 `json:"after_first_mb"`
	InvokeMS     float64 `json:"invoke_ms"`
}

func measureMemory(b *testing.B, s *lambdaStack, f lambdaFunc) memoryFuncJSON {
	b.Helper()
	fn := s.start(b, f)
	defer fn.Stop()
	var pid int
	var first float64
	t0 := time.Now()
	for i := range memoryInvokes {
		ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
		payload, err := fn.Invoke(ctx, f.event)
		cancel()
		if err == nil {
			err = f.check(payload)
		}
		if err != nil {
			b.Fatalf("%s: invoke %d: %v\n%s", f.name, i+1, err, fn.Logs())
		}
		if i == 0 {
			if pid = fn.RuntimePID(); pid == 0 {
				b.Fatalf("%s: no runtime process after the first invoke", f.name)
			}
			first = peakRSS(b, pid)
		}
	}
	took := time.Since(t0)
	if now := fn.RuntimePID(); now != pid {
		b.Fatalf("%s: the runtime was restarted during the invokes (pid %d, now %d)", f.name, pid, now)
	}
	return memoryFuncJSON{Name: f.name, PeakRSSMB: round2dp(peakRSS(b, pid)), AfterFirstMB: round2dp(first),
		InvokeMS: round2dp(millis(took) / float64(memoryInvokes))}
}

// peakRSS returns the process's VmHWM in MB (2^20 bytes).
func peakRSS(b *testing.B, pid int) float64 {
	b.Helper()
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

func memoryMarkdown(out memoryJSON, took time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "## Memory\n\n| function | peak RSS MB | after the first invoke MB | ms per invoke |\n| --- | --- | --- | --- |\n")
	var over []string
	for _, m := range out.Functions {
		peak := fmt.Sprintf("%.1f", m.PeakRSSMB)
		if m.PeakRSSMB > rssTargetMB {
			peak = "**" + peak + "**"
			over = append(over, m.Name)
		}
		fmt.Fprintf(&sb, "| %s | %s | %.1f | %.2f |\n", m.Name, peak, m.AfterFirstMB, m.InvokeMS)
	}
	fmt.Fprintf(&sb, "\nEach function ran under one emulator (one execution environment) and handled %d invokes of its cold-start event, one after another; "+
		"the figure is VmHWM, the peak resident set, of the runtime process (the bootstrap, not the emulator) from /proc/<pid>/status after the last invoke. "+
		"Lambda's \"Max Memory Used\" counts the whole sandbox, so it reads a little higher. The measurement took %.0f s.\n\n", out.Invocations, took.Seconds())
	if len(over) == 0 {
		fmt.Fprintf(&sb, "Target (≤ %d MB, so a 128 MB function has room to spare): **met** by every function.\n", rssTargetMB)
	} else {
		fmt.Fprintf(&sb, "Target (≤ %d MB): **not met** by %s.\n", rssTargetMB, strings.Join(over, ", "))
	}
	return sb.String()
}

// ---------------------------------------------------------------------------
// Output and statistics

// writeLambdaSection writes <section>.md and <section>.json into
// $BENCH_OUT for bench/report; without BENCH_OUT it only logs the markdown.
func writeLambdaSection(b *testing.B, section, md string, v any) {
	b.Helper()
	dir := os.Getenv("BENCH_OUT")
	if dir == "" {
		b.Log("\n" + md)
		return
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for name, data := range map[string][]byte{section + ".md": []byte(md), section + ".json": append(js, '\n')} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// medianOf is the median (the mean of the middle two of an even count).
func medianOf(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	if len(s) == 0 {
		return 0
	}
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// p90Of is the nearest-rank 90th percentile.
func p90Of(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	if len(s) == 0 {
		return 0
	}
	return s[int(math.Ceil(0.9*float64(len(s))))-1]
}

func millis(d time.Duration) float64 { return round2dp(float64(d) / float64(time.Millisecond)) }

func round2dp(x float64) float64 { return math.Round(x*100) / 100 }
