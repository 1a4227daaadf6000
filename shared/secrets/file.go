package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// File is a Source for local development: a JSON object mapping secret names
// to values, for example
//
//	{
//	  "oauthbroker/provider/google": {"client_id": "…", "client_secret": "…"},
//	  "oauthbroker/signing-key": "…"
//	}
//
// A string value is returned as its bytes; any other JSON value as its raw
// JSON. A missing name, or a null value, is ErrNotFound.
//
// File re-reads the file whenever its modification time or size changes, so
// edits take effect without a restart.
type File struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	loaded  bool
	values  map[string]json.RawMessage
}

// NewFile returns a File reading path. The file is first read on use.
func NewFile(path string) *File {
	return &File{path: path}
}

// Secret implements Source.
func (f *File) Secret(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	values, err := f.load()
	if err != nil {
		return nil, err
	}
	raw, ok := values[name]
	if !ok || string(raw) == "null" {
		return nil, fmt.Errorf("%w: %q in %s", ErrNotFound, name, f.path)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("secrets: %q in %s: invalid string", name, f.path)
		}
		return []byte(s), nil
	}
	return bytes.Clone(raw), nil
}

// load returns the parsed file, re-reading it if it changed since last time.
func (f *File) load() (map[string]json.RawMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if f.loaded && fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return f.values, nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	var values map[string]json.RawMessage
	if err := json.Unmarshal(data, &values); err != nil {
		// The decoder's message may quote file content: report only where.
		return nil, fmt.Errorf("secrets: %s: %s", f.path, describeJSONError(err, "a JSON object"))
	}
	if values == nil { // the file holds null
		return nil, fmt.Errorf("secrets: %s: want a JSON object", f.path)
	}
	f.values, f.modTime, f.size, f.loaded = values, fi.ModTime(), fi.Size(), true
	return values, nil
}

// describeJSONError describes a json.Unmarshal error without quoting the
// input, which may be secret.
func describeJSONError(err error, want string) string {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("invalid JSON at offset %d", se.Offset)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field != "" {
			return fmt.Sprintf("field %q: want %s, found a JSON %s", te.Field, te.Type, te.Value)
		}
		return fmt.Sprintf("want %s, found a JSON %s", want, te.Value)
	}
	return "invalid JSON"
}
