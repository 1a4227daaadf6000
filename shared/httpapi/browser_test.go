package httpapi

import (
	"os"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/flowtest"
)

// The browser's side of a connect, in process: the security tests of the
// connect and callback handlers (moved here from e2e, where they needed
// nothing the built functions alone have) drive a fixtureWorld with
// flowtest's browser, as e2e drives the built functions.

const fixtureReturnTo = "https://app.example.com/connected?tab=integrations"

// browser is one test's use of a fixtureWorld: flowtest's browser on the
// handlers called in process.
type browser struct {
	*fixtureWorld
	*flowtest.Browser
}

func newBrowser(t *testing.T, extra ...extraProvider) *browser {
	w := newFixtureWorld(t, extra...)
	return &browser{fixtureWorld: w, Browser: &flowtest.Browser{T: t,
		Authorize: flowtest.InProcess("authorize", Authorize(w.b)), Callback: flowtest.InProcess("callback", Callback(w.b)),
		Keys: w.keys, SigningKey: fixtureKey, Provider: w.acme, Store: w.st,
		Items: w.items, BindingCookieName: BindingCookieName, ReturnTo: fixtureReturnTo, Now: func() time.Time { return fixtureNow }}}
}

// items is the whole store: the embedded store's file, which every write
// rewrites.
func (w *fixtureWorld) items(t testing.TB) map[string]string {
	t.Helper()
	b, err := os.ReadFile(w.storeFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return map[string]string{"the embedded store's file": string(b)}
}
