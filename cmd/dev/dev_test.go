package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// connection reads id's stored sandbox connection and registers its
// tokens with logcheck, so that a test printing it by mistake fails.
func (s *devServer) connection(t *testing.T, id string) store.Connection {
	t.Helper()
	c, err := s.store.GetConnection(context.Background(), providerName, id)
	if err != nil {
		t.Fatal(err)
	}
	logcheck.Register(c.AccessToken, c.RefreshToken)
	return c
}

// connectedThenStopped is where the restart tests start: make dev on a
// fresh data directory, one sandbox connection made through the browser,
// then the server stopped. It returns the directory, the browser, the
// connection's id and the connection as stored before the stop.
func connectedThenStopped(t *testing.T, clk *testClock) (dataDir string, br *browser, id string, before store.Connection) {
	t.Helper()
	dataDir = filepath.Join(t.TempDir(), "dev")
	s, stop := runServer(t, dataDir, clk, &syncbuf.Buffer{}, time.Hour)
	logcheck.Register(s.devKey)
	br = newBrowser(t)
	link, id := homeLink(t, br, s.baseURL)
	connect(t, br, s.baseURL, link)
	before = s.connection(t, id)
	stop()
	return dataDir, br, id, before
}

// startServer runs a dev server on a free port in dataDir until the test
// ends. Its refresh schedule ticks every hour: the tests run sweeps
// themselves.
func startServer(t *testing.T, dataDir string, clk *testClock, logs io.Writer) *devServer {
	t.Helper()
	s, _ := runServer(t, dataDir, clk, logs, time.Hour)
	return s
}

