// Package modroot finds, from a test, the module's root directory, the go
// command and the tools go.mod pins.
package modroot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Dir returns the directory of the go.mod found by walking up from the
// working directory (a test's package directory).
func Dir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if st, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !st.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// ReadFile reads the file at the module-relative path elem (joined as
// filepath.Join does), such as ReadFile("events", "refresh.json").
func ReadFile(elem ...string) ([]byte, error) {
	root, err := Dir()
	if err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(append([]string{root}, elem...)...))
}

// GoCommand returns the go command: the one in PATH, else the one of the
// toolchain that built the test.
func GoCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("go command not found in PATH")
	}
	return p, nil
}

var tools sync.Map // tool name -> func() (string, error), run once

// Tool returns the path of the executable of the tool name that go.mod
// pins in its tool block (such as "local-kms"), as `go tool -n name` run at
// the module root gives it: the go command builds it once at the pinned
// version into its build cache and reuses it after, so nothing is left in
// the temporary directory. It is asked once per test process.
func Tool(name string) (string, error) {
	f, _ := tools.LoadOrStore(name, sync.OnceValues(func() (string, error) { return tool(name) }))
	return f.(func() (string, error))()
}

func tool(name string) (string, error) {
	root, err := Dir()
	if err != nil {
		return "", err
	}
	gocmd, err := GoCommand()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(gocmd, "tool", "-n", name)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n %s: %v\n%s", name, err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), nil
}
