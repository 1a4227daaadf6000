package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

const (
	testKey    = "0123456789abcdefghijklmnopqrstuvwxyz-KEY-MATERIAL"
	testKeyset = `{"current_kid":"k1","k1":"` + testKey + `"}`
)

var testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func writeKeys(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, func() time.Time { return testNow })
	// S22: the key and the links it signs must never be logged.
	link := strings.TrimSpace(out.String())
	logcheck.Register(testKey, link)
	if u, err := url.Parse(link); err == nil {
		logcheck.Register(u.Query().Get("sig"))
	}
	return code, out.String(), errb.String()
}

// verify checks that link is a valid connect link under the test keyset.
func verify(t *testing.T, link, wantBase, wantProvider string) signing.Link {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(link, wantBase+"/connect/"+wantProvider+"?") {
		t.Fatalf("link %q", link)
	}
	ks, err := signing.ParseKeyset([]byte(testKeyset))
	if err != nil {
		t.Fatal(err)
	}
	l, err := signing.VerifyLink(ks, wantProvider, u.Query(), testNow)
	if err != nil {
		t.Fatalf("VerifyLink: %v", err)
	}
	return l
}

func TestKeysFile(t *testing.T) {
	keys := writeKeys(t, testKeyset)
	code, out, errOut := runCmd("-base-url", "https://api.example.com/", "-provider", "acme", "-connection-id", "cust-42",
		"-return-to", "https://app.example.com/done", "-scope", "read  write", "-ttl", "30m", "-keys-file", keys)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if strings.Count(out, "\n") != 1 || strings.Contains(out, testKey) {
		t.Fatalf("stdout must be the link alone: %q", out)
	}
	l := verify(t, strings.TrimSpace(out), "https://api.example.com", "acme")
	if l.ConnectionID != "cust-42" || l.ReturnTo != "https://app.example.com/done" ||
		!slices.Equal(l.Scopes, []string{"read", "write"}) || !l.Expires.Equal(testNow.Add(30*time.Minute)) {
		t.Fatalf("link %+v", l)
	}

	// Defaults: no scope, a 15-minute link.
	_, out, _ = runCmd("-base-url", "http://localhost:8787", "-provider", "sandbox", "-connection-id", "demo-1",
		"-return-to", "http://localhost:8787/app/return", "-keys-file", keys)
	l = verify(t, strings.TrimSpace(out), "http://localhost:8787", "sandbox")
	if l.Scopes != nil || !l.Expires.Equal(testNow.Add(DefaultTTL)) {
		t.Fatalf("defaults %+v", l)
	}
}

type fakeSource map[string]string

func (f fakeSource) Secret(_ context.Context, name string) ([]byte, error) {
	v, ok := f[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", secrets.ErrNotFound, name)
	}
	return []byte(v), nil
}