// runServer runs a dev server on a free port in dataDir, its refresh
// schedule ticking every refreshEvery, until stop is called or the test
// ends.
func runServer(t *testing.T, dataDir string, clk *testClock, logs io.Writer, refreshEvery time.Duration) (s *devServer, stop func()) {
	t.Helper()
	s, err := newServer(options{
		Addr:         "127.0.0.1:0",
		DataDir:      dataDir,
		RefreshEvery: refreshEvery,
		Log:          slog.New(slog.NewJSONHandler(logs, nil)),
		Now:          clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if b, ok := logs.(*syncbuf.Buffer); ok {
				logcheck.Feed("dev server log in "+t.Name(), b.String())
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// browser is a net/http client with a cookie jar that does not follow
// redirects, so the test sees (and can replay) every hop.
type browser struct {
	t      *testing.T
	c      *http.Client
	bodies []string // every page body seen
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.bodies = append(b.bodies, string(body))
	return resp, string(body)
}

func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) postForm(u string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// redirect asserts a 302 to a URL starting with prefix and returns it.
func redirect(t *testing.T, step string, resp *http.Response, body, prefix string) string {
	t.Helper()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, prefix) {
		t.Fatalf("%s: %d Location %q, want 302 to %s…\n%s", step, resp.StatusCode, loc, prefix, body)
	}
	return loc
}

var (
	connectLinkRE = regexp.MustCompile(`href="(http://localhost:\d+/connect/sandbox\?[^"]+)"`)
	requestIDRE   = regexp.MustCompile(`name="request" value="([^"]+)"`)
)

func TestDevServerFlow(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "dev")
	clk := &testClock{}
	logs := &syncbuf.Buffer{}
	s := startServer(t, dataDir, clk, logs)
	base := s.baseURL
	if !regexp.MustCompile(`^http://localhost:\d+$`).MatchString(base) {
		t.Fatalf("base URL %q", base)
	}
	br := newBrowser(t)

	// The demo app's page carries a freshly signed connect link.
	resp, body := br.get(base + "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connect the sandbox provider") {
		t.Fatalf("GET /: %d\n%s", resp.StatusCode, body)
	}
	m := connectLinkRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no connect link on the home page:\n%s", body)
	}
	connectLink := html.UnescapeString(m[1])
	link, _ := url.Parse(connectLink)
	id := link.Query().Get("connection_id")
	if !connectionIDRE.MatchString(id) {
		t.Fatalf("connect link for connection id %q", id)
	}

	// Broker: connect → provider's authorization page, binding cookie set.
	resp, body = br.get(connectLink)
	authURL := redirect(t, "connect", resp, body, base+"/sandbox/authorize?")
	var binding *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, httpapi.BindingCookiePrefix) && !strings.HasPrefix(c.Name, httpapi.LinkCookiePrefix) {
			binding = c
		}
	}
	if binding == nil || !binding.Secure || !binding.HttpOnly || binding.Path != "/" {
		t.Fatalf("binding cookie %+v", binding)
	}
	// Go's cookiejar keeps a Secure cookie set over http and sends it back
	// to http://localhost (it treats localhost and loopback IPs as secure
	// origins, as browsers do); it does not enforce the __Host- prefix.
	baseURL, _ := url.Parse(base)
	if !hasCookie(br.c.Jar.Cookies(baseURL), binding.Name) {
		t.Fatal("the cookie jar did not keep the Secure binding cookie for http://localhost")
	}

	// Sandbox: consent page, then Approve.
	resp, body = br.get(authURL)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Sandbox provider — dev only") {
		t.Fatalf("consent page: %d\n%s", resp.StatusCode, body)
	}
	rm := requestIDRE.FindStringSubmatch(body)
	if rm == nil {
		t.Fatalf("no request id on the consent page:\n%s", body)
	}
	resp, body = br.postForm(base+"/sandbox/decide", url.Values{"request": {html.UnescapeString(rm[1])}, "decision": {"approve"}})
	callbackURL := redirect(t, "approve", resp, body, base+"/callback/sandbox?")
	cb, _ := url.Parse(callbackURL)
	code, state := cb.Query().Get("code"), cb.Query().Get("state")

	// Broker: callback → app's return URL, binding cookie cleared.
	resp, body = br.get(callbackURL)
	pendingURL := redirect(t, "callback", resp, body, base+"/app/return?")
	if q, _ := url.ParseQuery(strings.SplitN(pendingURL, "?", 2)[1]); q.Get("connection_id") != id {
		t.Fatalf("return URL %q names another connection", pendingURL)
	}
	if hasCookie(br.c.Jar.Cookies(baseURL), binding.Name) {
		t.Error("the binding cookie was not cleared")
	}
	// Nothing is served before the app confirms.
	if status, _ := getToken(t, s, id, ""); status != http.StatusNotFound {
		t.Fatalf("token before the confirmation: %d, want 404", status)
	}

	// App: its return page confirms (this browser's session minted the
	// link), then shows the connection, never its tokens.
	returnURL := confirmed(t, br, base, pendingURL)
	resp, body = br.get(returnURL)
	for _, want := range []string{"Confirmed:", "<code>connected</code>", "<code>" + id + "</code>", "<td>profile</td>", "Version", "Tokens are kept server-side"} {
		if !strings.Contains(body, want) {
			t.Errorf("return page lacks %q:\n%s", want, body)
		}
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("return page: %d %v", resp.StatusCode, resp.Header)
	}

	// Store: connected, with a refresh due before the token expires.
	ctx := context.Background()
	c1, err := s.store.GetConnection(ctx, "sandbox", id)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Status != store.StatusConnected || c1.AccessToken == "" || c1.RefreshToken == "" || c1.Scope != "profile" || c1.Version != 1 {
		t.Fatalf("connection %+v", redact(c1))
	}
	if c1.NextRefresh.IsZero() || !c1.NextRefresh.Before(c1.ExpiresAt) || c1.ExpiresAt.Sub(clk.Now()) > 2*time.Minute+time.Second {
		t.Fatalf("refresh due %v, expires %v", c1.NextRefresh, c1.ExpiresAt)
	}

	// The return page prints the curl line that fetches this connection's
	// token; run as printed, it answers the stored token.
	curl := curlLineRE.FindString(html.UnescapeString(body))
	if curl == "" {
		t.Fatalf("the return page prints no curl line:\n%s", body)
	}
	if tok := runCurl(t, curl); tok.AccessToken != c1.AccessToken || tok.TokenType != "Bearer" {
		t.Errorf("the return page's curl line answered token_type %q and the stored access token %v", tok.TokenType, tok.AccessToken == c1.AccessToken)
	}

	// Replays of the callback: from the same browser (its cookie is gone),
	// and with the binding cookie put back by hand (the state is used up).
	// Both are refused with a page, and nothing is written.
	resp, body = br.get(callbackURL)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Errorf("replay: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ := http.NewRequest(http.MethodGet, callbackURL, nil)
	req.AddCookie(&http.Cookie{Name: binding.Name, Value: binding.Value})
	resp, body = br.do(req)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "already used") {
		t.Errorf("replay with the cookie: %d\n%s", resp.StatusCode, body)
	}
	if c, _ := s.store.GetConnection(ctx, "sandbox", id); c.Version != c1.Version || c.AccessToken != c1.AccessToken {
		t.Errorf("a replay changed the connection: version %d → %d", c1.Version, c.Version)
	}

	// Nothing is due yet; once the clock passes NextRefresh, one sweep
	// renews the token and the sandbox rotates the refresh token.
	if sum, err := s.refreshOnce(ctx); err != nil || sum.Due != 0 {
		t.Fatalf("early sweep: %+v %v", sum, err)
	}
	clk.Add(c1.NextRefresh.Sub(clk.Now()) + time.Second)
	if sum, err := s.refreshOnce(ctx); err != nil || sum.Refreshed != 1 {
		t.Fatalf("sweep: %+v %v", sum, err)
	}
	c2, err := s.store.GetConnection(ctx, "sandbox", id)
	if err != nil {
		t.Fatal(err)
	}
	if c2.AccessToken == c1.AccessToken || c2.RefreshToken == c1.RefreshToken || c2.Version <= c1.Version ||
		!c2.NextRefresh.After(c1.NextRefresh) || c2.Status != store.StatusConnected {
		t.Fatalf("after refresh: %+v (before %+v)", redact(c2), redact(c1))
	}
	_, body = br.get(returnURL)
	if want := fmt.Sprintf("<td>%d</td>", c2.Version); !strings.Contains(body, want) {
		t.Errorf("return page does not show version %d:\n%s", c2.Version, body)
	}

	// No credential in any page body or log line.
	raw, _ := os.ReadFile(filepath.Join(dataDir, "secrets.json"))
	var sec map[string]map[string]string
	if err := json.Unmarshal(raw, &sec); err != nil {
		t.Fatal(err)
	}
	secretsList := []string{c1.AccessToken, c1.RefreshToken, c2.AccessToken, c2.RefreshToken, code, state,
		sec["oauthbroker/provider/sandbox"]["client_secret"], sec["oauthbroker/keys"]["k1"], binding.Value, s.devKey}
	logcheck.Register(secretsList...)
	logcheck.Register(connectLink, link.Query().Get("sig"), s.devKey)
	logText := logs.String()
	if !strings.Contains(logText, `"msg":"connected, pending confirmation"`) || !strings.Contains(logText, `"msg":"connection confirmed"`) ||
		!strings.Contains(logText, `"outcome":"refreshed"`) {
		t.Errorf("expected log lines missing:\n%s", logText)
	}
	for _, v := range secretsList {
		if v == "" {
			t.Fatal("empty credential in the list")
		}
		for i, b := range br.bodies {
			if strings.Contains(b, v) {
				t.Errorf("page %d shows a credential", i)
			}
		}
		if strings.Contains(logText, v) {
			t.Error("a log line shows a credential")
		}
	}
}

