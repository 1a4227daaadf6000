package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// browserTestTimeout bounds the whole browser test, so that a hung browser
// cannot hang CI.
const browserTestTimeout = 60 * time.Second

// findBrowser returns the path of a Chromium-compatible browser, or "".
func findBrowser() string {
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && !fi.IsDir() {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

var nonSlugRE = regexp.MustCompile(`[^a-z0-9]+`)

// screenshots keeps the last screenshot of each step in memory; they are
// written out only when the test fails.
type screenshots struct {
	mu    sync.Mutex
	order []string
	png   map[string][]byte
}

func (s *screenshots) put(step string, png []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.png == nil {
		s.png = map[string][]byte{}
	}
	if _, ok := s.png[step]; !ok {
		s.order = append(s.order, step)
	}
	s.png[step] = png
}

// writeOut writes the screenshots to a new directory that outlives the
// test and returns it.
func (s *screenshots) writeOut() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.order) == 0 {
		return "", nil
	}
	dir, err := os.MkdirTemp("", "oauthbroker-browser-test-")
	if err != nil {
		return "", err
	}
	for i, step := range s.order {
		name := fmt.Sprintf("%02d-%s.png", i+1, strings.Trim(nonSlugRE.ReplaceAllString(strings.ToLower(step), "-"), "-"))
		if err := os.WriteFile(filepath.Join(dir, name), s.png[step], 0o644); err != nil {
			return dir, err
		}
	}
	return dir, nil
}

// navigations records the URL of every document request the tab makes,
// redirects included, in order.
type navigations struct {
	mu   sync.Mutex
	urls []string
}

func (n *navigations) add(u string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.urls = append(n.urls, u)
}

func (n *navigations) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.urls...)
}

// describeURL shows a URL without its query values (they may be
// credentials): the path and the parameter names only.
func describeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	names := make([]string, 0, len(u.Query()))
	for k := range u.Query() {
		names = append(names, k)
	}
	return fmt.Sprintf("%s://%s%s ?%v", u.Scheme, u.Host, u.Path, names)
}

