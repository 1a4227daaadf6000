package bench

import (
	"archive/zip"
	"bufio"
	"bytes"
	"cmp"
	"debug/elf"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// sizeArchs are the architectures BenchmarkBinarySize builds for: the
// template's (arm64) and the other one Lambda offers.
var sizeArchs = []string{"arm64", "amd64"}

// depRows is how many modules the attribution table lists.
const depRows = 12

// BenchmarkBinarySize builds each function and hello for arm64 and amd64 as
// Lambda ships them and reports their sizes, unzipped and zipped; then it
// attributes the code and data of unstripped native builds to modules. It
// measures once, whatever b.N; run it with -benchtime 1x.
func BenchmarkBinarySize(b *testing.B) {
	began := time.Now()
	var out sizeJSON
	for _, arch := range sizeArchs {
		dir := b.TempDir()
		goBuildLambda(b, arch, dir)
		var hello int64
		for _, name := range lambdaFuncs {
			bin := filepath.Join(dir, name)
			st, err := os.Stat(bin)
			if err != nil {
				b.Fatal(err)
			}
			e := sizeFuncJSON{Name: name, Arch: arch, Bytes: st.Size(), ZipBytes: zipSize(b, bin)}
			if name == "hello" {
				hello = e.Bytes
			} else {
				e.Ratio = round2dp(float64(e.Bytes) / float64(hello))
			}
			out.Functions = append(out.Functions, e)
		}
	}

	// Attribution: unstripped builds (the symbol table is all -s -w drops
	// besides DWARF) for the host's architecture.
	dir := b.TempDir()
	goBuildLambda(b, runtime.GOARCH, dir, "LAMBDA_LDFLAGS=")
	modules := packageModules(b)
	out.Deps = &sizeDepsJSON{Arch: runtime.GOARCH}
	for _, name := range lambdaFuncs {
		att, err := attribute(filepath.Join(dir, name), modules)
		if err != nil {
			b.Fatal(err)
		}
		out.Deps.Functions = append(out.Deps.Functions, att)
	}

	for _, e := range out.Functions {
		b.Run(e.Name+"/"+e.Arch, func(b *testing.B) {
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(mib(e.Bytes), "MB")
			b.ReportMetric(mib(e.ZipBytes), "zip_MB")
			if e.Name != "hello" {
				b.ReportMetric(e.Ratio, "x_hello")
			}
		})
	}
	writeLambdaSection(b, "size", sizeMarkdown(out, time.Since(began)), out)
}

type sizeJSON struct {
	Functions []sizeFuncJSON `json:"functions"`
	// Deps attributes the unstripped native builds to modules.
	Deps *sizeDepsJSON `json:"deps,omitempty"`
}

type sizeFuncJSON struct {
	Name     string  `json:"name"`
	Arch     string  `json:"arch"`
	Bytes    int64   `json:"bytes"`
	ZipBytes int64   `json:"zip_bytes"`
	Ratio    float64 `json:"ratio,omitempty"`
}

type sizeDepsJSON struct {
	Arch      string        `json:"arch"`
	Functions []attribution `json:"functions"`
}

// attribution is one binary's loadable bytes by module.
type attribution struct {
	Name string `json:"name"`
	// Total is the size of the loadable sections: what a stripped build
	// holds, less its headers and padding.
	Total int64 `json:"total"`
	// Modules maps a module path ("std" for the standard library) to the
	// bytes of its symbols plus its share of the function tables.
	Modules map[string]int64 `json:"modules"`
	// Unattributed is type descriptors, strings and other linker-made
	// data that the symbol table does not name per package.
	Unattributed int64 `json:"unattributed"`
}

// goBuildLambda builds every benchmarked function for linux/arch into dir
// (each binary named after its package) in one go build, with the
// Makefile's recipe for Lambda bootstraps, as `make build` and `sam build`
// build them; vars are further make variables ("LAMBDA_LDFLAGS=" keeps the
// symbols).
func goBuildLambda(b *testing.B, arch, dir string, vars ...string) {
	b.Helper()
	var pkgs []string
	for _, name := range lambdaFuncs {
		pkgs = append(pkgs, lambdaPkg(name))
	}
	if err := lambdarie.MakeBootstrap(arch, dir+string(filepath.Separator), vars, pkgs...); err != nil {
		b.Fatal(err)
	}
	// hello's package is bench/hello; the others are named after theirs.
	for _, name := range lambdaFuncs {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			b.Fatalf("the build did not write %s: %v", name, err)
		}
	}
}