func TestDevServerDataDir(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "dev")
	s := startServer(t, dataDir, &testClock{}, io.Discard)

	if gi, err := os.ReadFile(filepath.Join(dataDir, ".gitignore")); err != nil || !bytes.Contains(gi, []byte("\n*\n")) {
		t.Errorf(".gitignore %q %v", gi, err)
	}
	for name, want := range map[string]os.FileMode{"": 0o700, "secrets.json": 0o600} {
		fi, err := os.Stat(filepath.Join(dataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%q mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	secretsBefore, _ := os.ReadFile(filepath.Join(dataDir, "secrets.json"))
	for _, want := range []string{`"oauthbroker/keys"`, `"current_kid": "k1"`, `"oauthbroker/provider/sandbox"`, `"client_id": "sandbox-`, `"client_secret"`} {
		if !bytes.Contains(secretsBefore, []byte(want)) {
			t.Errorf("secrets.json lacks %s", want)
		}
	}
	cat, _ := os.ReadFile(filepath.Join(dataDir, "providers.yaml"))
	for _, want := range []string{s.baseURL + "/sandbox/authorize", s.baseURL + "/sandbox/token", "default_scopes: [profile]", "client_auth: basic", "pkce: true"} {
		if !bytes.Contains(cat, []byte(want)) {
			t.Errorf("providers.yaml lacks %q", want)
		}
	}

	var banner bytes.Buffer
	if err := s.printBanner(context.Background(), &banner); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Open       " + s.baseURL + "/", s.baseURL + "/connect/sandbox?", "return page prints", dataDir} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, banner.String())
		}
	}
	// The banner names no connection in its curl line: when it prints,
	// there is none yet. It prints the line's template.
	if m := bannerTokenURLRE.FindAllStringSubmatch(banner.String(), -1); len(m) != 1 || m[0][1] != "<connection_id>" {
		t.Errorf("the banner's token route names %q, want one template naming <connection_id>:\n%s", m, banner.String())
	}

	// A second start on the same directory keeps the generated secrets.
	s2 := startServer(t, dataDir, &testClock{}, io.Discard)
	secretsAfter, _ := os.ReadFile(filepath.Join(dataDir, "secrets.json"))
	if !bytes.Equal(secretsBefore, secretsAfter) {
		t.Error("secrets.json was regenerated")
	}
	if s2.baseURL == s.baseURL {
		t.Error("two servers on one port")
	}
}

