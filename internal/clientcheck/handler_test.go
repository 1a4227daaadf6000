// Package clientcheck runs the Go client (module shared/client) against
// the real token route, which only the root module can build: the httpapi
// token handler on a broker wired to DynamoDB (dynalite) and a strict
// provider, behind a server that does what API Gateway does for an
// IAM-authorized route: check the request's Signature Version 4
// (gateway.verify), turn the request into a payload 2.0 event
// (httpapi.Event) carrying the signer's IAM identity, and write the
// handler's answer back (httpapi.Write).
package clientcheck

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/brokertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/shared/client"
	"github.com/oauthbroker/oauthbroker/shared/client/tokenapi"
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
)

const (
	// testAccount is the AWS account of the signer the route reports.
	testAccount = "123456789012"
	testRegion  = "eu-west-1"
	// emptyPayloadHash is the hex SHA-256 of the empty body of every call.
	emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// testCreds are the app's static credentials: the secret key and the
// session token are random per run and registered with logcheck.
var testCreds = func() aws.Credentials {
	c := aws.Credentials{
		AccessKeyID:     "AKIATESTCLIENT" + rand.Text()[:6],
		SecretAccessKey: "secret-" + rand.Text(),
		SessionToken:    "session-" + rand.Text() + rand.Text(),
	}
	logcheck.Register(c.SecretAccessKey, c.SessionToken)
	return c
}()

// gateway is API Gateway in front of the token function: SigV4 checked,
// the two IAM-authorized routes, the event as API Gateway builds it.
type gateway struct {
	srv    *httptest.Server
	signer *v4.Signer
	tokens httpapi.Handler

	mu         sync.Mutex
	noIdentity bool        // as a route deployed without AWS_IAM authorization
	header     http.Header // of the last answer of the handler
}

func newGateway(t *testing.T, tokens httpapi.Handler) *gateway {
	g := &gateway{signer: v4.NewSigner(), tokens: tokens}
	mux := http.NewServeMux()
	for _, route := range []string{tokenapi.RouteToken, tokenapi.RouteDelete, tokenapi.RouteConfirm} {
		mux.HandleFunc(route, func(w http.ResponseWriter, r *http.Request) { g.invoke(w, r, route) })
	}
	g.srv = httptest.NewServer(g.signed(mux))
	t.Cleanup(g.srv.Close)
	return g
}

// signed refuses what API Gateway's AWS_IAM authorization refuses.
func (g *gateway) signed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if msg := g.verify(r); msg != "" {
			b, _ := json.Marshal(map[string]string{"message": msg})
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write(b)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// verify returns "" if r carries the signature the test credentials make
// of it, or API Gateway's message. The signature is recomputed with the
// SDK's signer from the headers r names as signed: the client module's own
// tests check the client's signing against an independent verifier and
// the test suite's known vector; here it only has to be the gate API
// Gateway is.
func (g *gateway) verify(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	stamp, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	_, signedList, found := strings.Cut(auth, "SignedHeaders=")
	if auth == "" || err != nil || !found {
		return "Missing Authentication Token"
	}
	signedList, _, _ = strings.Cut(signedList, ",")
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	payloadHash := emptyPayloadHash
	if len(body) > 0 {
		sum := sha256.Sum256(body)
		payloadHash = hex.EncodeToString(sum[:])
	}
	req := r.Clone(r.Context())
	req.URL.Scheme, req.URL.Host = "https", r.Host
	req.Header = http.Header{}
	for _, h := range strings.Split(signedList, ";") {
		if h != "host" && h != "x-amz-date" && h != "x-amz-security-token" {
			req.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	if err := g.signer.SignHTTP(r.Context(), testCreds, req, payloadHash, "execute-api", testRegion, stamp); err != nil {
		return err.Error()
	}
	if req.Header.Get("Authorization") != auth {
		return "The request signature we calculated does not match the signature you provided."
	}
	return ""
}

// invoke runs the token function on the event of r, with the identity of
// the verified signer in requestContext.authorizer.iam.
func (g *gateway) invoke(w http.ResponseWriter, r *http.Request, routeKey string) {
	ev := httpapi.Event(r, routeKey, map[string]string{"provider": r.PathValue("provider"), "connection_id": r.PathValue("connection_id")})
	g.mu.Lock()
	noIdentity := g.noIdentity
	g.mu.Unlock()
	ev.RequestContext.Authorizer = nil
	if !noIdentity {
		ev.RequestContext.Authorizer = &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			IAM: &events.APIGatewayV2HTTPRequestContextAuthorizerIAMDescription{
				AccessKey: testCreds.AccessKeyID,
				AccountID: testAccount,
				CallerID:  "AROATESTAPPBACKEND0000:app-backend",
				UserARN:   "arn:aws:sts::" + testAccount + ":assumed-role/app-backend/app-backend",
				UserID:    "AROATESTAPPBACKEND0000:app-backend",
			},
		}
	}
	resp, err := g.tokens(r.Context(), ev)
	if err != nil { // API Gateway's answer to a Lambda error
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"message":"Internal Server Error"}`))
		return
	}
	h := http.Header{}
	for k, v := range resp.Headers {
		h.Set(k, v)
	}
	g.mu.Lock()
	g.header = h
	g.mu.Unlock()
	httpapi.Write(w, resp)
}

func (g *gateway) setNoIdentity(on bool) {
	g.mu.Lock()
	g.noIdentity = on
	g.mu.Unlock()
}

// lastHeader is the header of the handler's last answer.
func (g *gateway) lastHeader() http.Header {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.header.Clone()
}

// newTokenFunction is the broker of functions/token on a fresh DynamoDB
// table, with the strict provider acme and a JSON log, on the real clock.
func newTokenFunction(t *testing.T) *brokertest.World {
	t.Helper()
	return brokertest.New(t, brokertest.Options{
		Providers: []brokertest.Provider{{Name: "acme", Config: providertest.Config{AccessTokenTTL: time.Hour, RotateRefreshTokens: true}}},
		Store:     dynalite.NewStore(t, dynalite.Shared(t).Client),
		Now:       time.Now,
		Secrets:   func(file secrets.Source) secrets.Source { return secrets.NewCache(file, time.Minute) },
	})
}

// TestClientAgainstTokenHandler runs the client against the real token
// handler for every answer of the route's contract and checks what the
// client makes of each: the token, or an *Error with the status, the
// code, the sentinel it matches and the Retry-After the handler sent.
func TestClientAgainstTokenHandler(t *testing.T) {
	fn := newTokenFunction(t)
	gw := newGateway(t, httpapi.Tokens(fn.Broker))
	creds := credentials.NewStaticCredentialsProvider(testCreds.AccessKeyID, testCreds.SecretAccessKey, testCreds.SessionToken)
	c, err := client.New(context.Background(), gw.srv.URL,
		client.WithCredentials(creds), client.WithRegion(testRegion), client.WithHTTPClient(gw.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	ok := fn.Seed(t, "acme", "c-ok", 50*time.Minute)
	t.Run("200", func(t *testing.T) {
		tok, err := c.Token(ctx, "acme", "c-ok")
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != ok.AccessToken || tok.TokenType != "Bearer" || !tok.ExpiresAt.Equal(ok.ExpiresAt) ||
			tok.Scope != "read" || tok.Metadata["user_id"] != "u1" || len(tok.Metadata) != 1 {
			t.Errorf("token %v does not match the stored connection (same access token: %v)", tok, tok.AccessToken == ok.AccessToken)
		}
		forced, err := c.ForceRefresh(ctx, "acme", "c-ok")
		if err != nil {
			t.Fatal(err)
		}
		if forced.AccessToken == ok.AccessToken || !fn.Servers["acme"].Valid(forced.AccessToken) {
			t.Errorf("a forced refresh did not hand out a new token the provider accepts")
		}
	})
	t.Run("200 confirm", func(t *testing.T) {
		code := "confirmation-code-for-c-pending-0123456789abc"
		logcheck.Register(code)
		g := store.PendingGrant{Key: store.Key{Provider: "acme", ConnectionID: "c-pending", Pending: signing.Hash(code)}, ExpiresAt: time.Now().Add(time.Minute),
			Connection: store.Connection{AccessToken: ok.AccessToken, RefreshToken: ok.RefreshToken, Grant: "authorization_code", Scope: "read", ExpiresAt: ok.ExpiresAt}}
		if err := fn.Store.PutPending(ctx, g); err != nil {
			t.Fatal(err)
		}
		st, err := c.Confirm(ctx, "acme", "c-pending", code)
		if err != nil || st.Status != "connected" || st.ConnectionID != "c-pending" || st.Scope != "read" || !st.ExpiresAt.Equal(ok.ExpiresAt) {
			t.Fatalf("Confirm = %+v, %v", st, err)
		}
		if got, err := fn.Store.GetConnection(ctx, "acme", "c-pending"); err != nil || got.AccessToken != ok.AccessToken {
			t.Errorf("after Confirm the connection is %+v, %v", got.Status, err)
		}
	})
	t.Run("204", func(t *testing.T) {
		fn.Seed(t, "acme", "c-delete", 50*time.Minute)
		if err := c.Delete(ctx, "acme", "c-delete"); err != nil {
			t.Fatal(err)
		}
		if _, err := fn.Store.GetConnection(ctx, "acme", "c-delete"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("after Delete the store still has the connection: %v", err)
		}
	})

	fn.Seed(t, "acme", "c-reauth", 50*time.Minute)
	reauth, _ := fn.Store.GetConnection(ctx, "acme", "c-reauth")
	fn.Servers["acme"].RevokeRefresh(reauth.RefreshToken)
	fn.Seed(t, "acme", "c-rejected", 50*time.Minute)
	fn.Seed(t, "acme", "c-limited", 50*time.Minute)
	fn.Seed(t, "acme", "c-down", 50*time.Minute)
	fn.Seed(t, "retired", "c-retired", 50*time.Minute) // a provider no longer in the catalog
	// A pending client_credentials grant for a customer's authorization.
	const conflictCode = "confirmation-code-for-a-conflicting-grant-0123"
	logcheck.Register(conflictCode)
	if err := fn.Store.PutPending(ctx, store.PendingGrant{Key: store.Key{Provider: "acme", ConnectionID: "c-ok", Pending: signing.Hash(conflictCode)},
		ExpiresAt: time.Now().Add(time.Minute), Connection: store.Connection{AccessToken: "at-conflict", Grant: "client_credentials"}}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		call       func() error
		setup      func()
		wantStatus int
		wantCode   client.Code
		wantIs     error
		minRetry   time.Duration    // the least RetryAfter, for a provider's own Retry-After
		check      func(*testing.T) // more to check afterwards
	}{
		{name: "400 bad provider", call: func() error { _, err := c.Token(ctx, "ac#me", "c-ok"); return err },
			wantStatus: 400, wantCode: client.CodeInvalidRequest},
		{name: "400 bad provider on delete", call: func() error { return c.Delete(ctx, "ac#me", "c-ok") },
			wantStatus: 400, wantCode: client.CodeInvalidRequest},
		{name: "404 token", call: func() error { _, err := c.Token(ctx, "acme", "c-unknown"); return err },
			wantStatus: 404, wantCode: client.CodeNotFound, wantIs: client.ErrNotFound},
		{name: "404 delete", call: func() error { return c.Delete(ctx, "acme", "c-delete") },
			wantStatus: 404, wantCode: client.CodeNotFound, wantIs: client.ErrNotFound},
		{name: "409 refresh token revoked", call: func() error { _, err := c.ForceRefresh(ctx, "acme", "c-reauth"); return err },
			wantStatus: 409, wantCode: client.CodeReauthRequired, wantIs: client.ErrReauthRequired},
		{name: "409 needs_reauth stored", call: func() error { _, err := c.Token(ctx, "acme", "c-reauth"); return err },
			wantStatus: 409, wantCode: client.CodeReauthRequired, wantIs: client.ErrReauthRequired},
		{name: "502 provider refuses the refresh request",
			setup:      func() { fn.Servers["acme"].FailNext(1, 400, "application/json", `{"error":"invalid_request"}`, nil) },
			call:       func() error { _, err := c.ForceRefresh(ctx, "acme", "c-rejected"); return err },
			wantStatus: 502, wantCode: client.CodeProviderError},
		{name: "503 provider rate-limits",
			setup:      func() { fn.Servers["acme"].FailNext(1, 429, "", "", http.Header{"Retry-After": {"7"}}) },
			call:       func() error { _, err := c.ForceRefresh(ctx, "acme", "c-limited"); return err },
			wantStatus: 503, wantCode: client.CodeProviderUnavailable, minRetry: 7 * time.Second},
		{name: "503 provider down",
			setup:      func() { fn.Servers["acme"].FailNext(1, 500, "text/html", "<html>oops</html>", nil) },
			call:       func() error { _, err := c.ForceRefresh(ctx, "acme", "c-down"); return err },
			wantStatus: 503, wantCode: client.CodeProviderUnavailable},
		{name: "410 confirmation code unknown", call: func() error {
			_, err := c.Confirm(ctx, "acme", "c-ok", "an-unknown-confirmation-code-0123456789abcdef")
			return err
		}, wantStatus: 410, wantCode: client.CodeConfirmationInvalid, wantIs: client.ErrConfirmationInvalid},
		{name: "422 confirmation for a connection of another grant", call: func() error {
			_, err := c.Confirm(ctx, "acme", "c-ok", conflictCode)
			return err
		}, wantStatus: 422, wantCode: client.CodeConnectionConflict},
		{name: "500 provider gone from the catalog", call: func() error { _, err := c.Token(ctx, "retired", "c-retired"); return err },
			wantStatus: 500, wantCode: client.CodeInternal},
		{name: "403 no IAM identity",
			setup:      func() { gw.setNoIdentity(true) },
			call:       func() error { defer gw.setNoIdentity(false); _, err := c.Token(ctx, "acme", "c-ok"); return err },
			wantStatus: 403, wantCode: client.CodeForbidden,
			check: func(t *testing.T) {
				if !strings.Contains(fn.Logs.String(), `"msg":"token route refused","status":403`) ||
					!strings.Contains(fn.Logs.String(), `"cause":"no IAM identity in requestContext"`) {
					t.Errorf("the refusal is not logged with its cause")
				}
			}},
	}
	covered := map[client.Code]bool{}
	for _, tt := range tests {
		covered[tt.wantCode] = true
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			err := tt.call()
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v, want *client.Error", err)
			}
			if e.StatusCode != tt.wantStatus || e.Code != tt.wantCode || e.StatusCode != e.Code.Status() {
				t.Errorf("got %d %s, want %d %s", e.StatusCode, e.Code, tt.wantStatus, tt.wantCode)
			}
			for _, sentinel := range []error{client.ErrNotFound, client.ErrReauthRequired, client.ErrConfirmationInvalid} {
				if got, want := errors.Is(err, sentinel), sentinel == tt.wantIs; got != want {
					t.Errorf("errors.Is(err, %v) = %v", sentinel, got)
				}
			}
			// The contract says which codes carry Retry-After; the client
			// reads it as the handler sent it.
			header := gw.lastHeader().Get("Retry-After")
			if (header != "") != tt.wantCode.HasRetryAfter() {
				t.Fatalf("Retry-After %q with %s", header, tt.wantCode)
			}
			if want := retryAfter(t, header); e.RetryAfter != want || header != "" && want < max(time.Second, tt.minRetry) {
				t.Errorf("RetryAfter %s, the handler sent %q", e.RetryAfter, header)
			}
			if !strings.Contains(err.Error(), string(tt.wantCode)) {
				t.Errorf("error %q lacks the code", err)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
	for _, code := range tokenapi.Codes() {
		if !covered[code] {
			t.Errorf("no case gets %s from the handler", code)
		}
	}
}

// retryAfter is the wait a Retry-After header of the handler asks for: it
// sends delay-seconds (tokenapi.FormatRetryAfter), or none.
func retryAfter(t *testing.T, header string) time.Duration {
	t.Helper()
	if header == "" {
		return 0
	}
	n, err := strconv.Atoi(header)
	if err != nil {
		t.Fatalf("Retry-After %q is not delay-seconds", header)
	}
	return time.Duration(n) * time.Second
}
