package oidcprovider_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/oidcprovider"
)

// The helper process of TestS22_IssuedCredentialsAreRegistered: it prints
// the tokens the server issued, as a careless test or product would.
func TestLeakHelperProcess(t *testing.T) {
	if os.Getenv("OIDCP_LEAK_HELPER") == "" {
		t.Skip("helper process for TestS22_IssuedCredentialsAreRegistered")
	}
	srv := oidcprovider.Start(t, options(nil))
	tok := connect(t, srv, srv.NewBrowser())
	fmt.Println("access", tok.AccessToken, "refresh", tok.RefreshToken)
}

// The codes and tokens the server issues are registered with logcheck
// without the test's help: printing them fails the run, and the report
// names the server as where they were registered.
func TestS22_IssuedCredentialsAreRegistered(t *testing.T) {
	if os.Getenv("OIDCP_LEAK_HELPER") != "" {
		t.Skip("in the helper process")
	}
	out, err := logcheck.HelperCommand("TestLeakHelperProcess", "OIDCP_LEAK_HELPER=1").CombinedOutput()
	text := string(out)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("helper exited with %v, want status 1; output:\n%s", err, text)
	}
	for _, want := range []string{
		"\nPASS\n", // the helper itself passed
		"logcheck: S22 FAIL: 2 occurrence(s)",
		"registered at oidcprovider.go:",
		// Not checked: whether the echo of the printed line is already
		// redacted. The server registers what it issues over a pipe that
		// a goroutine reads, which under load may come after the client
		// has the token; the end-of-run check above sees it either way.
	} {
		if !strings.Contains(text, want) {
			t.Errorf("helper output lacks %q:\n%s", want, text)
		}
	}
}