// TestConnectionIDsNeverRepeat: every connect link the demo app signs, in
// its pages or its banner, is for a new connection id — also after a
// restart on the same data directory, where the store still holds the
// connections made before.
func TestConnectionIDsNeverRepeat(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "dev")
	seen := map[string]bool{}
	for run := range 2 {
		s, stop := runServer(t, dataDir, &testClock{}, io.Discard, time.Hour)
		var banner strings.Builder
		if err := s.printBanner(context.Background(), &banner); err != nil {
			t.Fatal(err)
		}
		pages := []string{banner.String()}
		br := newBrowser(t)
		for range 3 {
			_, body := br.get(s.baseURL + "/")
			pages = append(pages, body)
		}
		for _, page := range pages {
			m := connectLinkInPageRE.FindStringSubmatch(html.UnescapeString(page))
			if m == nil {
				t.Fatalf("run %d: no connect link in:\n%s", run, page)
			}
			link, err := url.Parse(m[0])
			if err != nil {
				t.Fatal(err)
			}
			id := link.Query().Get("connection_id")
			if !connectionIDRE.MatchString(id) || seen[id] {
				t.Errorf("run %d: connect link for connection id %q (seen before: %v)", run, id, seen[id])
			}
			seen[id] = true
		}
		stop()
	}
}

// connect follows a connect link through the broker, the sandbox's
// consent page (Approve) and the callback, as a browser would, and
// returns the URL of the app's return page.
func connect(t *testing.T, br *browser, base, link string) string {
	t.Helper()
	resp, body := br.get(link)
	authURL := redirect(t, "connect", resp, body, base+"/sandbox/authorize?")
	_, body = br.get(authURL)
	rm := requestIDRE.FindStringSubmatch(body)
	if rm == nil {
		t.Fatalf("no request id on the consent page:\n%s", body)
	}
	resp, body = br.postForm(base+"/sandbox/decide", url.Values{"request": {html.UnescapeString(rm[1])}, "decision": {"approve"}})
	callbackURL := redirect(t, "approve", resp, body, base+"/callback/sandbox?")
	if cb, err := url.Parse(callbackURL); err == nil {
		logcheck.Register(cb.Query().Get("code"), cb.Query().Get("state"))
	}
	resp, body = br.get(callbackURL)
	return confirmed(t, br, base, redirect(t, "callback", resp, body, base+"/app/return?"))
}

// confirmed opens the return URL the callback sent the browser to (status
// pending, with a confirmation code), where the demo app confirms the
// grant of a connection its session owns and sends the browser on to the
// return page without the used code; it returns that page's URL.
func confirmed(t *testing.T, br *browser, base, returnURL string) string {
	t.Helper()
	ru, _ := url.Parse(returnURL)
	q := ru.Query()
	logcheck.Register(q.Get("confirmation"))
	if q.Get("status") != "pending" || len(q.Get("confirmation")) < 43 || q.Has("code") || q.Has("state") {
		t.Fatalf("return URL %q: want status=pending with a confirmation code, and no code or state", returnURL)
	}
	resp, body := br.get(returnURL)
	loc := resp.Header.Get("Location")
	want := "/app/return?" + url.Values{"connection_id": {q.Get("connection_id")}, "confirmed": {"true"}}.Encode()
	if resp.StatusCode != http.StatusSeeOther || loc != want {
		t.Fatalf("the app's return page: %d Location %q, want 303 to %s (it confirms, then drops the code)\n%s", resp.StatusCode, loc, want, body)
	}
	return base + loc
}

