package templatecheck

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// samSkips are the folders `sam build` leaves out of its copy of a
// function's CodeUri (aws-lambda-builders' CustomMakeWorkflow), and the
// copy here too.
var samSkips = map[string]bool{".git": true, ".aws-sam": true}

// notBuilt are folders that SAM copies but no Go build reads (tools, build
// output, local data); the copy here leaves them out to be quick.
var notBuilt = map[string]bool{".tools": true, "build": true, ".dev": true}

// TestSamBuildBuildsWhatIsTested: `sam build` builds each function with
// the Makefile (BuildMethod makefile) from the whole module (CodeUri: .,
// so its build cache, keyed on that folder, sees every change), and what
// it builds is, byte for byte, what `make build` builds: the bootstraps
// the tests run come from the same recipe (lambdarie.Build).
//
// sam build copies the CodeUri folder, less .git and .aws-sam, to a scratch
// directory and runs `make build-<LogicalId>` there with ARTIFACTS_DIR set;
// so does this test. The builds run with -buildvcs=auto (Go's default),
// whatever this machine's go env says: a clone's `make build` must not
// stamp the commit that sam build's copy cannot see.
func TestSamBuildBuildsWhatIsTested(t *testing.T) {
	root := repoRoot(t)
	written := loadSAMFunctions(t)
	for _, f := range wantFunctions {
		fn := written[f.name]
		if fn.Metadata.BuildMethod != "makefile" {
			t.Errorf("%s: Metadata.BuildMethod = %q, want makefile (the Makefile's build-%s target)", f.name, fn.Metadata.BuildMethod, f.name)
		}
		if fn.Properties.CodeURI != "." {
			t.Errorf("%s: CodeUri = %s, want . (the module: sam build's cache is keyed on the CodeUri folder)", f.name, describe(fn.Properties.CodeURI))
		}
	}
	if t.Failed() {
		return
	}

	makecmd, err := exec.LookPath("make")
	if err != nil {
		t.Fatal("make is not in PATH (README: prerequisites)")
	}
	gocmd, err := modroot.GoCommand()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	env := []string{"GO=" + gocmd, "GOFLAGS=-buildvcs=auto"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && k != "GOFLAGS" && k != "ARTIFACTS_DIR" {
			env = append(env, kv)
		}
	}
	run := func(dir string, extraEnv []string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), makecmd, args...)
		cmd.Dir = dir
		cmd.Env = append(env, extraEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	start := time.Now()
	made := filepath.Join(tmp, "make")
	run(root, nil, "--no-print-directory", "build", "BUILD_DIR="+made)
	tookMake := time.Since(start)

	scratch := filepath.Join(tmp, "scratch")
	if err := copyModule(root, scratch); err != nil {
		t.Fatal(err)
	}
	for _, f := range wantFunctions {
		artifacts := filepath.Join(tmp, "artifacts", f.name)
		if err := os.MkdirAll(artifacts, 0o755); err != nil {
			t.Fatal(err)
		}
		run(scratch, []string{"ARTIFACTS_DIR=" + artifacts}, "--makefile", filepath.Join(scratch, "Makefile"), "build-"+f.name)

		sam := filepath.Join(artifacts, "bootstrap")
		ours := filepath.Join(made, filepath.Base(f.pkg), "bootstrap")
		a, errA := os.ReadFile(sam)
		b, errB := os.ReadFile(ours)
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v; %v", f.name, errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: sam build's bootstrap (%d bytes) differs from make build's %s (%d bytes)", f.name, len(a), ours, len(b))
		}
		checkBootstrap(t, f.name, ours)
	}
	t.Logf("make build %v; the four build-<LogicalId> targets in a copy %v", tookMake.Round(time.Millisecond), (time.Since(start) - tookMake).Round(time.Millisecond))
}

// checkBootstrap checks that bin is what Lambda's provided.al2023 runs on
// arm64 (Architectures: [arm64]): a static linux/arm64 executable, with
// no record of the machine or commit it was built from.
func checkBootstrap(t *testing.T, fn, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Errorf("%s: the bootstrap is not an ELF file: %v", fn, err)
		return
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("%s: the bootstrap is built for %v, want EM_AARCH64", fn, f.Machine)
	}
	if f.Type != elf.ET_EXEC {
		t.Errorf("%s: the bootstrap is %v, want an executable (CodeUri's package must be a main package)", fn, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: the bootstrap is dynamically linked; build it with CGO_ENABLED=0", fn)
		}
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Errorf("%s: %v", fn, err)
		return
	}
	for _, s := range info.Settings {
		switch {
		case strings.HasPrefix(s.Key, "vcs"):
			t.Errorf("%s: the bootstrap records %s=%s: sam build's copy has no .git, so the two builds differ (-buildvcs=false)", fn, s.Key, s.Value)
		case s.Key == "-trimpath" && s.Value != "true":
			t.Errorf("%s: built without -trimpath: the bootstrap holds the build machine's paths", fn)
		case s.Key == "-tags" && s.Value != "lambda.norpc":
			t.Errorf("%s: built with -tags %s, want lambda.norpc (provided.al2023 has no RPC mode)", fn, s.Value)
		}
	}
}

// copyModule copies the module at root to dst as sam build copies a
// CodeUri folder, less samSkips, and less notBuilt.
func copyModule(root, dst string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case samSkips[name] || notBuilt[name]:
			// a worktree's .git is a file
		case e.IsDir():
			err = os.CopyFS(filepath.Join(dst, name), os.DirFS(filepath.Join(root, name)))
		case e.Type().IsRegular():
			var b []byte
			if b, err = os.ReadFile(filepath.Join(root, name)); err == nil {
				err = os.WriteFile(filepath.Join(dst, name), b, 0o644)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