func TestKeysSecret(t *testing.T) {
	old := awsSecrets
	t.Cleanup(func() { awsSecrets = old })
	awsSecrets = func(context.Context) (secrets.Source, error) {
		return fakeSource{"oauthbroker/keys": testKeyset}, nil
	}
	args := []string{"-base-url", "https://api.example.com", "-provider", "acme", "-connection-id", "cust-42",
		"-return-to", "https://app.example.com/done"}
	code, out, errOut := runCmd(append(args, "-keys-secret", "oauthbroker/keys")...)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	verify(t, strings.TrimSpace(out), "https://api.example.com", "acme")

	code, out, errOut = runCmd(append(args, "-keys-secret", "other/keys")...)
	if code != 1 || out != "" || !strings.Contains(errOut, `"other/keys"`) {
		t.Fatalf("missing secret: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	keys := writeKeys(t, testKeyset)
	good := map[string]string{
		"-base-url": "https://api.example.com", "-provider": "acme", "-connection-id": "cust-42",
		"-return-to": "https://app.example.com/done", "-keys-file": keys,
	}
	args := func(edit map[string]string) []string {
		var a []string
		for k, v := range good {
			if nv, ok := edit[k]; ok {
				v = nv
			}
			if v != "" {
				a = append(a, k, v)
			}
		}
		for k, v := range edit {
			if _, ok := good[k]; !ok {
				a = append(a, k, v)
			}
		}
		return a
	}
	for _, tt := range []struct {
		name string
		edit map[string]string
		want string
	}{
		{"no base URL", map[string]string{"-base-url": ""}, "-base-url"},
		{"http base URL", map[string]string{"-base-url": "http://api.example.com"}, "-base-url"},
		{"base URL with query", map[string]string{"-base-url": "https://api.example.com/?x=1"}, "-base-url"},
		{"no provider", map[string]string{"-provider": ""}, "-provider"},
		{"bad provider", map[string]string{"-provider": "Acme!"}, "provider"},
		{"no connection id", map[string]string{"-connection-id": ""}, "-connection-id"},
		{"bad connection id", map[string]string{"-connection-id": "a b"}, "connection_id"},
		{"no return URL for a code flow", map[string]string{"-return-to": "", "-grant": "authorization_code"}, "-return-to"},
		{"http return URL", map[string]string{"-return-to": "http://app.example.com/done"}, "-return-to"},
		{"return URL with userinfo", map[string]string{"-return-to": "https://user@app.example.com/"}, "-return-to"},
		{"return URL with backslash", map[string]string{"-return-to": `https://app.example.com\@evil.example/`}, "-return-to"},
		{"javascript return URL", map[string]string{"-return-to": "javascript:alert(1)"}, "-return-to"},
		{"ttl too long", map[string]string{"-ttl": "200h"}, "-ttl"},
		{"ttl negative", map[string]string{"-ttl": "-1m"}, "-ttl"},
		{"no keys", map[string]string{"-keys-file": ""}, "exactly one"},
		{"both keys", map[string]string{"-keys-secret": "oauthbroker/keys"}, "exactly one"},
		{"unknown flag", map[string]string{"-key": "x"}, "flag provided but not defined"},
	} {
		code, out, errOut := runCmd(args(tt.edit)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", tt.name, code, out, errOut)
		}
	}
}

func TestBadKeysFileNotEchoed(t *testing.T) {
	secret := "top-secret-material-that-must-not-be-printed"
	for name, content := range map[string]string{
		"not JSON":      secret,
		"short key":     `{"current_kid":"k1","k1":"` + secret[:20] + `"}`,
		"no current":    `{"current_kid":"k9","k1":"` + secret + `"}`,
		"not an object": `["` + secret + `"]`,
	} {
		code, out, errOut := runCmd("-base-url", "https://api.example.com", "-provider", "acme", "-connection-id", "c",
			"-return-to", "https://app.example.com/", "-keys-file", writeKeys(t, content))
		if code != 1 || out != "" || errOut == "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, out, errOut)
		}
		if strings.Contains(errOut, secret[:20]) {
			t.Errorf("%s: the error echoes the key material: %q", name, errOut)
		}
	}
	code, _, errOut := runCmd("-base-url", "https://api.example.com", "-provider", "acme", "-connection-id", "c",
		"-return-to", "https://app.example.com/", "-keys-file", filepath.Join(t.TempDir(), "missing.json"))
	if code != 1 || !strings.Contains(errOut, "keys file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
}

func TestGrantAndParams(t *testing.T) {
	keys := writeKeys(t, testKeyset)
	code, out, errOut := runCmd("-base-url", "https://api.example.com", "-provider", "getresponse360", "-connection-id", "svc-1",
		"-grant", "client_credentials", "-param", "domain=mail.acme.com", "-param", "region=pl", "-keys-file", keys)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	l := verify(t, strings.TrimSpace(out), "https://api.example.com", "getresponse360")
	if l.Grant != "client_credentials" || l.ReturnTo != "" || l.Params["domain"] != "mail.acme.com" || l.Params["region"] != "pl" {
		t.Fatalf("link %+v", l)
	}
	for _, args := range [][]string{
		{"-param", "domain"}, // no value
		{"-param", "domain=a.example", "-param", "domain=b.example"}, // twice
		{"-param", "domain=a.example/x"},                             // not signable
		{"-grant", "authorization_code"},                             // needs -return-to
	} {
		all := append([]string{"-base-url", "https://api.example.com", "-provider", "p", "-connection-id", "c", "-keys-file", keys}, args...)
		if code, _, _ := runCmd(all...); code == 0 {
			t.Errorf("%v accepted", args)
		}
	}
}
