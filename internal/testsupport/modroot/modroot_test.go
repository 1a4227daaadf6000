package modroot_test

import (
	"bytes"
	"errors"
	"io/fs"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// ReadFile reads below the module root, whatever the test's package
// directory, and reports a missing file as fs.ErrNotExist.
func TestReadFile(t *testing.T) {
	for _, tt := range []struct {
		name    string
		elem    []string
		prefix  string
		missing bool
	}{
		{name: "root file", elem: []string{"go.mod"}, prefix: "module github.com/oauthbroker/oauthbroker\n"},
		{name: "joined path", elem: []string{"events", "refresh.json"}, prefix: "{"},
		{name: "missing", elem: []string{"events", "no-such-event.json"}, missing: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := modroot.ReadFile(tt.elem...)
			if tt.missing {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("ReadFile(%q) = %v, want fs.ErrNotExist", tt.elem, err)
				}
				return
			}
			if err != nil || !bytes.HasPrefix(b, []byte(tt.prefix)) {
				t.Errorf("ReadFile(%q) = %.40q, %v; want it to start with %q", tt.elem, b, err, tt.prefix)
			}
		})
	}
}
