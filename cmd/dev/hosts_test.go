package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// TestHostAllowlist: the dev server answers only requests that name it by
// a loopback name and its own port, so that a DNS-rebinding page (a name
// of the attacker's that resolves to 127.0.0.1) cannot read the demo's
// freshly signed links or anything else it serves.
func TestHostAllowlist(t *testing.T) {
	s := startServer(t, t.TempDir(), &testClock{}, io.Discard)
	port := strconv.Itoa(s.listener.Addr().(*net.TCPAddr).Port)

	paths := []string{"/", "/app/return?connection_id=demo-x", "/sandbox/", "/connect/sandbox", "/connections/sandbox/demo-x/token"}
	tests := []struct {
		host string
		ok   bool
	}{
		{"localhost:" + port, true},
		{"127.0.0.1:" + port, true},
		{"[::1]:" + port, true},
		{"LocalHost:" + port, true}, // host names are case-insensitive

		{"", false},                               // no Host at all
		{"localhost", false},                      // no port
		{"127.0.0.1", false},                      // no port
		{"[::1]", false},                          // no port
		{"localhost:1", false},                    // another port
		{"localhost:" + port + "0", false},        // another port
		{"evil.example:" + port, false},           // DNS rebinding
		{"evil.example", false},                   //
		{"localhost.evil.example:" + port, false}, //
		{"localhost.:" + port, false},             // the fully qualified spelling
		{"127.0.0.2:" + port, false},              // other loopback addresses: not what the server calls itself
		{"0.0.0.0:" + port, false},                //
		{"[::ffff:127.0.0.1]:" + port, false},     //
		{"localhost:" + port + "@evil", false},    //
	}
	for _, tt := range tests {
		for _, path := range paths {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			s.http.Handler.ServeHTTP(rec, req)
			body := rec.Body.String()
			refused := rec.Code == http.StatusMisdirectedRequest
			if refused == tt.ok {
				t.Errorf("Host %q, %s: %d, want allowed %v\n%.200s", tt.host, path, rec.Code, tt.ok, body)
				continue
			}
			if !refused {
				continue
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Host %q, %s: Content-Type %q, want a plain text page", tt.host, path, ct)
			}
			if strings.Contains(body, "evil") {
				t.Errorf("Host %q, %s: the refusal echoes the Host header", tt.host, path)
			}
			if strings.Contains(body, "sig=") || strings.Contains(body, "/connect/sandbox?") {
				t.Errorf("Host %q, %s: the refusal carries a signed link", tt.host, path)
			}
		}
	}
}
