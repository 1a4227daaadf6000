package lambdarie

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// Zip holds the binary as the one executable entry "bootstrap", stored
// with the method asked for, as Lambda wants a provided.al2023 function.
func TestZip(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "some-build-output")
	content := bytes.Repeat([]byte("\x7fELF not really a binary "), 100)
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		method uint16
	}{
		{"deflated", zip.Deflate},
		{"stored", zip.Store},
	} {
		t.Run(tt.name, func(t *testing.T) {
			z, err := Zip(bin, tt.method)
			if err != nil {
				t.Fatal(err)
			}
			r, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.File) != 1 {
				t.Fatalf("%d entries, want 1", len(r.File))
			}
			f := r.File[0]
			if f.Name != "bootstrap" || f.Method != tt.method || f.Mode().Perm() != 0o755 {
				t.Errorf("entry %q, method %d, mode %v; want bootstrap, %d, 0755", f.Name, f.Method, f.Mode(), tt.method)
			}
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content) {
				t.Errorf("entry holds %d bytes, want the binary's %d", len(got), len(content))
			}
		})
	}
	if _, err := Zip(filepath.Join(t.TempDir(), "missing"), zip.Store); err == nil {
		t.Error("Zip of a missing binary: no error")
	}
}