func lambdaGoCmd(b *testing.B, args ...string) *exec.Cmd {
	b.Helper()
	gocmd, err := modroot.GoCommand()
	if err != nil {
		b.Fatal(err)
	}
	root, err := modroot.Dir()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(gocmd, args...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	return cmd
}

// zipSize is the size of a zip archive holding bin as its single entry
// "bootstrap", deflated, as `sam build` packages a provided.al2023
// function.
func zipSize(b *testing.B, bin string) int64 {
	b.Helper()
	z, err := lambdarie.Zip(bin, zip.Deflate)
	if err != nil {
		b.Fatal(err)
	}
	return int64(len(z))
}

// packageModules maps the import path of every package the functions link
// to its module path, "std" for the standard library.
func packageModules(b *testing.B) map[string]string {
	b.Helper()
	args := []string{"list", "-deps", "-tags", "lambda.norpc", "-f", "{{.ImportPath}} {{if .Module}}{{.Module.Path}}{{else}}std{{end}}"}
	for _, name := range lambdaFuncs {
		args = append(args, lambdaPkg(name))
	}
	cmd := lambdaGoCmd(b, args...)
	cmd.Env = append(cmd.Env, "GOOS=linux", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("go list: %v", err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if pkg, mod, ok := strings.Cut(sc.Text(), " "); ok {
			m[pkg] = mod
			if strings.HasPrefix(pkg, "github.com/oauthbroker/oauthbroker/") {
				m["main"] = mod // every main package is the module's own
			}
		}
	}
	return m
}

// attribute reads bin's ELF symbol table and adds each symbol's size to
// the module of its package. The function tables (.gopclntab and the
// go:func.* data) are per function but unnamed, so they are shared out in
// proportion to each module's code.
func attribute(bin string, modules map[string]string) (attribution, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return attribution{}, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return attribution{}, fmt.Errorf("%s: %w (built with -s?)", bin, err)
	}
	att := attribution{Name: filepath.Base(bin), Modules: map[string]int64{}}
	loaded := map[elf.SectionIndex]bool{}
	var text elf.SectionIndex
	var tables int64
	for i, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS {
			continue
		}
		loaded[elf.SectionIndex(i)] = true
		att.Total += int64(s.Size)
		switch s.Name {
		case ".text":
			text = elf.SectionIndex(i)
		case ".gopclntab":
			tables += int64(s.Size)
		}
	}
	code := map[string]int64{}
	var codeTotal, named int64
	for _, s := range syms {
		if !loaded[s.Section] || s.Size == 0 {
			continue
		}
		if s.Name == "go:func.*" {
			tables += int64(s.Size)
			continue
		}
		mod, ok := modules[symbolPackage(s.Name)]
		if !ok {
			continue
		}
		att.Modules[mod] += int64(s.Size)
		named += int64(s.Size)
		if s.Section == text {
			code[mod] += int64(s.Size)
			codeTotal += int64(s.Size)
		}
	}
	for mod, n := range code {
		share := tables * n / codeTotal
		att.Modules[mod] += share
		named += share
	}
	att.Unattributed = att.Total - named
	return att, nil
}

// symbolPackage returns the import path of the package a Go symbol belongs
// to ("" for linker-made symbols): "gopkg.in/yaml%2ev3.(*parser).parse" →
// "gopkg.in/yaml.v3", "go:itab.*net/http.Transport,net/http.RoundTripper"
// → "net/http", "type:.eq.[8]sync/atomic.Int64" → "sync/atomic".
func symbolPackage(sym string) string {
	s := sym
	switch {
	case strings.HasPrefix(s, "go:itab."):
		s, _, _ = strings.Cut(strings.TrimPrefix(s, "go:itab."), ",")
	case strings.HasPrefix(s, "type:."):
		s = s[strings.IndexByte(s[len("type:."):], '.')+len("type:.")+1:]
	case strings.HasPrefix(s, "type:"):
		s = strings.TrimPrefix(s, "type:")
	case strings.HasPrefix(s, "go:"):
		return ""
	}
	s = strings.TrimLeft(s, "*[]0123456789")
	if i := strings.IndexAny(s, "[( "); i >= 0 {
		s = s[:i]
	}
	slash := strings.LastIndexByte(s, '/') + 1
	dot := strings.IndexByte(s[slash:], '.')
	if dot < 0 {
		return ""
	}
	return strings.ReplaceAll(s[:slash+dot], "%2e", ".")
}

