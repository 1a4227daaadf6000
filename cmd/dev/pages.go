package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/client"
	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

// The demo app's pages: plain HTML, html/template escaping, and a CSP
// that allows only their one stylesheet (by hash).

const appStyle = `body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em;color:#222}` +
	`.dev{background:#b00020;color:#fff;font-weight:bold;padding:.6em 1em;border-radius:4px}` +
	`.button{display:inline-block;background:#1f6feb;color:#fff;padding:.55em 1.2em;border-radius:4px;text-decoration:none}` +
	`code{background:#f2f2f2;padding:0 .25em;border-radius:3px}` +
	`pre{background:#f2f2f2;padding:.5em;border-radius:3px;white-space:pre-wrap;overflow-wrap:anywhere}` +
	`th{text-align:left;padding-right:1.5em;font-weight:600}.small{color:#555;font-size:.9em}`

var appCSP = func() string {
	sum := sha256.Sum256([]byte(appStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
}()

const pageHead = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>` + appStyle + `</style>
<p class="dev">Local development only: the embedded store, a local secrets file and the sandbox provider. No AWS account, no real provider.</p>
<h1>{{.Title}}</h1>
`

var homeTmpl = template.Must(template.New("home").Parse(pageHead + `
<p>This page plays your SaaS app. Its backend has signed a connect link for
the customer connection <code>{{.ConnectionID}}</code>; the button sends the
browser to the broker, which sends it to the provider's consent page.</p>
<p><a class="button" href="{{.Link}}">Connect the sandbox provider</a></p>
<p class="small">The link is valid for {{.LinkTTL}}; reload the page for a new connection id.
Sandbox access tokens live {{.TokenTTL}}; the refresh schedule runs every {{.RefreshEvery}}
here (EventBridge in AWS) and renews each token before it expires.</p>
<p class="small">Data: <code>{{.DataDir}}</code></p>
</html>
`))

var returnTmpl = template.Must(template.New("return").Parse(pageHead + `
{{- if .Error}}
<p>The connection failed: <code>{{.Error}}</code>.</p>
{{- else if .Confirmed}}
<p>Confirmed: the app checked that your session owns this connection (its page minted the link), and
its backend confirmed the grant with the confirmation code the broker sent back
(<code>POST /connections/sandbox/{{.ConnectionID}}/confirm</code>, the Go client's <code>Confirm</code>), which answered
<code>connected</code>.</p>
{{- else if .NotConfirmed}}
<p>Not confirmed: your session does not own connection <code>{{.ConnectionID}}</code> (its link was minted for
another user of the app), so the app did not confirm the grant. It serves no token, and the broker revokes it at the
provider once its confirmation code expires.</p>
{{- else if .Status}}
<p>The broker sent the browser back with status <code>{{.Status}}</code>.</p>
{{- end}}
{{- if .ConnectionID}}
<h2>Connection <code>{{.ConnectionID}}</code></h2>
{{- with .Conn}}
<table>
<tr><th>Status</th><td>{{.Status}}</td></tr>
<tr><th>Scope</th><td>{{.Scope}}</td></tr>
<tr><th>Access token expires</th><td>{{.Expires}}</td></tr>
<tr><th>Refresh due</th><td>{{.NextRefresh}}</td></tr>
<tr><th>Version</th><td>{{.Version}}</td></tr>
<tr><th>Updated</th><td>{{.Updated}}</td></tr>
{{- if .LastError}}
<tr><th>Last error</th><td>{{.LastError}}</td></tr>
{{- end}}
</table>
{{- if $.Reconnect}}
<p>The provider no longer accepts this connection's grant: the customer must connect again.</p>
<p><a class="button" href="{{$.Reconnect}}">Reconnect the sandbox provider</a></p>
{{- end}}
<p>Fetch its token as your backend would (in AWS: SigV4/IAM, not this dev-only key):</p>
<pre>{{$.Curl}}</pre>
{{- else}}
<p>No such connection in the store.</p>
{{- end}}
{{- end}}
<p class="small">Tokens are kept server-side by the broker (in the store) and
are never shown to the browser. Reload this page to watch the refresh
schedule renew them: the expiry moves and the version goes up.</p>
<p><a href="/">Back to the app</a></p>
</html>
`))

// Patterns for what /app/return shows from its query; anything else is
// dropped rather than shown.
var (
	codeRE         = regexp.MustCompile(`^[a-z_]{1,40}$`)
	connectionIDRE = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,128}$`)
)

type pageData struct {
	Title string
	// Home.
	Link, ConnectionID, LinkTTL, TokenTTL, RefreshEvery, DataDir string
	// Return.
	Status, Error           string
	Confirmed, NotConfirmed bool
	Conn                    *connView
	Curl                    string // fetches the connection's token
	Reconnect               string // a connect link for the same connection, when it needs_reauth
}

// connView is what the return page may show of a connection: no token.
type connView struct {
	Status, Scope, Expires, NextRefresh, Updated, LastError string
	Version                                                 int64
}

func (s *devServer) home(w http.ResponseWriter, r *http.Request) {
	id := newConnectionID()
	if err := s.app.own(s.app.session(w, r), id); err != nil {
		s.log.ErrorContext(r.Context(), "the demo app could not record its session", "cause", err.Error())
		http.Error(w, "Cannot record the session; see the server log.", http.StatusServiceUnavailable)
		return
	}
	link, err := s.connectLink(r.Context(), id, pageLinkTTL)
	if err != nil {
		s.log.ErrorContext(r.Context(), "signing a connect link failed", "cause", err.Error())
		http.Error(w, "Cannot sign a connect link; see the server log.", http.StatusServiceUnavailable)
		return
	}
	render(w, homeTmpl, pageData{
		Title:        "oauthbroker — demo app",
		Link:         link,
		ConnectionID: id,
		LinkTTL:      pageLinkTTL.String(),
		TokenTTL:     sandboxTokenTTL.String(),
		RefreshEvery: s.refreshEvery.String(),
		DataDir:      absDir(s.dataDir),
	})
}

// appReturn is the app's return URL: it confirms a pending grant of a
// connection the browser's session owns (S24), and shows what the broker
// reported and the stored connection's state. The query is an unsigned
// hint; the confirm answer and the store are the truth.
func (s *devServer) appReturn(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := pageData{Title: "oauthbroker — back in the app"}
	if id := q.Get("connection_id"); q.Get("status") == "pending" && q.Has("confirmation") && connectionIDRE.MatchString(id) {
		if !s.app.owns(r, id) {
			d.NotConfirmed = true
		} else {
			_, err := s.app.client.Confirm(r.Context(), providerName, id, q.Get("confirmation"))
			switch {
			case err == nil:
				// Off the address bar with the used code, as an app would.
				http.Redirect(w, r, "/app/return?"+url.Values{"connection_id": {id}, "confirmed": {"true"}}.Encode(), http.StatusSeeOther)
				return
			case errors.Is(err, client.ErrConfirmationInvalid):
				d.Error = "confirmation_invalid"
			default:
				s.log.ErrorContext(r.Context(), "confirming a connection failed", "cause", err.Error())
				http.Error(w, "Cannot confirm the connection; see the server log.", http.StatusServiceUnavailable)
				return
			}
		}
	}
	if v := q.Get("status"); codeRE.MatchString(v) && !d.NotConfirmed {
		d.Status = v
	}
	if v := q.Get("error"); codeRE.MatchString(v) {
		d.Error = v
	} else if q.Has("error") {
		d.Error = "unrecognised error"
	}
	if id := q.Get("connection_id"); connectionIDRE.MatchString(id) {
		d.ConnectionID = id
		c, err := s.store.GetConnection(r.Context(), providerName, id)
		switch {
		case err == nil:
			d.Conn = s.view(c)
			d.Confirmed = q.Get("confirmed") == "true" && c.Status == store.StatusConnected
			d.Curl = s.curlLine(id)
			if c.Status == store.StatusNeedsReauth && s.app.owns(r, id) {
				// As the app would: ask the customer to connect again, with
				// a fresh link for the same connection.
				if d.Reconnect, err = s.connectLink(r.Context(), id, pageLinkTTL); err != nil {
					s.log.ErrorContext(r.Context(), "signing a connect link failed", "cause", err.Error())
					http.Error(w, "Cannot sign a connect link; see the server log.", http.StatusServiceUnavailable)
					return
				}
			}
		case !errors.Is(err, store.ErrNotFound):
			s.log.ErrorContext(r.Context(), "reading a connection failed", "cause", err.Error())
			http.Error(w, "Cannot read the store; see the server log.", http.StatusServiceUnavailable)
			return
		}
	}
	render(w, returnTmpl, d)
}

func (s *devServer) view(c store.Connection) *connView {
	now := s.now()
	when := func(t time.Time, zero string) string {
		if t.IsZero() {
			return zero
		}
		rel := t.Sub(now).Round(time.Second)
		switch {
		case rel == 0:
			return t.UTC().Format(time.RFC3339) + " (now)"
		case rel > 0:
			return fmt.Sprintf("%s (in %s)", t.UTC().Format(time.RFC3339), rel)
		default:
			return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), -rel)
		}
	}
	return &connView{
		Status:      string(c.Status),
		Scope:       c.Scope,
		Expires:     when(c.ExpiresAt, "never"),
		NextRefresh: when(c.NextRefresh, "not scheduled"),
		Updated:     when(c.UpdatedAt, "—"),
		LastError:   c.LastError,
		Version:     c.Version,
	}
}

