// Package pytools finds the pinned Python tools the tests run: cfn-lint,
// the SAM translator (a library, run by a script through python3) and
// moto (its server, started by internal/testsupport/moto's launcher.py).
//
// The pins are in requirements.txt beside this file. `make tools` leaves
// them where the tests look: in <module root>/.tools/py/bin, a venv it
// creates only when the machine lacks the pinned versions, else in PATH.
// A tool that is missing, or an interpreter without every pin, fails the
// test with a message that names `make tools`: nothing is skipped.
package pytools

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// venvBin is where `make tools` installs the pins when the machine lacks
// them, relative to the module root.
const venvBin = ".tools/py/bin"

// pinsDir is this package's directory, relative to the module root.
const pinsDir = "internal/testsupport/pytools"

const howToInstall = "run `make tools` (it installs the pins of " + pinsDir + "/requirements.txt into .tools/py when the machine lacks them)"

// Command returns the path of the executable name, looked up in the venv
// of `make tools` first, then in PATH.
func Command(t testing.TB, name string) string {
	t.Helper()
	p, err := lookPath(name)
	if err != nil {
		t.Fatalf("pytools: %v; %s", err, howToInstall)
	}
	return p
}

func lookPath(name string) (string, error) {
	root, err := modroot.Dir()
	if err != nil {
		return "", err
	}
	if p := filepath.Join(root, venvBin, name); isExecutable(p) {
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s is neither in %s nor in PATH", name, venvBin)
	}
	return p, nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

var python = sync.OnceValues(func() (string, error) {
	p, err := lookPath("python3")
	if err != nil {
		return "", err
	}
	root, err := modroot.Dir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, filepath.FromSlash(pinsDir))
	out, err := exec.Command(p, filepath.Join(dir, "pins.py"), filepath.Join(dir, "requirements.txt")).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return "", errors.New(msg)
	}
	return p, nil
})

// Interpreter is Python for a caller without a test: the python3 that has
// every pin, or an error that says what is missing.
func Interpreter() (string, error) { return python() }

// Python returns a python3 that has every pin installed: the venv's if
// there is one, else the one in PATH. It fails the test otherwise.
func Python(t testing.TB) string {
	t.Helper()
	p, err := python()
	if err != nil {
		t.Fatalf("pytools: %v; %s", err, howToInstall)
	}
	return p
}

//go:embed requirements.txt
var requirements string

// Pin returns the version requirements.txt pins for the distribution
// name (such as "cfn-lint"), or "" if it pins none.
func Pin(name string) string {
	for _, line := range strings.Split(requirements, "\n") {
		line, _, _ = strings.Cut(line, "#")
		dist, version, ok := strings.Cut(strings.TrimSpace(line), "==")
		if dist, _, _ = strings.Cut(dist, "["); ok && dist == name {
			return version
		}
	}
	return ""
}
