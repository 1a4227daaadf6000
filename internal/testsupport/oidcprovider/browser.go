package oidcprovider

import (
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// DefaultAccount is the account a new Browser signs in as.
const DefaultAccount = "test-user"

// maxSteps bounds the pages and the redirects between them that one
// authorization may pass through (the login and consent forms take two
// pages).
const maxSteps = 10

// Browser stands in for a user agent: its cookie jar holds one
// oidc-provider session, so a second authorization with the same Browser
// finds the user signed in, and a new Browser starts a new session.
type Browser struct {
	// Account is the account id the login form is filled in with.
	Account string
	// Prompts are the pages the last Authorize answered, in order: "login"
	// and "consent", or none when the session already held the grant.
	Prompts []string
	// Client carries the session cookies. It follows redirects except those
	// to one of the server's redirect URIs.
	Client *http.Client

	srv *Server
}

// NewBrowser returns a Browser with an empty cookie jar, signing in as
// DefaultAccount.
func (s *Server) NewBrowser() *Browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		panic(err) // cookiejar.New fails only on a bad public suffix list
	}
	b := &Browser{Account: DefaultAccount, srv: s}
	b.Client = &http.Client{Jar: jar, CheckRedirect: b.checkRedirect}
	return b
}

// checkRedirect stops the client at a redirect to a redirect URI: the
// client answers that redirect.
func (b *Browser) checkRedirect(req *http.Request, via []*http.Request) error {
	if b.isRedirectURI(req.URL) {
		return http.ErrUseLastResponse
	}
	if len(via) >= maxSteps {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	return nil
}

// isRedirectURI tells whether u, without its query, is a registered
// redirect URI.
func (b *Browser) isRedirectURI(u *url.URL) bool {
	bare := *u
	bare.RawQuery, bare.Fragment = "", ""
	for _, r := range b.srv.RedirectURIs {
		if bare.String() == r {
			return true
		}
	}
	return false
}

var (
	formAction  = regexp.MustCompile(`<form[^>]*action="([^"]+)"[^>]*method="post"`)
	formPrompt  = regexp.MustCompile(`<input type="hidden" name="prompt" value="([a-z]+)"/>`)
	pageTitle   = regexp.MustCompile(`(?s)<title>(.*?)</title>`)
	pageMessage = regexp.MustCompile(`(?s)<body>(.*?)</body>`)
	markup      = regexp.MustCompile(`<[^>]*>`)
)

// Authorize sends the browser to authURL (an authorization request) and
// goes through the login and consent pages, signing in as b.Account and
// approving, until the server redirects to a redirect URI. It returns that
// redirect, carrying code, state and iss or an error, without following it.
func (b *Browser) Authorize(t testing.TB, authURL string) *url.URL {
	t.Helper()
	redirect, err := b.authorize(authURL)
	if err != nil {
		t.Fatalf("oidcprovider: authorization: %v", err)
	}
	return redirect
}

func (b *Browser) authorize(authURL string) (*url.URL, error) {
	b.Prompts = nil
	next := func() (*http.Response, error) { return b.Client.Get(authURL) }
	for range maxSteps {
		resp, err := next()
		if err != nil {
			return nil, withoutQuery(err)
		}
		page, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if loc, err := resp.Location(); err == nil && b.isRedirectURI(loc) {
			return loc, nil
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s %s answered %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, pageText(page))
		}
		action, form, err := b.fill(page)
		if err != nil {
			return nil, fmt.Errorf("page at %s: %v", resp.Request.URL.Path, err)
		}
		target, err := resp.Request.URL.Parse(action)
		if err != nil {
			return nil, err
		}
		next = func() (*http.Response, error) { return b.Client.PostForm(target.String(), form) }
	}
	return nil, fmt.Errorf("no redirect to a redirect URI after %d pages", maxSteps)
}

// withoutQuery drops the URL's query from a client error: an
// authorization request's query holds the state.
func withoutQuery(err error) error {
	var uerr *url.Error
	if !errors.As(err, &uerr) {
		return err
	}
	u, perr := url.Parse(uerr.URL)
	if perr != nil {
		return fmt.Errorf("%s: %w", uerr.Op, uerr.Err)
	}
	u.RawQuery, u.Fragment = "", ""
	return fmt.Errorf("%s %s: %w", uerr.Op, u, uerr.Err)
}

// fill reads a devInteractions page and returns where its form posts and
// what the user enters.
func (b *Browser) fill(page []byte) (action string, form url.Values, err error) {
	a, p := formAction.FindSubmatch(page), formPrompt.FindSubmatch(page)
	if a == nil || p == nil {
		return "", nil, fmt.Errorf("neither a login nor a consent form: %s", pageText(page))
	}
	form = url.Values{"prompt": {string(p[1])}}
	switch form.Get("prompt") {
	case "login":
		form.Set("login", b.Account)
		form.Set("password", "any")
	case "consent":
	default:
		return "", nil, fmt.Errorf("unknown prompt %q", p[1])
	}
	b.Prompts = append(b.Prompts, form.Get("prompt"))
	return html.UnescapeString(string(a[1])), form, nil
}

// pageText is a short plain-text version of an HTML page, for an error.
func pageText(page []byte) string {
	var parts []string
	for _, re := range []*regexp.Regexp{pageTitle, pageMessage} {
		if m := re.FindSubmatch(page); m != nil {
			parts = append(parts, string(m[1]))
		}
	}
	text := strings.Join(parts, " ")
	if text == "" {
		text = string(page)
	}
	text = html.UnescapeString(strings.Join(strings.Fields(markup.ReplaceAllString(text, " ")), " "))
	if len(text) > 500 {
		text = text[:500] + "…"
	}
	return strings.TrimSpace(text)
}
