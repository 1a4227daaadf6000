package main

import (
	"net/http"
	"strconv"
	"strings"
)

// localHostsOnly serves only requests whose Host header (RFC 9110 §7.2)
// names this server as its own links do, by a loopback name and its
// port: localhost, 127.0.0.1 or [::1]. Everything else is refused with
// 421 Misdirected Request (RFC 9110 §15.5.20).
//
// This is the defence against DNS rebinding: a page on a name of the
// attacker's that resolves to 127.0.0.1 can make the browser send it
// requests, but they carry the attacker's name in Host, so it never reads
// the demo app's freshly signed connect links or anything else served
// here. Browsers always send the port of a non-default port.
func localHostsOnly(port int, next http.Handler) http.Handler {
	p := ":" + strconv.Itoa(port)
	allowed := []string{"localhost" + p, "127.0.0.1" + p, "[::1]" + p}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range allowed {
			if strings.EqualFold(r.Host, h) { // host names are case-insensitive
				next.ServeHTTP(w, r)
				return
			}
		}
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Connection", "close")
		// The Host header is not echoed: the page states what is allowed.
		http.Error(w, "421 Misdirected Request: this oauthbroker dev server answers only http://localhost"+p+
			" (or 127.0.0.1"+p+", [::1]"+p+").", http.StatusMisdirectedRequest)
	})
}