// homeLink opens the demo app's page and returns its connect link and the
// connection id it is for.
func homeLink(t *testing.T, br *browser, base string) (link, id string) {
	t.Helper()
	_, body := br.get(base + "/")
	m := connectLinkRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no connect link on the home page:\n%s", body)
	}
	link = html.UnescapeString(m[1])
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	logcheck.Register(link, u.Query().Get("sig"))
	return link, u.Query().Get("connection_id")
}

// getToken asks s's token route for id's token, with the dev key.
func getToken(t *testing.T, s *devServer, id, query string) (int, tokenAnswer) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.baseURL+"/connections/sandbox/"+id+"/token"+query, nil)
	req.Header.Set("Authorization", "Bearer "+s.devKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tok tokenAnswer
	_ = json.NewDecoder(res.Body).Decode(&tok)
	logcheck.Register(tok.AccessToken)
	return res.StatusCode, tok
}

// TestConnectionsSurviveRestart: a connection made before a restart of
// make dev on the same data directory still reads and refreshes its
// token after it — the sandbox kept its grant.
func TestConnectionsSurviveRestart(t *testing.T) {
	clk := &testClock{}
	dataDir, br, id, before := connectedThenStopped(t, clk)

	s2 := startServer(t, dataDir, clk, &syncbuf.Buffer{})
	ctx := context.Background()

	// The token, read with the curl line the new return page prints.
	_, body := br.get(s2.baseURL + "/app/return?connection_id=" + id)
	curl := curlLineRE.FindString(html.UnescapeString(body))
	if curl == "" {
		t.Fatalf("the return page prints no curl line:\n%s", body)
	}
	if tok := runCurl(t, curl); tok.AccessToken != before.AccessToken {
		t.Error("after the restart the token route answers another access token")
	}
	// A refresh on demand, then one by the schedule.
	status, tok := getToken(t, s2, id, "?force_refresh=true")
	if status != http.StatusOK || tok.AccessToken == "" || tok.AccessToken == before.AccessToken {
		t.Fatalf("force_refresh after the restart: %d, renewed %v", status, tok.AccessToken != before.AccessToken)
	}
	c := s2.connection(t, id)
	clk.Add(c.NextRefresh.Sub(clk.Now()) + time.Second)
	if sum, err := s2.refreshOnce(ctx); err != nil || sum.Refreshed != 1 {
		t.Fatalf("scheduled refresh after the restart: %+v %v", sum, err)
	}
	after := s2.connection(t, id)
	if after.Status != store.StatusConnected || after.Version <= c.Version {
		t.Errorf("after the scheduled refresh: status %q, version %d → %d", after.Status, c.Version, after.Version)
	}
}

