package repocheck

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// testOnly reports whether a package must not be linked into a binary
// users run: the testing packages and the repository's test support.
func testOnly(pkg string) bool {
	return pkg == "testing" || strings.HasPrefix(pkg, "testing/") ||
		strings.HasPrefix(pkg, module+"/internal/testsupport/")
}

// testOnlyDeps lists, for the packages matching pattern (built with tags),
// each test-only package they link and who imports it ("importer -> pkg").
func testOnlyDeps(t *testing.T, tags, pattern string) (mains []string, found []string) {
	t.Helper()
	root, err := modroot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies (install Go, https://go.dev/doc/install): %v", err)
	}
	list := func(args ...string) []string {
		cmd := exec.Command(goTool, append([]string{"list", "-tags", tags}, args...)...)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return strings.Fields(string(out))
	}
	mains = list("-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`, pattern)
	for _, line := range strings.Split(strings.Join(list("-deps", "-f", `{{.ImportPath}}:{{join .Imports ","}}`, pattern), "\n"), "\n") {
		importer, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Split(imports, ",") {
			if imp != "" && testOnly(imp) {
				found = append(found, importer+" -> "+imp)
			}
		}
	}
	slices.Sort(found)
	return mains, slices.Compact(found)
}

// TestBinariesLinkNoTestSupport: the binaries users run — the Lambda
// functions as deployed, connectlink and make dev's server — link neither
// package testing nor the repository's test support (package oauthserver
// is make dev's sandbox provider for that reason; providertest only wraps
// it for tests). The last row checks that the check finds such a link.
func TestBinariesLinkNoTestSupport(t *testing.T) {
	for _, tc := range []struct {
		name, tags, pattern string
		wantMains           bool // pattern names binaries
		wantFound           bool // a test-only package is linked
	}{
		{"functions as deployed", "lambda.norpc", "./functions/...", true, false},
		{"functions", "", "./functions/...", true, false},
		{"commands", "", "./cmd/...", true, false},
		{"check of the check: providertest", "", "./internal/testsupport/providertest", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mains, found := testOnlyDeps(t, tc.tags, tc.pattern)
			if tc.wantMains && len(mains) == 0 {
				t.Fatalf("%s holds no main package: the check checks nothing", tc.pattern)
			}
			if got := len(found) > 0; got != tc.wantFound {
				t.Errorf("%s (tags %q) links test-only packages: %v, want %v:\n%s",
					tc.pattern, tc.tags, got, tc.wantFound, strings.Join(found, "\n"))
			}
		})
	}
}
