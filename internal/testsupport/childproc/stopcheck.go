package childproc

import (
	"net"
	"net/url"
	"testing"
)

// CheckStopsWithTest is the check every server harness makes of its Start:
// it runs start in a subtest of t and fails t if the server at the URL
// start returns still accepts connections once that subtest's cleanup has
// run, as a server a test started must not outlive it.
func CheckStopsWithTest(t *testing.T, start func(t *testing.T) (serverURL string)) {
	t.Helper()
	var serverURL string
	t.Run("server", func(t *testing.T) { serverURL = start(t) })
	u, err := url.Parse(serverURL)
	if err != nil || u.Host == "" {
		t.Fatalf("start returned %q, not a server's URL", serverURL)
	}
	if conn, err := net.Dial("tcp", u.Host); err == nil {
		conn.Close()
		t.Errorf("server at %s still accepts connections after cleanup", serverURL)
	}
}