// TestNeedsReauthReturnPageReconnects: when the provider has forgotten a
// grant (here: the sandbox's file is gone), the connection becomes
// needs_reauth, and its return page offers a button that connects the
// same connection id afresh.
func TestNeedsReauthReturnPageReconnects(t *testing.T) {
	clk := &testClock{}
	dataDir, br, id, _ := connectedThenStopped(t, clk)
	if err := os.Remove(filepath.Join(dataDir, "sandbox.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}

	s := startServer(t, dataDir, clk, &syncbuf.Buffer{})
	if status, _ := getToken(t, s, id, "?force_refresh=true"); status != http.StatusConflict {
		t.Fatalf("force_refresh of a forgotten grant: %d, want 409 reauth_required", status)
	}
	c := s.connection(t, id)
	if c.Status != store.StatusNeedsReauth {
		t.Fatalf("status %q, want needs_reauth", c.Status)
	}

	// The return page shows the status and a Reconnect button, a connect
	// link signed for the same connection id.
	_, body := br.get(s.baseURL + "/app/return?connection_id=" + id)
	if !strings.Contains(body, "<td>needs_reauth</td>") {
		t.Errorf("the return page does not show needs_reauth:\n%s", body)
	}
	m := reconnectRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the return page of a needs_reauth connection has no Reconnect button:\n%s", body)
	}
	reconnect := html.UnescapeString(m[1])
	u, err := url.Parse(reconnect)
	if err != nil || u.Query().Get("connection_id") != id || !strings.HasPrefix(reconnect, s.baseURL+"/connect/sandbox?") {
		t.Fatalf("the Reconnect button goes to %q, want a connect link for %s", reconnect, id)
	}
	logcheck.Register(reconnect, u.Query().Get("sig"))

	// Following it connects the same id again.
	returnURL := connect(t, br, s.baseURL, reconnect)
	ru, _ := url.Parse(returnURL)
	if q := ru.Query(); q.Get("confirmed") != "true" || q.Get("connection_id") != id {
		t.Fatalf("return URL after reconnecting %q", returnURL)
	}
	again := s.connection(t, id)
	if again.Status != store.StatusConnected || again.AccessToken == c.AccessToken {
		t.Errorf("after reconnecting: status %q, new token %v", again.Status, again.AccessToken != c.AccessToken)
	}
	if status, tok := getToken(t, s, id, ""); status != http.StatusOK || tok.AccessToken != again.AccessToken {
		t.Errorf("token after reconnecting: %d", status)
	}
	// A connected connection's page offers no Reconnect button.
	if _, body := br.get(returnURL); reconnectRE.MatchString(body) {
		t.Errorf("the return page of a connected connection offers Reconnect:\n%s", body)
	}
}

func TestAppReturnEscapesQuery(t *testing.T) {
	s := startServer(t, t.TempDir(), &testClock{}, io.Discard)
	br := newBrowser(t)
	_, body := br.get(s.baseURL + "/app/return?" + url.Values{
		"error":         {"<script>alert(1)</script>"},
		"status":        {"<b>x</b>"},
		"connection_id": {"<img src=x>"},
	}.Encode())
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<b>x") || strings.Contains(body, "<img") {
		t.Fatalf("query echoed into the page:\n%s", body)
	}
	if !strings.Contains(body, "unrecognised error") {
		t.Errorf("unknown error code not reported:\n%s", body)
	}
}

var (
	// curlLineRE matches the curl line the dev server prints for a
	// connection's token.
	curlLineRE          = regexp.MustCompile(`curl -s -H "Authorization: Bearer \$\(cat '([^']*)'\)" (http://[^\s<]+/token)`)
	bannerTokenURLRE    = regexp.MustCompile(`/connections/sandbox/(\S+)/token`)
	connectLinkInPageRE = regexp.MustCompile(`http://localhost:\d+/connect/sandbox\?[^"\s]+`)
	reconnectRE         = regexp.MustCompile(`<a class="button" href="(http://localhost:\d+/connect/sandbox\?[^"]+)">Reconnect`)
)

// tokenAnswer is the token route's 200 answer.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresAt   string `json:"expires_at"`
}

// runCurl performs line, a curl command the dev server printed, the way a
// shell and curl would: $(cat FILE) is the file's content without its
// trailing newlines, and the URL is fetched with that header. It fails
// the test unless the answer is a 200 token.
func runCurl(t *testing.T, line string) tokenAnswer {
	t.Helper()
	m := curlLineRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not a curl line of the dev server: %q", line)
	}
	key, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatalf("the curl line's key file: %v", err)
	}
	req, err := http.NewRequest(http.MethodGet, m[2], nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimRight(string(key), "\n"))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		// A non-200 answer is an error code, never a token: safe to show.
		t.Fatalf("the curl line answered %d %.300q", res.StatusCode, body)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the token route answered Cache-Control %q, want no-store", cc)
	}
	var tok tokenAnswer
	if err := json.Unmarshal(body, &tok); err != nil {
		t.Fatalf("the token route answered no JSON (%d bytes): %v", len(body), err)
	}
	logcheck.Register(tok.AccessToken)
	return tok
}

func hasCookie(cs []*http.Cookie, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

// redact keeps failure messages free of tokens.
func redact(c store.Connection) store.Connection {
	c.AccessToken, c.RefreshToken = "[redacted]", "[redacted]"
	return c
}