func sizeMarkdown(out sizeJSON, took time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "## Binary size\n\n| function |")
	for _, a := range sizeArchs {
		fmt.Fprintf(&sb, " %s MB | %s zip MB | × hello (%s) |", a, a, a)
	}
	sb.WriteString("\n| --- |" + strings.Repeat(" --- | --- | --- |", len(sizeArchs)) + "\n")
	var over []string
	for _, name := range lambdaFuncs {
		fmt.Fprintf(&sb, "| %s |", name)
		for _, a := range sizeArchs {
			for _, e := range out.Functions {
				if e.Name != name || e.Arch != a {
					continue
				}
				ratio := "—"
				if name != "hello" {
					ratio = fmt.Sprintf("%.2f", e.Ratio)
				}
				size := fmt.Sprintf("%.1f", mib(e.Bytes))
				if mib(e.Bytes) > sizeTargetMB {
					size = "**" + size + "**"
					over = append(over, name+" "+a)
				}
				fmt.Fprintf(&sb, " %s | %.1f | %s |", size, mib(e.ZipBytes), ratio)
			}
		}
		sb.WriteString("\n")
	}
	fmt.Fprintf(&sb, "\nBuilt by the Makefile's recipe, as `make build` and `sam build` build them: `GOOS=linux CGO_ENABLED=0 go build -trimpath -buildvcs=false -tags lambda.norpc -ldflags \"-s -w\"`; "+
		"\"zip\" is an archive with the single entry `bootstrap`, deflated, as SAM uploads it. MB are 2^20 bytes. "+
		"hello is a bare aws-lambda-go function (`bench/hello`). Building and measuring took %.0f s.\n\n", took.Seconds())
	if len(over) == 0 {
		fmt.Fprintf(&sb, "Target (≤ %d MB unzipped): **met** by every function on both architectures.\n\n", sizeTargetMB)
	} else {
		fmt.Fprintf(&sb, "Target (≤ %d MB unzipped): **not met** by %s.\n\n", sizeTargetMB, strings.Join(over, ", "))
	}
	if out.Deps != nil {
		sizeDepsMarkdown(&sb, out.Deps)
	}
	return sb.String()
}

// sizeDepsMarkdown writes the attribution table: the depRows largest
// modules (by their largest share in any function), one column per binary.
func sizeDepsMarkdown(sb *strings.Builder, d *sizeDepsJSON) {
	largest := map[string]int64{}
	for _, f := range d.Functions {
		for mod, n := range f.Modules {
			largest[mod] = max(largest[mod], n)
		}
	}
	mods := slices.Collect(maps.Keys(largest))
	slices.SortFunc(mods, func(a, b string) int { return cmp.Or(cmp.Compare(largest[b], largest[a]), strings.Compare(a, b)) })
	top := mods[:min(depRows, len(mods))]

	fmt.Fprintf(sb, "### Which dependency costs what (%s, MB)\n\n| module |", d.Arch)
	for _, f := range d.Functions {
		fmt.Fprintf(sb, " %s |", f.Name)
	}
	sb.WriteString("\n| --- |" + strings.Repeat(" --- |", len(d.Functions)) + "\n")
	row := func(label string, n func(attribution) int64) {
		fmt.Fprintf(sb, "| %s |", label)
		for _, f := range d.Functions {
			fmt.Fprintf(sb, " %.2f |", mib(n(f)))
		}
		sb.WriteString("\n")
	}
	for _, m := range top {
		row("`"+m+"`", func(f attribution) int64 { return f.Modules[m] })
	}
	row(fmt.Sprintf("%d other modules", len(mods)-len(top)), func(f attribution) int64 {
		var n int64
		for m, v := range f.Modules {
			if !slices.Contains(top, m) {
				n += v
			}
		}
		return n
	})
	row("not attributable (type descriptors, strings, itabs)", func(f attribution) int64 { return f.Unattributed })
	row("**total loadable**", func(f attribution) int64 { return f.Total })
	fmt.Fprintf(sb, "\nFrom the ELF symbol table of builds without `-s -w` (otherwise identical): each symbol's size goes to its package's module (`std` is the standard library, "+
		"its vendored golang.org/x packages included); the function tables (`.gopclntab`, `go:func.*`), which are per function but not named, are shared out in proportion to each module's code. "+
		"The total is the loadable sections, which is what the stripped binary holds.\n")
}

func mib(n int64) float64 { return round2dp(float64(n) / (1 << 20)) }

func TestSymbolPackage(t *testing.T) {
	for sym, want := range map[string]string{
		"gopkg.in/yaml%2ev3.(*parser).parse":                                                    "gopkg.in/yaml.v3",
		"github.com/aws/aws-sdk-go-v2/service/dynamodb/schemas.init.0":                          "github.com/aws/aws-sdk-go-v2/service/dynamodb/schemas",
		"github.com/oauthbroker/oauthbroker/shared/provider..gobytes.1":                         "github.com/oauthbroker/oauthbroker/shared/provider",
		"go:itab.*net/http.Transport,net/http.RoundTripper":                                     "net/http",
		"type:.eq.[16]sync/atomic.Pointer[internal/sync.node[*internal/abi.Type,interface {}]]": "sync/atomic",
		"slices.SortFunc[go.shape.[]string,go.shape.string]":                                    "slices",
		"runtime.main": "runtime",
		"main.main":    "main",
		"go:string.*":  "",
		"go:func.*":    "",
	} {
		if got := symbolPackage(sym); got != want {
			t.Errorf("symbolPackage(%q) = %q, want %q", sym, got, want)
		}
	}
}
