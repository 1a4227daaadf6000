package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The verifier is checked against the AWS Signature Version 4 test suite's
// get-vanilla case, so that it does not merely agree with the SDK.
func TestVerifierKnownVector(t *testing.T) {
	v := &verifier{
		creds:   aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
		region:  "us-east-1",
		service: "service",
		now:     func() time.Time { return time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC) },
	}
	for _, tt := range []struct {
		name, sig string
		ok        bool
	}{
		{"get-vanilla", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", true},
		{"one digit off", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf32", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Host = "example.amazonaws.com"
			r.Header.Set("X-Amz-Date", "20150830T123600Z")
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "+
				"SignedHeaders=host;x-amz-date, Signature="+tt.sig)
			msg := v.verify(r, nil)
			if (msg == "") != tt.ok {
				t.Errorf("verify: %q, want ok %v", firstLine(msg), tt.ok)
			}
		})
	}
}

func TestTokenDecoding(t *testing.T) {
	t.Parallel()
	clock := newClock()
	exp := clock.Now().Add(time.Hour).Truncate(time.Second)
	tok := secretToken("at-decode")
	for _, tt := range []struct {
		name    string
		body    string
		want    *Token
		wantErr string
	}{
		{
			name: "full",
			body: tokenAnswer(tok, exp, "read write", map[string]string{"user_id": "42"}).body,
			want: &Token{AccessToken: tok, TokenType: "Bearer", ExpiresAt: exp, Scope: "read write", Metadata: map[string]string{"user_id": "42"}},
		},
		{
			name: "no expiry, scope or metadata",
			body: `{"access_token":"` + tok + `","token_type":"Bearer"}`,
			want: &Token{AccessToken: tok, TokenType: "Bearer"},
		},
		{
			name: "lower-case bearer, empty metadata, unknown field",
			body: `{"access_token":"` + tok + `","token_type":"bearer","metadata":{},"new_field":1}`,
			want: &Token{AccessToken: tok, TokenType: "Bearer"},
		},
		{
			name: "other token type kept",
			body: `{"access_token":"` + tok + `","token_type":"MAC"}`,
			want: &Token{AccessToken: tok, TokenType: "MAC"},
		},
		{name: "no access token", body: `{"token_type":"Bearer"}`, wantErr: "no access_token"},
		{name: "bad expiry", body: `{"access_token":"` + tok + `","expires_at":"tomorrow ` + tok + `"}`, wantErr: "invalid expires_at"},
		{name: "header injection in type", body: `{"access_token":"` + tok + `","token_type":"Bearer\r\nX: ` + tok + `"}`, wantErr: "invalid token_type"},
		{name: "space in token", body: `{"access_token":"` + tok + ` x"}`, wantErr: "cannot go in a header"},
		{name: "not JSON", body: `access_token=` + tok, wantErr: "not a token object"},
		{name: "array", body: `["` + tok + `"]`, wantErr: "not a token object"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, clock, func(routeRequest) answer { return answer{status: 200, body: tt.body} })
			got, err := newTestClient(t, api, clock).Token(context.Background(), "acme", "cust-42")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				assertClean(t, "error", err.Error(), tok)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.ExpiresAt.Equal(tt.want.ExpiresAt) {
				t.Errorf("ExpiresAt %v, want %v", got.ExpiresAt, tt.want.ExpiresAt)
			}
			got.ExpiresAt = tt.want.ExpiresAt
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want) // redacted by String
			}
		})
	}
}

