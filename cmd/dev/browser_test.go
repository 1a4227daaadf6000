package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
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
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
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

// TestBrowserConnectFlow drives a real headless Chromium through the
// numbered walk-through of README.md, step by step and in order: the
// banner's Open URL, a click on Connect, a click on Approve, the scheduled
// refresh seen in the log and on the reloaded return page, the printed
// curl line run as it is printed, and the replay of the callback URL.
// Keep the two in step: the README promises what this test does.
func TestBrowserConnectFlow(t *testing.T) {
	execPath := findBrowser()
	if execPath == "" {
		t.Fatal("no Chromium found (looked for /usr/bin/chromium, then chromium, chromium-browser, google-chrome in PATH); " +
			"this test needs a real browser: .ci/run installs it (apt-get install chromium)")
	}

	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	t.Cleanup(cancel)

	// make dev: the server, its schedule ticking fast so that the test
	// sees a tick soon after the clock reaches a refresh, and its banner.
	logs := &syncbuf.Buffer{}
	clk := &testClock{}
	s, _ := runServer(t, filepath.Join(t.TempDir(), "dev"), clk, logs, 100*time.Millisecond)
	logcheck.Register(s.devKey)
	var bannerBuf strings.Builder
	if err := s.printBanner(ctx, &bannerBuf); err != nil {
		t.Fatal(err)
	}
	banner := bannerBuf.String()
	for _, m := range connectLinkInPageRE.FindAllString(banner, -1) {
		if lu, err := url.Parse(m); err == nil {
			logcheck.Register(m, lu.Query().Get("sig"))
		}
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
	text := func(step string) string {
		t.Helper()
		txt, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
		if err != nil {
			fatalf(step, "reading the page: %v", err)
		}
		return txt
	}

	// Start the browser, then record every document request of the tab
	// (redirect hops included) — what the developer tools' Network panel
	// lists — to find the callback URL and to check that no token ever
	// travels in a URL.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting %s: %v", execPath, err)
	}
	navs := &navigations{}
	if err := chromedp.Listen(tab, func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok && ev.Type == network.ResourceTypeDocument && ev.Request != nil {
			navs.add(ev.Request.URL)
			if strings.Contains(ev.Request.URL, "sig=") { // a signed connect link
				if lu, err := url.Parse(ev.Request.URL); err == nil {
					logcheck.Register(ev.Request.URL, lu.Query().Get("sig"))
				}
			}
		}
	}); err != nil {
		t.Fatalf("listening to the tab: %v", err)
	}

	// Step 1: open the URL the banner prints.
	const step1 = "step 1 (open the banner's URL)"
	om := bannerOpenRE.FindStringSubmatch(banner)
	if om == nil {
		t.Fatalf("%s: the banner has no Open line:\n%s", step1, banner)
	}
	home := om[1]
	if home != s.baseURL+"/" {
		t.Fatalf("%s: the banner opens %q, want %s/ (the browser must use http://localhost, a secure context, to keep the __Host- cookie)", step1, home, s.baseURL)
	}
	base := s.baseURL
	resp, err := chromedp.Run(tab, chromedp.NavigateResponse(home))
	snap(step1)
	if err != nil {
		fatalf(step1, "navigate: %v", err)
	}
	if resp.Status != http.StatusOK {
		fatalf(step1, "status %d, want 200", resp.Status)
	}
	homeText := text(step1)
	hm := homeConnectionRE.FindStringSubmatch(homeText)
	if hm == nil || !strings.Contains(homeText, "Connect the sandbox provider") {
		fatalf(step1, "not the demo app's page, or it names no connection:\n%s", homeText)
	}
	connectionID := hm[1]

	// Step 2: click Connect; the broker checks the link, sets its binding
	// cookie and sends the browser to the sandbox's consent page.
	const step2 = "step 2 (click Connect the sandbox provider)"
	resp, err = chromedp.RunResponse(tab, chromedp.Click(chromedp.Search(`//a[normalize-space()="Connect the sandbox provider"]`)))
	snap(step2)
	if err != nil {
		fatalf(step2, "click Connect: %v", err)
	}
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.URL, base+"/sandbox/authorize?") {
		fatalf(step2, "landed on %s with status %d, want 200 from %s/sandbox/authorize", describeURL(resp.URL), resp.Status, base)
	}
	var sawConnect bool
	for _, u := range navs.all() {
		sawConnect = sawConnect || strings.HasPrefix(u, base+"/connect/sandbox?")
	}
	if !sawConnect {
		errorf(step2, "the click did not go through %s/connect/sandbox", base)
	}
	if err := chromedp.Do(tab, chromedp.WaitVisible(chromedp.CSS(`button[name="decision"][value="approve"]`))); err != nil {
		fatalf(step2, "no visible Approve button: %v", err)
	}
	if consent := text(step2); !strings.Contains(consent, "Sandbox provider — dev only") || !strings.Contains(consent, "wants access to") {
		fatalf(step2, "not the consent page:\n%s", consent)
	}
	cookies, err := chromedp.Call(tab, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		fatalf(step2, "reading cookies: %v", err)
	}
	var binding *network.Cookie
	for _, c := range cookies.Cookies {
		if strings.HasPrefix(c.Name, httpapi.BindingCookiePrefix) && !strings.HasPrefix(c.Name, httpapi.LinkCookiePrefix) {
			binding = c
			logcheck.Register(c.Value)
		}
	}
	if binding == nil || !binding.Secure || !binding.HTTPOnly || binding.Path != "/" {
		fatalf(step2, "the browser does not hold the Secure, HttpOnly __Host- binding cookie for %s (found %v)", base, binding != nil)
	}

	// Step 3: click Approve, a real mouse click: the form posts to
	// /sandbox/decide, which redirects to the broker's callback, which
	// redirects to the app's return page with status=connected.
	const step3 = "step 3 (click Approve)"
	resp, err = chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(`button[name="decision"][value="approve"]`)))
	snap(step3)
	if err != nil {
		fatalf(step3, "click Approve: %v", err)
	}
	// The callback URL, from the browser's own requests (the Network panel).
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
	// The callback sent the browser back pending, with a confirmation
	// code; the app's return page confirmed it (this browser's session
	// minted the link) and moved on without the code.
	var pendingURL string
	for _, u := range navs.all() {
		if strings.HasPrefix(u, base+"/app/return?") && strings.Contains(u, "status=pending") {
			pendingURL = u
		}
	}
	if pu, err := url.Parse(pendingURL); err != nil || pu.Query().Get("confirmation") == "" || pu.Query().Get("connection_id") != connectionID {
		fatalf(step3, "the browser was not sent back with status=pending and a confirmation code for %s (%s)", connectionID, describeURL(pendingURL))
	} else {
		logcheck.Register(pu.Query().Get("confirmation"))
	}
	if q := lu.Query(); q.Get("confirmed") != "true" || q.Get("connection_id") != connectionID || len(q) != 2 {
		fatalf(step3, "return URL %s (connection_id %q), want exactly confirmed=true and connection_id=%s",
			describeURL(loc), q.Get("connection_id"), connectionID)
	}
	returnText := text(step3)
	for _, want := range []string{"back in the app", "Confirmed:", "answered connected", "Connection " + connectionID, "Tokens are kept server-side"} {
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
		if strings.HasPrefix(c.Name, httpapi.BindingCookiePrefix) && !strings.HasPrefix(c.Name, httpapi.LinkCookiePrefix) {
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
		for name, token := range map[string]string{"access token": stored.AccessToken, "refresh token": stored.RefreshToken, "dev key": s.devKey} {
			if strings.Contains(text, token) || strings.Contains(text, url.QueryEscape(token)) {
				errorf(step3, "the browser holds the %s in %s", name, where)
			}
		}
	}

	// Step 4: sandbox tokens live two minutes and the schedule refreshes
	// them a minute before expiry. The test moves the clock to that minute
	// instead of waiting it out; the schedule's own tick must then renew
	// the token, as its log line and the reloaded return page show.
	const step4 = "step 4 (the scheduled refresh)"
	if life := stored.ExpiresAt.Sub(clk.Now()); life < 2*time.Minute-5*time.Second || life > 2*time.Minute+time.Second {
		errorf(step4, "the access token lives %s, want two minutes", life)
	}
	// The broker takes up to a fifth off the margin as jitter.
	if margin := stored.ExpiresAt.Sub(stored.NextRefresh); margin < 48*time.Second || margin > time.Minute {
		errorf(step4, "the refresh is due %s before expiry, want about a minute", margin)
	}
	clk.Add(stored.NextRefresh.Sub(clk.Now()) + time.Second)
	var refreshLine map[string]any
	for deadline := time.Now().Add(10 * time.Second); refreshLine == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		refreshLine = findLogLine(logs.String(), map[string]string{
			"msg": "refresh", "connection_id": connectionID, "outcome": "refreshed", "trigger": "schedule"})
	}
	if refreshLine == nil {
		fatalf(step4, "no scheduled refresh of %s in the log within 10 s:\n%s", connectionID, logs.String())
	}
	refreshed, err := s.store.GetConnection(ctx, providerName, connectionID)
	if err != nil {
		fatalf(step4, "reading the store: %v", err)
	}
	logcheck.Register(refreshed.AccessToken, refreshed.RefreshToken)
	if refreshed.Version <= stored.Version || refreshed.AccessToken == stored.AccessToken || refreshed.RefreshToken == stored.RefreshToken {
		fatalf(step4, "after the scheduled refresh: version %d → %d, access token renewed %v, refresh token rotated %v",
			stored.Version, refreshed.Version, refreshed.AccessToken != stored.AccessToken, refreshed.RefreshToken != stored.RefreshToken)
	}
	resp, err = chromedp.RunResponse(tab, chromedp.Reload())
	snap(step4)
	if err != nil || resp.Status != http.StatusOK {
		fatalf(step4, "reloading the return page: %v", err)
	}
	reloaded := text(step4)
	if !strings.Contains(reloaded, fmt.Sprintf("Version\t%d", refreshed.Version)) {
		errorf(step4, "the reloaded return page does not show version %d:\n%s", refreshed.Version, reloaded)
	}
	if exp := refreshed.ExpiresAt.UTC().Format(time.RFC3339); !refreshed.ExpiresAt.After(stored.ExpiresAt) || !strings.Contains(reloaded, "expires\t"+exp) {
		errorf(step4, "the reloaded return page does not show the new expiry %s:\n%s", exp, reloaded)
	}

	// Step 5: fetch the token with the curl line the return page prints,
	// run as it is printed (Go's client in place of curl).
	const step5 = "step 5 (the return page's curl line)"
	curl := curlLineRE.FindString(text(step5))
	if curl == "" {
		fatalf(step5, "the return page prints no curl line:\n%s", text(step5))
	}
	if !strings.Contains(curl, "/connections/sandbox/"+connectionID+"/token") {
		fatalf(step5, "the curl line is not for %s: %s", connectionID, curl)
	}
	tok := runCurl(t, curl)
	now, err := s.store.GetConnection(ctx, providerName, connectionID)
	if err != nil {
		fatalf(step5, "reading the store: %v", err)
	}
	logcheck.Register(now.AccessToken, now.RefreshToken)
	if tok.TokenType != "Bearer" || tok.AccessToken == "" || tok.AccessToken != now.AccessToken {
		errorf(step5, "token_type %q, access_token set %v and equal to the stored one %v", tok.TokenType, tok.AccessToken != "", tok.AccessToken == now.AccessToken)
	}
	if exp, err := time.Parse(time.RFC3339, tok.ExpiresAt); err != nil || exp.Sub(now.ExpiresAt).Abs() >= time.Second {
		errorf(step5, "expires_at %q, want %s", tok.ExpiresAt, now.ExpiresAt.UTC().Format(time.RFC3339))
	}

	// Step 6: the back button does not replay the callback: the callback
	// only redirected, so it has no history entry, and Back shows the
	// sandbox's consent page again (Chromium restores it from its
	// back/forward cache, so this reads the page with plain JavaScript).
	// Opening the callback URL itself, as the Network panel lists it, is
	// the replay: the broker refuses it with a plain error page.
	const step6 = "step 6 (Back, then replay the callback URL)"
	h, err := chromedp.Run(tab, chromedp.NavigationEntries())
	if err != nil {
		fatalf(step6, "reading the history: %v", err)
	}
	for _, e := range h.Entries {
		if strings.Contains(e.URL, "/callback/") {
			errorf(step6, "the callback has a history entry: %s", describeURL(e.URL))
		}
	}
	if h.CurrentIndex < 1 {
		fatalf(step6, "nothing to go back to")
	}
	if _, err := chromedp.Call(tab, page.NavigateToHistoryEntry, page.NavigateToHistoryEntryParams{EntryID: h.Entries[h.CurrentIndex-1].ID}); err != nil {
		fatalf(step6, "pressing Back: %v", err)
	}
	var backPage string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		backPage, err = chromedp.Run(tab, chromedp.Evaluate[string](`document.readyState === "complete" ? location.href + "\n" + document.body.innerText : ""`))
		if err == nil && strings.HasPrefix(backPage, base+"/sandbox/authorize?") {
			break
		}
	}
	snap(step6)
	if !strings.HasPrefix(backPage, base+"/sandbox/authorize?") || !strings.Contains(backPage, "wants access to") {
		errorf(step6, "Back did not show the sandbox's consent page: %s", describeURL(strings.SplitN(backPage, "\n", 2)[0]))
	}
	resp, err = chromedp.Run(tab, chromedp.NavigateResponse(callbackURL))
	snap(step6)
	if err != nil {
		fatalf(step6, "opening the callback URL: %v", err)
	}
	if resp.Status != http.StatusForbidden || !strings.HasPrefix(resp.URL, base+"/callback/sandbox?") {
		errorf(step6, "%s answered %d, want 403 and no redirect", describeURL(resp.URL), resp.Status)
	}
	loc, err = chromedp.Run(tab, chromedp.Location())
	if err != nil {
		fatalf(step6, "reading the location: %v", err)
	}
	if strings.Contains(loc, "status=connected") || strings.Contains(loc, "/app/return") {
		errorf(step6, "the replay reached the app: %s", describeURL(loc))
	}
	replayText := text(step6)
	replayHTML, err := chromedp.Run(tab, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		fatalf(step6, "reading the page: %v", err)
	}
	if !strings.Contains(replayText, "Forbidden") || !strings.Contains(replayText, "Please start again from the application") {
		errorf(step6, "not the broker's plain error page:\n%s", replayText)
	}
	if strings.Contains(replayText, "connected") {
		errorf(step6, "the error page mentions a connected status:\n%s", replayText)
	}
	for _, v := range []string{now.AccessToken, now.RefreshToken, cb.Query().Get("code"), cb.Query().Get("state")} {
		if strings.Contains(replayHTML, v) {
			errorf(step6, "the error page shows a credential")
		}
	}
	after, err := s.store.GetConnection(ctx, providerName, connectionID)
	if err != nil {
		fatalf(step6, "reading the store: %v", err)
	}
	if after.Version != now.Version || after.AccessToken != now.AccessToken {
		errorf(step6, "the replay changed the stored connection: version %d → %d", now.Version, after.Version)
	}

	// Step 7: a forwarded link (S24). Another user of the app opens the
	// home page, whose link is minted for their own connection, and sends
	// it to this browser's user, who follows it and approves: the grant
	// comes back pending, and the app refuses to confirm it (this session
	// does not own the connection), so nothing is stored.
	const step7 = "step 7 (a forwarded link is not confirmed)"
	theirs, err := s.app.client.Confirm(ctx, providerName, "no-such", strings.Repeat("A", 43))
	if err == nil || theirs != nil {
		fatalf(step7, "a made-up confirmation code was accepted")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	other := &http.Client{Jar: nil}
	res, err := other.Do(req) // the other user's browser: its own session
	if err != nil {
		fatalf(step7, "the other user's home page: %v", err)
	}
	otherHome, _ := io.ReadAll(res.Body)
	res.Body.Close()
	lm := regexp.MustCompile(`href="(http://localhost:\d+/connect/sandbox\?[^"]+)"`).FindSubmatch(otherHome)
	if lm == nil {
		fatalf(step7, "no connect link on the other user's home page")
	}
	forwarded := html.UnescapeString(string(lm[1]))
	fu, _ := url.Parse(forwarded)
	logcheck.Register(forwarded, fu.Query().Get("sig"))
	theirID := fu.Query().Get("connection_id")
	if resp, err = chromedp.RunResponse(tab, chromedp.Navigate(forwarded)); err != nil || !strings.HasPrefix(resp.URL, base+"/sandbox/authorize?") {
		fatalf(step7, "opening the forwarded link: %v", err)
	}
	if err := chromedp.Do(tab, chromedp.WaitVisible(chromedp.CSS(`button[name="decision"][value="approve"]`))); err != nil {
		fatalf(step7, "no visible Approve button: %v", err)
	}
	resp, err = chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(`button[name="decision"][value="approve"]`)))
	snap(step7)
	if err != nil || resp.Status != http.StatusOK || !strings.HasPrefix(resp.URL, base+"/app/return?") {
		fatalf(step7, "after Approve: %v, want the app's return page", err)
	}
	if ru, err := url.Parse(resp.URL); err == nil {
		logcheck.Register(ru.Query().Get("confirmation"))
	}
	if refusedText := text(step7); !strings.Contains(refusedText, "Not confirmed") || !strings.Contains(refusedText, "No such connection") {
		errorf(step7, "the return page does not say the grant was not confirmed:\n%s", refusedText)
	}
	if _, err := s.store.GetConnection(ctx, providerName, theirID); !errors.Is(err, store.ErrNotFound) {
		errorf(step7, "the forwarded link's connection %s is stored: %v", theirID, err)
	}
}

var (
	bannerOpenRE     = regexp.MustCompile(`(?m)^\s*Open\s+(\S+)$`)
	homeConnectionRE = regexp.MustCompile(`customer connection ([A-Za-z0-9._:@-]+);`)
)

// findLogLine returns the first JSON log line whose fields include want.
func findLogLine(logText string, want map[string]string) map[string]any {
	for line := range strings.Lines(logText) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		match := true
		for k, v := range want {
			match = match && m[k] == v
		}
		if match {
			return m
		}
	}
	return nil
}
