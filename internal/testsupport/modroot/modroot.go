// Package modroot finds the module's root directory from a test.
package modroot

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