func TestTokenValid(t *testing.T) {
	now := newClock().Now()
	for _, tt := range []struct {
		name string
		tok  *Token
		want bool
	}{
		{"nil", nil, false},
		{"empty", &Token{}, false},
		{"no expiry", &Token{AccessToken: "x"}, true},
		{"future", &Token{AccessToken: "x", ExpiresAt: now.Add(time.Second)}, true},
		{"now", &Token{AccessToken: "x", ExpiresAt: now}, false},
		{"past", &Token{AccessToken: "x", ExpiresAt: now.Add(-time.Second)}, false},
	} {
		if got := tt.tok.Valid(now); got != tt.want {
			t.Errorf("%s: Valid %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	clock := newClock()
	httpDate := clock.Now().Add(90 * time.Second).Format(http.TimeFormat)
	for _, tt := range []struct {
		name       string
		ans        answer
		wantStatus int
		wantCode   Code
		wantRetry  time.Duration
		wantIs     error
	}{
		{"bad request", errorAnswer(400, "invalid_request"), 400, CodeInvalidRequest, 0, nil},
		{"not found", errorAnswer(404, "not_found"), 404, CodeNotFound, 0, ErrNotFound},
		{"reauth", errorAnswer(409, "reauth_required"), 409, CodeReauthRequired, 0, ErrReauthRequired},
		{"unavailable", answer{503, map[string]string{"Retry-After": "7"}, `{"error":"provider_unavailable"}`}, 503, CodeProviderUnavailable, 7 * time.Second, nil},
		{"unavailable, HTTP date", answer{503, map[string]string{"Retry-After": httpDate}, `{"error":"provider_unavailable"}`}, 503, CodeProviderUnavailable, 90 * time.Second, nil},
		{"unavailable, no header", errorAnswer(503, "provider_unavailable"), 503, CodeProviderUnavailable, 0, nil},
		{"provider error", answer{502, map[string]string{"Retry-After": "57"}, `{"error":"provider_error"}`}, 502, CodeProviderError, 57 * time.Second, nil},
		{"forbidden by the function", errorAnswer(403, "forbidden"), 403, CodeForbidden, 0, nil},
		{"internal", errorAnswer(500, "internal"), 500, CodeInternal, 0, nil},
		{"dev key", errorAnswer(401, "unauthorized"), 401, CodeUnauthorized, 0, nil},
		{"throttled by API Gateway", answer{429, map[string]string{"Retry-After": "2"}, `{"message":"Too Many Requests"}`}, 429, CodeThrottled, 2 * time.Second, nil},
		{"no route: not ErrNotFound", answer{404, nil, `{"message":"Not Found"}`}, 404, CodeUnexpected, 0, nil},
		{"garbage", answer{502, nil, `<html>bad gateway</html>`}, 502, CodeUnexpected, 0, nil},
		{"code with odd characters", answer{500, nil, `{"error":"Bad Thing <script>"}`}, 500, CodeUnexpected, 0, nil},
		{"code too long to be one", answer{500, nil, `{"error":"` + strings.Repeat("a", 65) + `"}`}, 500, CodeUnexpected, 0, nil},
		{"a newer broker's code is kept", errorAnswer(409, "some_new_code"), 409, Code("some_new_code"), 0, nil},
		{"unexpected success", answer{201, nil, `{}`}, 201, CodeUnexpected, 0, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, clock, func(routeRequest) answer { return tt.ans })
			c := newTestClient(t, api, clock)
			for _, call := range []struct {
				name string
				run  func() error
			}{
				{"Token", func() error { _, err := c.Token(context.Background(), "acme", "c1"); return err }},
				{"ForceRefresh", func() error { _, err := c.ForceRefresh(context.Background(), "acme", "c1"); return err }},
				{"Delete", func() error { return c.Delete(context.Background(), "acme", "c1") }},
			} {
				err := call.run()
				if call.name == "Delete" && tt.ans.status/100 == 2 {
					if err != nil {
						t.Errorf("Delete: %v", err)
					}
					continue
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%s: error %v, want *Error", call.name, err)
				}
				if e.StatusCode != tt.wantStatus || e.Code != tt.wantCode || e.RetryAfter != tt.wantRetry {
					t.Errorf("%s: got %+v, want %d %s %s", call.name, *e, tt.wantStatus, tt.wantCode, tt.wantRetry)
				}
				for _, sentinel := range []error{ErrNotFound, ErrReauthRequired, context.Canceled} {
					if got, want := errors.Is(err, sentinel), sentinel == tt.wantIs; got != want {
						t.Errorf("%s: errors.Is(err, %v) = %v", call.name, sentinel, got)
					}
				}
				if !strings.Contains(err.Error(), string(tt.wantCode)) {
					t.Errorf("%s: error %q lacks the code", call.name, err)
				}
			}
		})
	}
}

// Odd ids reach the route intact, one path segment each, and the signature
// (which encodes the path once more) still verifies.
func TestPathEscaping(t *testing.T) {
	t.Parallel()
	clock := newClock()
	api := newRoutesAPI(t, clock, secretToken("at-path"))
	c := newTestClient(t, api, clock)
	for _, tt := range []struct{ provider, id string }{
		{"acme", "cust-42"},
		{"acme", "a/b"},
		{"acme", "a b+c"},
		{"acme", "x?force_refresh=true#frag"},
		{"acme", "50%25"},
		{"acme", "üñí"},
		{"acme", "user:1@example.com"},
		{"acme", "..."},
		{"acme", "a;b,c=d&e"},
		{"get response", "%2F"},
		{"acme", "/"},
	} {
		t.Run(tt.provider+"/"+tt.id, func(t *testing.T) {
			before := len(api.forbiddenMessages())
			if _, err := c.Token(context.Background(), tt.provider, tt.id); err != nil {
				t.Fatalf("Token: %v", err)
			}
			if err := c.Delete(context.Background(), tt.provider, tt.id); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if len(api.forbiddenMessages()) != before {
				t.Fatal("a signature was refused")
			}
			for _, m := range []string{http.MethodGet, http.MethodDelete} {
				want := routeRequest{Method: m, Provider: tt.provider, ConnectionID: tt.id}
				if api.count(func(r routeRequest) bool { return r == want }) == 0 {
					t.Errorf("the route never saw %+v", want)
				}
			}
		})
	}
	for _, tt := range []struct{ provider, id string }{{"acme", ""}, {"", "c1"}, {"acme", "."}, {"acme", ".."}, {"..", "c1"}} {
		if _, err := c.Token(context.Background(), tt.provider, tt.id); err == nil {
			t.Errorf("Token(%q, %q): no error", tt.provider, tt.id)
		}
		if err := c.Delete(context.Background(), tt.provider, tt.id); err == nil {
			t.Errorf("Delete(%q, %q): no error", tt.provider, tt.id)
		}
	}
}

func TestMethodsQueryAndStagePath(t *testing.T) {
	t.Parallel()
	clock := newClock()
	api := newRoutesAPI(t, clock, secretToken("at-query"))
	// The path of a stage, with a trailing slash.
	api.prefix = "/prod"
	c, err := New(context.Background(), api.srv.URL+"/prod/", WithCredentials(staticCreds(testCreds)),
		WithRegion(testRegion), WithClock(clock.Now), WithHTTPClient(api.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Token(ctx, "acme", "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ForceRefresh(ctx, "acme", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "acme", "c1"); err != nil {
		t.Fatal(err)
	}
	want := []routeRequest{
		{http.MethodGet, "acme", "c1", false},
		{http.MethodGet, "acme", "c1", true},
		{http.MethodDelete, "acme", "c1", false},
	}
	api.mu.Lock()
	got := append([]routeRequest(nil), api.requests...)
	api.mu.Unlock()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests %+v, want %+v", got, want)
	}
}

// TestConfirm: Confirm posts the code as the contract's JSON, signed with
// its payload's hash, and reads the connection's status; a refused code is
// ErrConfirmationInvalid, a conflict CodeConnectionConflict.
func TestConfirm(t *testing.T) {
	t.Parallel()
	clock := newClock()
	code := secretToken("confirmation")
	api := newFakeAPI(t, clock, func(r routeRequest) answer {
		switch r.ConnectionID {
		case "c1":
			return answer{status: http.StatusOK, body: `{"provider":"acme","connection_id":"c1","status":"connected","expires_at":"2026-11-24T21:00:00Z","scope":"read"}`}
		case "used":
			return errorAnswer(http.StatusGone, "confirmation_invalid")
		}
		return errorAnswer(http.StatusUnprocessableEntity, "connection_conflict")
	})
	c, err := New(context.Background(), api.srv.URL, WithCredentials(staticCreds(testCreds)),
		WithRegion(testRegion), WithClock(clock.Now), WithHTTPClient(api.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Confirm(t.Context(), "acme", "c1", code)
	want := &Status{Provider: "acme", ConnectionID: "c1", Status: "connected", ExpiresAt: time.Date(2026, 11, 24, 21, 0, 0, 0, time.UTC), Scope: "read"}
	if err != nil || !reflect.DeepEqual(st, want) {
		t.Fatalf("Confirm = %+v, %v; want %+v", st, err, want)
	}
	api.mu.Lock()
	req, body := api.requests[0], api.bodies[0]
	api.mu.Unlock()
	if req != (routeRequest{Method: http.MethodPost, Provider: "acme", ConnectionID: "c1"}) || body != `{"confirmation":"`+code+`"}` {
		t.Errorf("request %+v with body %q, want POST …/acme/c1/confirm with the code as JSON", req, body)
	}
	if _, err := c.Confirm(t.Context(), "acme", "used", code); !errors.Is(err, ErrConfirmationInvalid) || errors.Is(err, ErrNotFound) {
		t.Errorf("a refused code: %v, want ErrConfirmationInvalid", err)
	}
	var e *Error
	if _, err := c.Confirm(t.Context(), "acme", "other", code); !errors.As(err, &e) || e.Code != CodeConnectionConflict || e.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("a conflict: %v, want CodeConnectionConflict", err)
	}
	if strings.Contains(fmt.Sprint(err), code) {
		t.Error("an error names the confirmation code")
	}
}

// tamper changes a request after it was signed.
type tamper func(*http.Request)

func (f tamper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	f(r)
	return http.DefaultTransport.RoundTrip(r)
}

// Requests that API Gateway refuses come back as *Error with Code
// "forbidden", and the route never sees them.
func TestSignatureRefused(t *testing.T) {
	t.Parallel()
	tok := secretToken("at-sig")
	otherSecret := testCreds
	otherSecret.SecretAccessKey = "wrong-" + testCreds.SecretAccessKey
	for _, tt := range []struct {
		name    string
		opts    []Option
		tamper  tamper
		skew    time.Duration // of the client's clock
		wantMsg string
	}{
		{name: "path changed", tamper: func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/connections/acme/c2/token", "" }, wantMsg: "signature we calculated"},
		{name: "provider changed", tamper: func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/connections/evil/c1/token", "" }, wantMsg: "signature we calculated"},
		{name: "query added", tamper: func(r *http.Request) { r.URL.RawQuery = "force_refresh=true" }, wantMsg: "signature we calculated"},
		{name: "query changed", tamper: func(r *http.Request) { r.URL.RawQuery = "force_refresh=false" }, wantMsg: "signature we calculated"},
		{name: "signed header changed", tamper: func(r *http.Request) { r.Header.Set("Accept", "text/html") }, wantMsg: "signature we calculated"},
		{name: "host changed", tamper: func(r *http.Request) { r.Host = "other.example" }, wantMsg: "signature we calculated"},
		{name: "no signature", tamper: func(r *http.Request) { r.Header.Del("Authorization") }, wantMsg: "Missing Authentication Token"},
		{name: "session token dropped", tamper: func(r *http.Request) { r.Header.Del("X-Amz-Security-Token") }, wantMsg: "security token included in the request is invalid"},
		{name: "wrong region", opts: []Option{WithRegion("us-west-2")}, wantMsg: "valid region"},
		{name: "wrong secret", opts: []Option{WithCredentials(staticCreds(otherSecret))}, wantMsg: "signature we calculated"},
		{name: "stale date", skew: -6 * time.Minute, wantMsg: "Signature expired"},
		{name: "future date", skew: 6 * time.Minute, wantMsg: "Signature not yet current"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			serverClock := newClock()
			api := newFakeAPI(t, serverClock, func(routeRequest) answer { return tokenAnswer(tok, time.Time{}, "", nil) })
			clientClock := &fakeClock{t: serverClock.Now().Add(tt.skew)}
			opts := tt.opts
			if tt.tamper != nil {
				opts = append(opts, WithHTTPClient(&http.Client{Transport: tt.tamper}))
			}
			c := newTestClient(t, api, clientClock, opts...)
			_, err := c.Token(context.Background(), "acme", "c1")
			var e *Error
			if !errors.As(err, &e) || e.StatusCode != http.StatusForbidden || e.Code != CodeForbidden {
				t.Fatalf("error %v, want 403 forbidden", err)
			}
			if !strings.Contains(e.Message, tt.wantMsg) || strings.Contains(e.Message, "\n") {
				t.Errorf("message %q, want the first line with %q", e.Message, tt.wantMsg)
			}
			assertClean(t, "error", err.Error(), tok)
			if n := api.count(func(routeRequest) bool { return true }); n != 0 {
				t.Errorf("the route saw %d requests", n)
			}
			if len(api.forbiddenMessages()) != 1 {
				t.Errorf("%d refusals, want 1", len(api.forbiddenMessages()))
			}
		})
	}

	// And a request signed by the SDK for another service.
	t.Run("wrong service", func(t *testing.T) {
		t.Parallel()
		clock := newClock()
		api := newFakeAPI(t, clock, func(routeRequest) answer { return tokenAnswer(tok, time.Time{}, "", nil) })
		req, _ := http.NewRequest(http.MethodGet, api.srv.URL+"/connections/acme/c1/token", nil)
		if err := v4.NewSigner().SignHTTP(context.Background(), testCreds, req, emptyPayloadHash, "lambda", testRegion, clock.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || len(api.forbiddenMessages()) != 1 ||
			!strings.Contains(api.forbiddenMessages()[0], "correct service") {
			t.Errorf("status %d, refusals %d", resp.StatusCode, len(api.forbiddenMessages()))
		}
	})
}

func TestNewValidatesBaseURL(t *testing.T) {
	t.Parallel()
	opts := []Option{WithCredentials(staticCreds(testCreds)), WithRegion(testRegion)}
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://connect.example.com", true},
		{"https://abc123.execute-api.eu-west-1.amazonaws.com/prod/", true},
		{"http://localhost:8787", true},
		{"http://127.0.0.1:8787/", true},
		{"http://[::1]:8787", true},
		{"http://connect.example.com", false},
		{"http://10.0.0.1", false},
		{"ftp://connect.example.com", false},
		{"https://", false},
		{"connect.example.com", false},
		{"https://connect.example.com?x=1", false},
		{"https://connect.example.com#top", false},
		{"https://user:pass@connect.example.com", false},
		{"://bad", false},
	} {
		_, err := New(context.Background(), tt.url, opts...)
		if (err == nil) != tt.ok {
			t.Errorf("New(%q): error %v, want ok %v", tt.url, err, tt.ok)
		}
	}
}

func TestRegionFromHost(t *testing.T) {
	for host, want := range map[string]string{
		"abc123.execute-api.eu-west-1.amazonaws.com":            "eu-west-1",
		"ABC123.Execute-Api.US-EAST-2.amazonaws.com.":           "us-east-2",
		"abc123-vpce-0123.execute-api.ap-south-1.amazonaws.com": "ap-south-1",
		"abc123.execute-api.cn-north-1.amazonaws.com.cn":        "cn-north-1",
		"connect.example.com":                                   "",
		"execute-api.eu-west-1.amazonaws.com":                   "",
		"abc.execute-api.eu-west-1.amazonaws.com.evil.com":      "",
		"abc.lambda.eu-west-1.amazonaws.com":                    "",
		"127.0.0.1":                                             "",
	} {
		if got := regionFromHost(host); got != want {
			t.Errorf("regionFromHost(%q) = %q, want %q", host, got, want)
		}
	}
}

// A client of an execute-api URL signs for the URL's region with no region
// configured, and WithRegion wins over it.
func TestRegionFromExecuteAPIURL(t *testing.T) {
	t.Parallel()
	const host = "abc123.execute-api.eu-west-3.amazonaws.com"
	tok := secretToken("at-region")
	for _, tt := range []struct {
		name       string
		opts       []Option
		wantStatus int
	}{
		{"from the host", nil, http.StatusOK},
		{"WithRegion wins", []Option{WithRegion("eu-west-1")}, http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			a := &fakeAPI{
				verifier: &verifier{creds: testCreds, region: "eu-west-3", service: testService, now: clock.Now},
				answer:   func(routeRequest) answer { return tokenAnswer(tok, time.Time{}, "", nil) },
			}
			a.srv = httptest.NewTLSServer(a)
			t.Cleanup(a.srv.Close)
			tr := a.srv.Client().Transport.(*http.Transport).Clone()
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, a.srv.Listener.Addr().String())
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: tr.TLSClientConfig.RootCAs, ServerName: "example.com"}
			opts := append([]Option{WithCredentials(staticCreds(testCreds)), WithClock(clock.Now),
				WithHTTPClient(&http.Client{Transport: tr})}, tt.opts...)
			c, err := New(context.Background(), "https://"+host, opts...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Token(context.Background(), "acme", "c1")
			var e *Error
			switch {
			case tt.wantStatus == http.StatusOK && err != nil:
				t.Fatal(err)
			case tt.wantStatus != http.StatusOK && (!errors.As(err, &e) || e.StatusCode != tt.wantStatus):
				t.Fatalf("error %v, want %d", err, tt.wantStatus)
			}
		})
	}
}

// Without WithCredentials or WithRegion, New reads the default AWS
// configuration (here: the environment only).
func TestNewUsesDefaultConfig(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE":             dir + "/config",
		"AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials",
		"AWS_PROFILE":                 "",
		"AWS_DEFAULT_PROFILE":         "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ACCESS_KEY_ID":           testCreds.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       testCreds.SecretAccessKey,
		"AWS_SESSION_TOKEN":           testCreds.SessionToken,
	} {
		t.Setenv(k, v)
	}
	if _, err := New(context.Background(), "https://connect.example.com"); err == nil || !strings.Contains(err.Error(), "no AWS region") {
		t.Fatalf("without a region: %v", err)
	}
	t.Setenv("AWS_REGION", testRegion)
	clock := newClock()
	tok := secretToken("at-config")
	api := newFakeAPI(t, clock, func(routeRequest) answer { return tokenAnswer(tok, time.Time{}, "", nil) })
	c, err := New(context.Background(), api.srv.URL, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if c.region != testRegion {
		t.Errorf("region %q", c.region)
	}
	got, err := c.Token(context.Background(), "acme", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != tok {
		t.Error("wrong token")
	}
}

// With make dev's key the client sends it as a bearer token instead of a
// signature, and only to a loopback host.
func TestDevKey(t *testing.T) {
	t.Parallel()
	key := secretToken("devkey")
	tok := secretToken("at-dev")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+key || r.Header.Get("X-Amz-Date") != "" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"unauthorized"}`))
			return
		}
		w.Write([]byte(tokenAnswer(tok, time.Time{}, "", nil).body))
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	c, err := New(ctx, srv.URL, WithDevKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Token(ctx, "sandbox", "c1"); err != nil || got.AccessToken != tok {
		t.Fatalf("Token: %v", err)
	}
	c, err = New(ctx, srv.URL, WithDevKey("wrong-"+key))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Token(ctx, "sandbox", "c1")
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnauthorized {
		t.Fatalf("wrong key: %v", err)
	}
	assertClean(t, "error", err.Error(), key)
	if _, err := New(ctx, "https://connect.example.com", WithDevKey(key)); err == nil {
		t.Error("WithDevKey accepted a non-loopback host")
	} else {
		assertClean(t, "error", err.Error(), key)
	}
}

// API Gateway's message becomes the error's message only as its first
// line, at most 200 bytes: the rest of a signature error can show the
// canonical request, which holds the session token.
func TestGatewayMessageCut(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300)
	for _, tt := range []struct{ name, message, want string }{
		{"first line", "The request signature does not match.\\nX-Amz-Security-Token:" + testCreds.SessionToken, "The request signature does not match."},
		{"200 bytes", long + testCreds.SessionToken, long[:200]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			api := newFakeAPI(t, clock, func(routeRequest) answer { return answer{403, nil, `{"message":"` + tt.message + `"}`} })
			_, err := newTestClient(t, api, clock).Token(context.Background(), "acme", "c1")
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeForbidden {
				t.Fatalf("error %v, want forbidden", err)
			}
			if e.Message != tt.want {
				t.Errorf("message %q, want %q", e.Message, tt.want)
			}
			assertClean(t, "error", err.Error())
		})
	}
}

// Credentials that cannot be had fail the call before any request is sent,
// with an error that says so.
func TestCredentialsUnavailable(t *testing.T) {
	t.Parallel()
	clock := newClock()
	api := newFakeAPI(t, clock, func(routeRequest) answer { return tokenAnswer(secretToken("at-nocreds"), time.Time{}, "", nil) })
	failing := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errors.New("no credentials here")
	})
	c := newTestClient(t, api, clock, WithCredentials(failing))
	_, err := c.Token(context.Background(), "acme", "c1")
	if err == nil || !strings.Contains(err.Error(), "AWS credentials") || !strings.Contains(err.Error(), "no credentials here") {
		t.Errorf("error %v, want one naming the AWS credentials", err)
	}
	if n := api.count(func(routeRequest) bool { return true }); n != 0 || len(api.forbiddenMessages()) != 0 {
		t.Errorf("%d requests reached the route, %d were refused; want none sent", n, len(api.forbiddenMessages()))
	}
}
