package oauthserver

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
)

// The consent page (Config.ConsentPage) and the error pages of the
// authorization endpoint.

// pageStyle is the pages' only style; the CSP allows it by hash, so no
// inline script or other style can run.
const pageStyle = `body{font:16px/1.5 system-ui,sans-serif;max-width:38em;margin:2em auto;padding:0 1em;color:#222}` +
	`.dev{background:#b00020;color:#fff;font-weight:bold;padding:.6em 1em;border-radius:4px}` +
	`code{background:#f2f2f2;padding:0 .25em;border-radius:3px}` +
	`button{font:inherit;padding:.45em 1.4em;margin-right:.6em;border-radius:4px;border:1px solid #888;cursor:pointer}` +
	`button[value=approve]{background:#1a7f37;color:#fff;border-color:#1a7f37}` +
	`.small{color:#555;font-size:.9em}`

var styleHash = func() string {
	sum := sha256.Sum256([]byte(pageStyle))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// pageCSP allows nothing but the style above, and form submission to the
// server itself — and to the redirect URI's origin, which browsers check
// when the form's response redirects there.
func pageCSP(redirectOrigin string) string {
	return "default-src 'none'; style-src " + styleHash + "; form-action 'self' " + redirectOrigin +
		"; frame-ancestors 'none'; base-uri 'none'"
}

type pageData struct {
	Title   string
	Message string
	// Consent page only.
	App       string
	ClientID  string
	Scopes    []string
	RequestID string
	Action    string
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>` + pageStyle + `</style>
<p class="dev">DEV ONLY — a fake OAuth provider for local development. Never deploy it; never enter real credentials here.</p>
<h1>{{.Title}}</h1>
{{- if .RequestID}}
<p><strong>{{.App}}</strong> wants access to {{range $i, $s := .Scopes}}{{if $i}}, {{end}}<code>{{$s}}</code>{{end}}.</p>
<p class="small">Client <code>{{.ClientID}}</code>. There is no account here: approving signs in as a fictional user.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="request" value="{{.RequestID}}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
{{- else}}
<p>{{.Message}}</p>
{{- end}}
</html>
`))

// app is the client shown on the consent page: the redirect URI's host.
func (s *Server) app() string {
	u, _ := url.Parse(s.cfg.RedirectURI) // checked in open
	return u.Host
}

// page renders an HTML page with the consent page's security headers.
func (s *Server) page(w http.ResponseWriter, status int, d pageData) {
	h := w.Header()
	noStore(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.pageCSP)
	h.Set("Referrer-Policy", "no-referrer") // the authorize URL holds the state
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, d)
}

// refuse answers an authorization request that must not be redirected
// with a fixed message, nothing from the request echoed: an HTML page
// where users see it (ConsentPage), else plain text.
func (s *Server) refuse(w http.ResponseWriter, status int, message string) {
	if s.cfg.ConsentPage {
		s.page(w, status, pageData{Title: s.cfg.Title + " — " + http.StatusText(status), Message: message})
		return
	}
	http.Error(w, message, status)
}

func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}
