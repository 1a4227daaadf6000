package provider

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTokenResponses(t *testing.T) {
	tests := []struct {
		name, ctype, body string
		status            int
		header            http.Header
		failure           Failure
		check             func(*testing.T, *Token, *Error)
	}{
		{name: "omnisend never expires", status: 200, body: `{"access_token":"a","token_type":"Bearer","expires_in":9223372036}`,
			check: func(t *testing.T, tok *Token, _ *Error) {
				if !tok.ExpiresAt.IsZero() {
					t.Errorf("ExpiresAt = %v, want none", tok.ExpiresAt)
				}
			}},
		{name: "string expires_in", status: 200, body: `{"access_token":"a","token_type":"Bearer","expires_in":"300"}`,
			check: func(t *testing.T, tok *Token, _ *Error) {
				if !tok.ExpiresAt.Equal(t0.Add(300 * time.Second)) {
					t.Errorf("ExpiresAt = %v", tok.ExpiresAt)
				}
			}},
		{name: "narrower scope kept as granted (S14)", status: 200, body: `{"access_token":"a","token_type":"Bearer","scope":"read"}`,
			check: func(t *testing.T, tok *Token, _ *Error) {
				if tok.Scope != "read" || !tok.ExpiresAt.IsZero() {
					t.Errorf("token %+v", tok)
				}
			}},
		{name: "form encoded response", status: 200, ctype: "application/x-www-form-urlencoded", body: `access_token=a&token_type=bearer&expires_in=60`},
		{name: "mac token type (S14)", status: 200, body: `{"access_token":"a","token_type":"mac"}`, failure: FailureResponse},
		{name: "no token type", status: 200, body: `{"access_token":"a"}`, failure: FailureResponse},
		{name: "no access token", status: 200, body: `{"token_type":"bearer"}`, failure: FailureResponse},
		{name: "negative expires_in", status: 200, body: `{"access_token":"a","token_type":"bearer","expires_in":-1}`, failure: FailureResponse},
		{name: "html 200", status: 200, ctype: "text/html", body: `<html>hi</html>`, failure: FailureResponse},
		{name: "garbage json", status: 200, body: `{"access_token":`, failure: FailureResponse},
		{name: "error in 200", status: 200, body: `{"error":"invalid_grant"}`, failure: FailureGrant},
		{name: "invalid_grant", status: 400, body: `{"error":"invalid_grant","error_description":"used"}`, failure: FailureGrant},
		{name: "invalid_client", status: 401, body: `{"error":"invalid_client"}`, failure: FailureClient},
		{name: "invalid_scope", status: 400, body: `{"error":"invalid_scope"}`, failure: FailureRequest},
		{name: "unsafe error code dropped", status: 400, body: `{"error":"<script>"}`, failure: FailureResponse,
			check: func(t *testing.T, _ *Token, e *Error) {
				if e.Code != "" {
					t.Errorf("Code = %q", e.Code)
				}
			}},
		{name: "500", status: 500, body: `oops`, failure: FailureUnavailable},
		{name: "html 502", status: 502, ctype: "text/html", body: `<html>bad gateway</html>`, failure: FailureUnavailable},
		{name: "429 retry-after", status: 429, header: http.Header{"Retry-After": {"120"}}, body: `{}`, failure: FailureUnavailable,
			check: func(t *testing.T, _ *Token, e *Error) {
				if e.RetryAfter != 2*time.Minute {
					t.Errorf("RetryAfter = %v", e.RetryAfter)
				}
			}},
		{name: "redirect not followed (S13)", status: 307, header: http.Header{"Location": {"/elsewhere"}}, failure: FailureResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				ct := tt.ctype
				if ct == "" {
					ct = "application/json"
				}
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			tok, err := client().Refresh(context.Background(), testProvider(t, srv.URL, ClientAuthBasic, TokenRequestForm), creds, "rt-secret")
			var pe *Error
			if tt.failure == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if !errors.As(err, &pe) || pe.Failure != tt.failure {
				t.Fatalf("err = %v, want failure %s", err, tt.failure)
			}
			if err != nil && (strings.Contains(err.Error(), "rt-secret") || strings.Contains(err.Error(), srv.URL)) {
				t.Fatalf("error leaks a credential or URL: %v", err)
			}
			if hits.Load() != 1 {
				t.Fatalf("%d requests, want exactly 1", hits.Load())
			}
			if tt.check != nil {
				tt.check(t, tok, pe)
			}
		})
	}
}