func render(w http.ResponseWriter, t *template.Template, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", appCSP)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	_ = t.Execute(w, d)
}

// printBanner tells the developer where to go. The connect link is
// printed on purpose: it is what the app would put behind its button.
// No connection exists yet, so the curl line is a template; the return
// page prints it for its connection.
func (s *devServer) printBanner(ctx context.Context, w io.Writer) error {
	link, err := s.connectLink(ctx, newConnectionID(), bannerLinkTTL)
	if err != nil {
		return err
	}
	warn := ""
	if host, _, _ := net.SplitHostPort(s.listener.Addr().String()); !returnto.IsLoopback(host) {
		warn = "\n  WARNING    listening on " + host + ": this server has no authentication; keep it on loopback.\n"
	}
	_, err = fmt.Fprintf(w, `
  oauthbroker dev server — local only: sandbox provider, embedded store, no AWS
%s
  Open       %s/
  Connect    %s
             (signed for a new connection; valid %s)
  Token      after connecting, the app's return page prints the curl line that fetches the
             connection's token as your backend would (in AWS: SigV4/IAM, not this dev key):
             %s
  Data       %s  (secrets.json, providers.yaml, store.json, store.key, sandbox.json, dev-api-key)
  Refresh    every %s; sandbox tokens live %s
  Stop       Ctrl-C

`, warn, s.baseURL, link, bannerLinkTTL, s.curlLine("<connection_id>"), absDir(s.dataDir), s.refreshEvery, sandboxTokenTTL)
	return err
}

// curlLine is the shell command that fetches connectionID's token from
// the token route with the dev key, read from its file so that the key
// itself is printed nowhere.
func (s *devServer) curlLine(connectionID string) string {
	return `curl -s -H "Authorization: Bearer $(cat ` + shellQuote(filepath.Join(absDir(s.dataDir), devKeyFile)) + `)" ` +
		s.baseURL + "/connections/" + providerName + "/" + connectionID + "/token"
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