// TestBrowserConnectFlow drives a real headless Chromium through the dev
// server: signed connect link → sandbox consent page → click Approve →
// the app's return page; then reads the token through the token route and
// replays the callback URL in the same browser.
func TestBrowserConnectFlow(t *testing.T) {
	execPath := findBrowser()
	if execPath == "" {
		t.Fatal("no Chromium found (looked for /usr/bin/chromium, then chromium, chromium-browser, google-chrome in PATH); " +
			"this test needs a real browser: .ci/run installs it (apt-get install chromium)")
	}

	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	t.Cleanup(cancel)

	logs := &syncbuf.Buffer{}
	s := startServer(t, filepath.Join(t.TempDir(), "dev"), &testClock{}, logs)
	base := s.baseURL
	if !regexp.MustCompile(`^http://localhost:\d+$`).MatchString(base) {
		t.Fatalf("base URL %q: the browser must use http://localhost (a secure context) to keep the __Host- cookie", base)
	}

	// The browser: exactly the toolbox's flags, a fresh profile.
	browserOut := &syncbuf.Buffer{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(execPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(browserOut),
	)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	// Cleanups run last-in first-out: close the tab and the browser, then
	// kill and reap it (the allocator's cancel waits for the process), then
	// check the browser's output for credentials.
	t.Cleanup(func() {
		logcheck.Feed("chromium output in "+t.Name(), browserOut.String())
	})
	t.Cleanup(cancelAlloc)
	t.Cleanup(func() {
		closeCtx, cancelClose := context.WithTimeout(tab, 5*time.Second)
		defer cancelClose()
		_ = chromedp.Cancel(closeCtx) // graceful close; the allocator kills it otherwise
		cancelTab()
	})

	shots := &screenshots{}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if dir, err := shots.writeOut(); err != nil {
			t.Logf("writing screenshots to %q: %v", dir, err)
		} else if dir != "" {
			t.Logf("screenshots of each step: %s", dir)
		}
	})
	// snap keeps a screenshot of the tab's current state for step.
	snap := func(step string) {
		sctx, cancel := context.WithTimeout(tab, 5*time.Second)
		defer cancel()
		if png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot()); err == nil {
			shots.put(step, png)
		}
	}
	fatalf := func(step, format string, args ...any) {
		t.Helper()
		snap(step)
		t.Fatalf("%s: %s", step, fmt.Sprintf(format, args...))
	}
	errorf := func(step, format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s", step, fmt.Sprintf(format, args...))
	}

	// Start the browser, then record every document request of the tab
	// (redirect hops included), to find the callback URL and to check that
	// no token ever travels in a URL.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting %s: %v", execPath, err)
	}
	navs := &navigations{}
	if err := chromedp.Listen(tab, func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok && ev.Type == network.ResourceTypeDocument && ev.Request != nil {
			navs.add(ev.Request.URL)
		}
	}); err != nil {
		t.Fatalf("listening to the tab: %v", err)
	}

	// Step 1: the browser opens a signed connect link, as the demo app's
	// button (and the startup banner) offers; the broker sets its binding
	// cookie and sends the browser to the sandbox's consent page.
	const step1 = "step 1 (open the signed connect link)"
	connectionID := newConnectionID()
	link, err := s.connectLink(ctx, connectionID, pageLinkTTL)
	if err != nil {
		t.Fatalf("%s: signing: %v", step1, err)
	}
	if lu, err := url.Parse(link); err == nil {
		logcheck.Register(link, lu.Query().Get("sig"))
	}
	resp, err := chromedp.Run(tab, chromedp.NavigateResponse(link))
	snap(step1)
	if err != nil {
		fatalf(step1, "navigate: %v", err)
	}
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.URL, base+"/sandbox/authorize?") {
		fatalf(step1, "landed on %s with status %d, want 200 from %s/sandbox/authorize", describeURL(resp.URL), resp.Status, base)
	}

	// Step 2: the sandbox's consent page; the browser kept the Secure
	// __Host- binding cookie over http://localhost; click Approve.
	const step2 = "step 2 (consent page, click Approve)"
	if err := chromedp.Do(tab, chromedp.WaitVisible(chromedp.CSS(`button[name="decision"][value="approve"]`))); err != nil {
		fatalf(step2, "no visible Approve button: %v", err)
	}
	consentText, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		fatalf(step2, "reading the page: %v", err)
	}
	if !strings.Contains(consentText, "Sandbox provider — dev only") || !strings.Contains(consentText, "wants access to") {
		fatalf(step2, "not the consent page:\n%s", consentText)
	}
	cookies, err := chromedp.Call(tab, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		fatalf(step2, "reading cookies: %v", err)
	}
	var binding *network.Cookie
	for _, c := range cookies.Cookies {
		if strings.HasPrefix(c.Name, broker.BindingCookiePrefix) {
			binding = c
			logcheck.Register(c.Value)
		}
	}
	if binding == nil || !binding.Secure || !binding.HTTPOnly || binding.Path != "/" {
		fatalf(step2, "the browser does not hold the Secure, HttpOnly __Host- binding cookie for %s (found %v)", base, binding != nil)
	}

	snap(step2)

	// The click is a real mouse click on the button: the form posts to
	// /sandbox/decide, which redirects to the broker's callback, which
	// redirects to the app's return page.
	const step3 = "step 3 (return page after Approve)"
	resp, err = chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(`button[name="decision"][value="approve"]`)))
	snap(step3)
	if err != nil {
		fatalf(step2, "click Approve: %v", err)
	}

	// The callback URL, captured from the browser's own navigation.
	var callbackURL string
	for _, u := range navs.all() {
		if strings.HasPrefix(u, base+"/callback/sandbox?") {
			callbackURL = u
		}
	}
	if callbackURL == "" {
		fatalf(step3, "the browser never requested %s/callback/sandbox (document requests: %d)", base, len(navs.all()))
	}
	cb, err := url.Parse(callbackURL)
	if err != nil {
		fatalf(step3, "callback URL: %v", err)
	}
	logcheck.Register(callbackURL, cb.Query().Get("code"), cb.Query().Get("state"))
	if cb.Query().Get("code") == "" || cb.Query().Get("state") == "" {
		fatalf(step3, "callback URL %s lacks code or state", describeURL(callbackURL))
	}

	// Step 3: the app's return page, status=connected, in the URL and on
	// the rendered page.
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.URL, base+"/app/return?") {
		fatalf(step3, "landed on %s with status %d, want 200 from %s/app/return", describeURL(resp.URL), resp.Status, base)
	}
	loc, err := chromedp.Run(tab, chromedp.Location())
	if err != nil {
		fatalf(step3, "reading the location: %v", err)
	}
	lu, err := url.Parse(loc)
	if err != nil || lu.Path != "/app/return" {
		fatalf(step3, "location %s, want %s/app/return", describeURL(loc), base)
	}
	if q := lu.Query(); q.Get("status") != "connected" || q.Get("connection_id") != connectionID || len(q) != 2 {
		fatalf(step3, "return URL %s (status %q, connection_id %q), want exactly status=connected and connection_id=%s",
			describeURL(loc), q.Get("status"), q.Get("connection_id"), connectionID)
	}
	returnText, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		fatalf(step3, "reading the page: %v", err)
	}
	for _, want := range []string{"back in the app", "status connected", "Connection " + connectionID, "Tokens are kept server-side"} {
		if !strings.Contains(returnText, want) {
			errorf(step3, "the return page does not show %q:\n%s", want, returnText)
		}
	}
	stored, err := s.store.GetConnection(ctx, providerName, connectionID)
	if err != nil {
		fatalf(step3, "the store has no connection %s: %v", connectionID, err)
	}
	logcheck.Register(stored.AccessToken, stored.RefreshToken)
	if stored.Status != store.StatusConnected || stored.AccessToken == "" || stored.RefreshToken == "" {
		fatalf(step3, "stored connection: status %q, access token set %v, refresh token set %v",
			stored.Status, stored.AccessToken != "", stored.RefreshToken != "")
	}
	// The browser holds no token: not in the URL it shows, its history,
	// any URL it requested, its cookies, or the page.
	pageHTML, err := chromedp.Run(tab, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		fatalf(step3, "reading the page: %v", err)
	}
	history, err := chromedp.Run(tab, chromedp.NavigationEntries())
	if err != nil {
		fatalf(step3, "reading the history: %v", err)
	}
	cookies, err = chromedp.Call(tab, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		fatalf(step3, "reading cookies: %v", err)
	}
	for _, c := range cookies.Cookies {
		if strings.HasPrefix(c.Name, broker.BindingCookiePrefix) {
			errorf(step3, "the binding cookie %s was not cleared by the callback", c.Name)
		}
	}
	for _, name := range []string{"access_token", "refresh_token", "token", "code", "state", "id_token"} {
		if lu.Query().Has(name) || strings.Contains(lu.Fragment, name) {
			errorf(step3, "the return URL carries %q", name)
		}
	}
	places := map[string]string{"the location": loc, "the page": pageHTML}
	for i, e := range history.Entries {
		places[fmt.Sprintf("history entry %d", i)] = e.URL
	}
	for i, u := range navs.all() {
		places[fmt.Sprintf("document request %d", i)] = u
	}
	for i, c := range cookies.Cookies {
		places[fmt.Sprintf("cookie %d", i)] = c.Name + "=" + c.Value
	}
	for where, text := range places {
		for name, token := range map[string]string{"access token": stored.AccessToken, "refresh token": stored.RefreshToken} {
			if strings.Contains(text, token) || strings.Contains(text, url.QueryEscape(token)) {
				errorf(step3, "the browser holds the %s in %s", name, where)
			}
		}
	}

	// Step 4: the app's backend reads the token through the token route,
	// authorized with the dev server's key (in AWS: IAM).
	const step4 = "step 4 (token route)"
	devKey := s.devKey
	logcheck.Register(devKey)
	tokenURL := base + "/connections/" + providerName + "/" + url.PathEscape(connectionID) + "/token"
	get := func(authorization string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, tokenURL, nil)
		if err != nil {
			t.Fatalf("%s: %v", step4, err)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: GET %s: %v", step4, tokenURL, err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if err != nil {
			t.Fatalf("%s: reading the answer: %v", step4, err)
		}
		return res, body
	}
	if res, body := get(""); res.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"unauthorized"`) {
		errorf(step4, "without the dev key: %d %q, want 401 {\"error\":\"unauthorized\"}", res.StatusCode, body)
	}
	res, body := get("Bearer " + devKey)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresAt   string `json:"expires_at"`
		Scope       string `json:"scope"`
	}
	if res.StatusCode != http.StatusOK {
		// A non-200 answer is an error code, never a token: safe to show.
		fatalf(step4, "GET %s: %d, want 200 (body %.300q)", "/connections/sandbox/"+connectionID+"/token", res.StatusCode, body)
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		fatalf(step4, "the answer is not JSON (%d bytes): %v", len(body), err)
	}
	logcheck.Register(tok.AccessToken)
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		errorf(step4, "Content-Type %q, want application/json", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		errorf(step4, "Cache-Control %q, want no-store", cc)
	}
	if tok.TokenType != "Bearer" {
		errorf(step4, "token_type %q, want Bearer", tok.TokenType)
	}
	now, err := s.store.GetConnection(ctx, providerName, connectionID)
	if err != nil {
		fatalf(step4, "reading the store: %v", err)
	}
	logcheck.Register(now.AccessToken, now.RefreshToken)
	switch {
	case tok.AccessToken == "":
		errorf(step4, "empty access_token")
	case tok.AccessToken != now.AccessToken:
		errorf(step4, "access_token differs from the stored one (lengths %d and %d)", len(tok.AccessToken), len(now.AccessToken))
	}
	if tok.ExpiresAt != "" {
		if exp, err := time.Parse(time.RFC3339, tok.ExpiresAt); err != nil || exp.Sub(now.ExpiresAt).Abs() >= time.Second {
			errorf(step4, "expires_at %q, want %s", tok.ExpiresAt, now.ExpiresAt.UTC().Format(time.RFC3339))
		}
	}

	// Step 5: the same browser goes to the same callback URL again (as the
	// back button would): the broker refuses the replay with a plain error
	// page and does not send the browser to the app.
	const step5 = "step 5 (replay the callback URL)"
	resp, err = chromedp.Run(tab, chromedp.NavigateResponse(callbackURL))
	snap(step5)
	if err != nil {
		fatalf(step5, "navigate: %v", err)
	}
	if resp.Status < 400 || resp.Status > 499 {
		errorf(step5, "status %d, want 4xx", resp.Status)
	}
	if !strings.HasPrefix(resp.URL, base+"/callback/sandbox?") {
		errorf(step5, "the replay went on to %s", describeURL(resp.URL))
	}
	loc, err = chromedp.Run(tab, chromedp.Location())
	if err != nil {
		fatalf(step5, "reading the location: %v", err)
	}
	if strings.Contains(loc, "status=connected") || strings.Contains(loc, "/app/return") {
		errorf(step5, "the replay reached the app: %s", describeURL(loc))
	}
	replayText, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		fatalf(step5, "reading the page: %v", err)
	}
	replayHTML, err := chromedp.Run(tab, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		fatalf(step5, "reading the page: %v", err)
	}
	if !strings.Contains(replayText, "Forbidden") || !strings.Contains(replayText, "Please start again from the application") {
		errorf(step5, "not the broker's plain error page:\n%s", replayText)
	}
	if strings.Contains(replayText, "connected") {
		errorf(step5, "the error page mentions a connected status:\n%s", replayText)
	}
	for _, v := range []string{now.AccessToken, now.RefreshToken, cb.Query().Get("code"), cb.Query().Get("state")} {
		if strings.Contains(replayHTML, v) {
			errorf(step5, "the error page shows a credential")
		}
	}
	after, err := s.store.GetConnection(ctx, providerName, connectionID)
	if err != nil {
		fatalf(step5, "reading the store: %v", err)
	}
	if after.Version != now.Version || after.AccessToken != now.AccessToken {
		errorf(step5, "the replay changed the stored connection: version %d → %d", now.Version, after.Version)
	}
}