// TestIssuedAt: Outstand's "created_at" is the base of expires_in when it
// is believable, and never lengthens a lifetime.
func TestIssuedAt(t *testing.T) {
	doc := "providers:\n  outstand:\n    authorization_url: https://o.example/a\n    token_url: %s\n    grant_types: [authorization_code, refresh_token]\n    expiry: {issued_at_field: created_at}\n"
	tests := []struct {
		name      string
		createdAt string
		want      time.Time
	}{
		{"a little before the request", `1799999990`, t0.Add(-10 * time.Second).Add(7200 * time.Second)},
		{"as a string", `"1799999990"`, t0.Add(-10 * time.Second).Add(7200 * time.Second)},
		{"after the request (fast clock)", `1800000030`, t0.Add(7200 * time.Second)},
		{"the document's own example (2015)", `1447820578`, t0.Add(7200 * time.Second)},
		{"far future", `1900000000`, t0.Add(7200 * time.Second)},
		{"not a number", `"yesterday"`, t0.Add(7200 * time.Second)},
		{"null", `null`, t0.Add(7200 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"access_token":"a","token_type":"bearer","expires_in":7200,"refresh_token":"r","created_at":`+tt.createdAt+`}`)
			}))
			defer srv.Close()
			c, err := parseDoc("test", []byte(strings.Replace(doc, "%s", srv.URL, 1)))
			if err != nil {
				t.Fatal(err)
			}
			p, _ := c.Get("outstand")
			tok, err := client().Refresh(context.Background(), endpoint(t, p), creds, "r")
			if err != nil {
				t.Fatal(err)
			}
			if !tok.ExpiresAt.Equal(tt.want) || tok.Lifetime != 7200*time.Second {
				t.Fatalf("ExpiresAt = %v, want %v", tok.ExpiresAt, tt.want)
			}
		})
	}
}

// TestKaisaUndocumentedResponse: Kaisa's document shows no response body,
// only "The token will expire in 5 minutes (300 seconds)." The embedded
// entry accepts an answer without token_type or expires_in and gives it
// 300 s.
func TestKaisaUndocumentedResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"kt"}`)
	}))
	defer srv.Close()
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := c.Get("kaisa")
	p := *k
	p.TokenURL = srv.URL
	tok, err := client().ClientCredentials(context.Background(), endpoint(t, &p), creds, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.Lifetime != 300*time.Second || !tok.ExpiresAt.Equal(t0.Add(300*time.Second)) {
		t.Fatalf("token %+v", tok)
	}
	if m := p.RefreshMargin(tok.Lifetime); m != 120*time.Second {
		t.Fatalf("refresh margin %v", m)
	}
}

// TestTokenValueSyntax: an access or refresh token is stored and handed to
// apps only when it is RFC 6749 Appendix A's VSCHAR (printable ASCII);
// anything else — a CR/LF that would split the app's Authorization header,
// a control character, non-ASCII — fails the response, in either encoding,
// and the error never repeats the value.
func TestTokenValueSyntax(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiZXhwIjoxODAwMDAwMDAwfQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmU_-w"
	tests := []struct {
		name  string
		ctype string // application/json if empty
		body  string
		ok    bool
	}{
		// Shapes real providers issue.
		{name: "JWT", body: `{"access_token":"` + jwt + `","token_type":"Bearer","refresh_token":"` + jwt + `"}`, ok: true},
		{name: "standard base64 with +/= padding", body: `{"access_token":"q83vEjRWeJA+/w==","token_type":"Bearer","refresh_token":"AAEC+/8="}`, ok: true},
		{name: "hex", body: `{"access_token":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","token_type":"Bearer"}`, ok: true},
		{name: "unreserved -._~", body: `{"access_token":"a-b.c_d~e","token_type":"Bearer","refresh_token":"r-1.2_3~4"}`, ok: true},
		{name: "providertest prefix", body: `{"access_token":"pta_2brSXjAaSKnfxMRGYjCn4oLxFm0V-WDEhsTb3BVNZQA","token_type":"Bearer","refresh_token":"ptr_x"}`, ok: true},
		{name: "Salesforce-style with !", body: `{"access_token":"00D5e000000AbCd!AQ0AQH1xYz.Abc_123","token_type":"Bearer"}`, ok: true},
		{name: "app token with |", body: `{"access_token":"123456789|abcDEF","token_type":"Bearer"}`, ok: true},
		{name: "form-encoded with +/=", ctype: "application/x-www-form-urlencoded", body: "access_token=q83vEjRWeJA%2B%2Fw%3D%3D&token_type=bearer&refresh_token=AAEC%2B%2F8%3D", ok: true},
		{name: "empty refresh_token means none", body: `{"access_token":"a","token_type":"Bearer","refresh_token":""}`, ok: true},

		// Values that must never reach the store or an app.
		{name: "CR LF in access_token", body: `{"access_token":"abc\r\nX-Injected: 1","token_type":"Bearer"}`},
		{name: "LF in access_token", body: `{"access_token":"abc\ndef","token_type":"Bearer"}`},
		{name: "CR LF in refresh_token", body: `{"access_token":"abc","token_type":"Bearer","refresh_token":"rt\r\nx"}`},
		{name: "tab", body: `{"access_token":"abc\tdef","token_type":"Bearer"}`},
		{name: "NUL", body: `{"access_token":"abc\u0000def","token_type":"Bearer"}`},
		{name: "DEL", body: `{"access_token":"abc` + "\x7f" + `def","token_type":"Bearer"}`},
		{name: "non-ASCII", body: `{"access_token":"abcédef","token_type":"Bearer"}`},
		{name: "line separator U+2028", body: `{"access_token":"abc\u2028def","token_type":"Bearer"}`},
		{name: "form-encoded CR LF", ctype: "application/x-www-form-urlencoded", body: "access_token=abc%0D%0AX-Injected%3A+1&token_type=bearer"},
		{name: "form-encoded CR LF in refresh_token", ctype: "application/x-www-form-urlencoded", body: "access_token=abc&token_type=bearer&refresh_token=r%0Ax"},
	}
	p := testProvider(t, "https://acme.example/token", ClientAuthBasic, TokenRequestForm)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.ctype
			if ct == "" {
				ct = "application/json"
			}
			tok, err := parseToken(p.Provider, ct, []byte(tt.body), t0)
			if tt.ok {
				if err != nil || tok.AccessToken == "" {
					t.Fatalf("err = %v, want a token", err)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Failure != FailureTokenSyntax || pe.Temporary() {
				t.Fatalf("token %v, err = %v; want a %s failure", tok != nil, err, FailureTokenSyntax)
			}
			if strings.Contains(err.Error(), "abc") || strings.ContainsAny(err.Error(), "\r\n\x00") {
				t.Fatalf("error repeats the value: %v", err)
			}
		})
	}
}
