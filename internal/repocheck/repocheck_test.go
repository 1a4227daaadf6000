// Package repocheck holds tests of the repository itself rather than of
// one package: what it refers to and what its README promises.
package repocheck

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/pytools"
)

// skipDirs are not part of the repository: tools, build output, local
// data.
var skipDirs = map[string]bool{".git": true, ".tools": true, "build": true, ".dev": true, ".aws-sam": true, "node_modules": true}

// relShared finds relative paths that climb into a "shared" directory.
var relShared = regexp.MustCompile(`(?:\.\./)+shared/`)

// machinePaths are the roots of absolute paths on the machines the product
// is built on; none belongs in a file users clone. They are joined here
// rather than written out, so that this file does not name them itself.
var machinePaths = []string{"/" + "work" + "/", "/" + "home" + "/"}

// TestNoReferenceOutsideRepository: no file names a path outside the
// repository — a relative path into a "shared" directory that is not the
// repository's own, or a machine's absolute path. What users need is stated in the repository itself.
func TestNoReferenceOutsideRepository(t *testing.T) {
	root, err := modroot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDirs[d.Name()] && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || d.Name() == ".git" { // a worktree's .git file is git's
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil || bytes.IndexByte(b, 0) >= 0 {
			return err // binary files name nothing
		}
		checked++
		rel, _ := filepath.Rel(root, path)
		for _, loc := range relShared.FindAllStringIndex(string(b), -1) {
			// The whole path as written, up to a space, quote or bracket.
			end := loc[1]
			for end < len(b) && !strings.ContainsRune(" \t\n\"'`)]>,;:", rune(b[end])) {
				end++
			}
			m := strings.TrimRight(string(b[loc[0]:end]), ".")
			target := filepath.Join(filepath.Dir(path), m)
			r, err := filepath.Rel(root, target)
			if _, serr := os.Stat(target); err != nil || strings.HasPrefix(r, "..") || serr != nil {
				t.Errorf("%s names %q, which is not in the repository", rel, m)
			}
		}
		for _, p := range machinePaths {
			if bytes.Contains(b, []byte(p)) {
				t.Errorf("%s names the machine path %q", rel, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files: the walk missed the repository", checked)
	}
}

// TestReadmeListsTestPrerequisites: the README names every prerequisite
// of `make test` and what installs it.
func TestReadmeListsTestPrerequisites(t *testing.T) {
	readme, err := modroot.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := modroot.ReadFile(".ci", "run")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ name, installedBy string }{
		{"Go", "go.dev/dl"},
		{"gcc", "apt-get install gcc"},
		{"make", "apt-get install make"},
		{"Node.js and npm", "apt-get install nodejs npm"},
		{"Chromium", "apt-get install chromium"},
		{"Python 3", "apt-get install python3 python3-venv python3-pip"},
		{"moto, cfn-lint and the SAM translator", "installed by `make test`"},
	} {
		row := ""
		for _, line := range strings.Split(string(readme), "\n") {
			if strings.HasPrefix(line, "| "+p.name) {
				row = line
			}
		}
		if row == "" || !strings.Contains(row, p.installedBy) {
			t.Errorf("README's prerequisites table has no row for %s saying %q installs it", p.name, p.installedBy)
		}
	}
	// The Python tools' row names the pinned versions.
	for _, dist := range []string{"moto", "cfn-lint", "aws-sam-translator"} {
		pin := pytools.Pin(dist)
		if pin == "" || !strings.Contains(string(readme), dist+" "+pin) {
			t.Errorf("README does not name %s %s, the version pinned in internal/testsupport/pytools/requirements.txt", dist, pin)
		}
	}
	// What the README says .ci/run installs, it does.
	for _, pkg := range []string{"need_apt+=(make)", "need_apt+=(gcc)", "need_apt+=(nodejs npm)", "need_apt+=(chromium)", "need_apt+=(python3)", "need_apt+=(python3-venv python3-pip)"} {
		if !bytes.Contains(ci, []byte(pkg)) {
			t.Errorf(".ci/run does not install %s", pkg)
		}
	}
}
