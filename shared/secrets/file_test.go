package secrets_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/secrets"
)

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// Set the mtime explicitly: coarse filesystem timestamps must not hide
	// an edit from the test.
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	writeFile(t, path, `{
		"app/string": "s3cr3t \"quoted\" \u00e9",
		"app/object": {"client_id": "id", "client_secret": "s3cr3t"},
		"app/number": 42,
		"app/null": null
	}`, time.Now().Add(-time.Hour))
	f := secrets.NewFile(path)

	tests := []struct {
		name     string
		want     string
		notFound bool
	}{
		{name: "app/string", want: `s3cr3t "quoted" é`},
		{name: "app/object", want: `{"client_id": "id", "client_secret": "s3cr3t"}`},
		{name: "app/number", want: `42`},
		{name: "app/null", notFound: true},
		{name: "app/missing", notFound: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.Secret(context.Background(), tt.name)
			if tt.notFound {
				if !errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), tt.name) {
					t.Fatalf("Secret = %q, %v; want ErrNotFound naming the secret", got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Secret = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestFileReloadsOnEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.json")
	writeFile(t, path, `{"key": "old"}`, time.Now().Add(-time.Hour))
	f := secrets.NewFile(path)
	ctx := context.Background()

	if got, err := f.Secret(ctx, "key"); err != nil || string(got) != "old" {
		t.Fatalf("Secret = %q, %v", got, err)
	}
	writeFile(t, path, `{"key": "new", "added": "yes"}`, time.Now())
	if got, err := f.Secret(ctx, "key"); err != nil || string(got) != "new" {
		t.Fatalf("after edit: Secret = %q, %v; want new", got, err)
	}
	if got, err := f.Secret(ctx, "added"); err != nil || string(got) != "yes" {
		t.Fatalf("after edit: added = %q, %v", got, err)
	}

	// A broken edit is an error that does not quote the file; fixing it
	// recovers.
	writeFile(t, path, `{"key": "s3cr3t-half-written`, time.Now().Add(time.Second))
	_, err := f.Secret(ctx, "key")
	if err == nil || errors.Is(err, secrets.ErrNotFound) || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("broken file: err = %v; want an error not quoting the content", err)
	}
	writeFile(t, path, `{"key": "fixed"}`, time.Now().Add(2*time.Second))
	if got, err := f.Secret(ctx, "key"); err != nil || string(got) != "fixed" {
		t.Fatalf("after fix: Secret = %q, %v", got, err)
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string // "" means no file
		check   func(error) bool
	}{
		{"no file", "", func(err error) bool { return errors.Is(err, fs.ErrNotExist) && !errors.Is(err, secrets.ErrNotFound) }},
		{"array", `["s3cr3t"]`, func(err error) bool { return strings.Contains(err.Error(), "want a JSON object") }},
		{"null", `null`, func(err error) bool { return strings.Contains(err.Error(), "want a JSON object") }},
		{"syntax", `{"k": s3cr3t}`, func(err error) bool { return strings.Contains(err.Error(), "offset") }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".json")
			if tt.content != "" {
				writeFile(t, path, tt.content, time.Now().Add(time.Duration(i)*time.Second))
			}
			_, err := secrets.NewFile(path).Secret(context.Background(), "k")
			if err == nil || !tt.check(err) || strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
