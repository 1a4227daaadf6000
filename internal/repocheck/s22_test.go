package repocheck

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

const module = "github.com/oauthbroker/oauthbroker"

// wrappers are the functions a TestMain may call to run its tests through
// Run, by import path. Each one but logcheck's own is checked to call Run.
var wrappers = map[string]struct {
	file  string // the wrapper's source, from the module root
	funcs []string
}{
	module + "/internal/testsupport/logcheck": {"", []string{"Main", "Run"}},
	module + "/internal/testsupport/dynalite": {"internal/testsupport/dynalite/dynalite.go", []string{"Main"}},
	module + "/internal/testsupport/moto":     {"internal/testsupport/moto/moto.go", []string{"Main"}},
}

// TestS22_EveryTestPackageChecksLogs fails for every package of the
// repository that has tests whose TestMain does not run them through
// logcheck: the root module's and those of the modules nested in it
// (shared/client, logcheck itself), whose import paths follow their
// directories.
func TestS22_EveryTestPackageChecksLogs(t *testing.T) {
	root, err := modroot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	for path, w := range wrappers {
		if w.file != "" && !callsRun(t, filepath.Join(root, w.file), "Main") {
			t.Errorf("%s.Main does not call logcheck.Run (%s)", path, w.file)
		}
	}

	dirs := testDirs(t, root)
	if len(dirs) < 10 {
		t.Fatalf("found only %d test packages under %s: is the walk broken?", len(dirs), root)
	}
	for _, rel := range dirs {
		ok, why := checksLogs(t, filepath.Join(root, rel), module+"/"+filepath.ToSlash(rel))
		if !ok {
			t.Errorf("%s: %s; add main_test.go with func TestMain(m *testing.M) { logcheck.Main(m) } (S22)", rel, why)
		}
	}
}

// testDirs lists the repository's directories holding _test.go files,
// relative to root, skipping what the go command skips (testdata, vendor,
// dot and underscore directories). Nested modules are walked too.
func testDirs(t *testing.T, root string) []string {
	set := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (name == "testdata" || name == "vendor" || name == "node_modules" ||
				strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), "_test.go") && !strings.HasPrefix(d.Name(), ".") && !strings.HasPrefix(d.Name(), "_") {
			rel, _ := filepath.Rel(root, filepath.Dir(p))
			set[rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// checksLogs reports whether the package in dir has a TestMain that calls
// one of the wrappers, and if not, why.
func checksLogs(t *testing.T, dir, importPath string) (bool, string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	fset := token.NewFileSet()
	found := false
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Name.Name != "TestMain" || fn.Body == nil {
				continue
			}
			found = true
			if callsWrapper(f, fn.Body, importPath) {
				return true, ""
			}
		}
	}
	if found {
		return false, "TestMain does not call logcheck.Main, logcheck.Run, dynalite.Main or moto.Main"
	}
	return false, "no TestMain"
}

// callsWrapper reports whether body calls a wrapper; importPath is the
// package the file belongs to.
func callsWrapper(f *ast.File, body *ast.BlockStmt, importPath string) bool {
	return calls(f, body, importPath, func(path, fn string) bool {
		for _, w := range wrappers[path].funcs {
			if w == fn {
				return true
			}
		}
		return false
	})
}

// callsRun reports whether the function fn in file calls logcheck.Run.
func callsRun(t *testing.T, file, fn string) bool {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: not found", file)
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		if d, ok := decl.(*ast.FuncDecl); ok && d.Recv == nil && d.Name.Name == fn && d.Body != nil {
			return calls(f, d.Body, "", func(path, name string) bool {
				return path == module+"/internal/testsupport/logcheck" && name == "Run"
			})
		}
	}
	return false
}

// calls reports whether body calls a function for which match(import path,
// name) is true.
func calls(f *ast.File, body *ast.BlockStmt, importPath string, match func(path, fn string) bool) bool {
	names := map[string]string{} // local name -> import path
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		name := path[strings.LastIndex(path, "/")+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		names[name] = path
	}
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return !found
		}
		switch fun := call.Fun.(type) {
		case *ast.SelectorExpr:
			if x, ok := fun.X.(*ast.Ident); ok && names[x.Name] != "" && match(names[x.Name], fun.Sel.Name) {
				found = true
			}
		case *ast.Ident: // a function of the file's own package
			if !strings.HasSuffix(f.Name.Name, "_test") && match(importPath, fun.Name) {
				found = true
			}
		}
		return !found
	})
	return found
}
