package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/oauthserver"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/client/tokenapi"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store/embedded"
)

const (
	// secretsPrefix is the prefix of every secret name, as in AWS.
	secretsPrefix = "oauthbroker/"
	// providerName is the sandbox's catalog entry.
	providerName = "sandbox"
	// pageLinkTTL and bannerLinkTTL bound the demo's connect links.
	pageLinkTTL   = 15 * time.Minute
	bannerLinkTTL = time.Hour
	// devKeyFile, in the data directory, holds the dev key.
	devKeyFile = "dev-api-key"
	// refreshTimeout bounds one refresh sweep.
	refreshTimeout = 30 * time.Second
	// sandboxTokenTTL is the sandbox's access token lifetime: short, so
	// that the refresh schedule is visible within a couple of minutes of
	// connecting.
	sandboxTokenTTL = 2 * time.Minute
)

// options configure a dev server.
type options struct {
	// Addr is the listen address; port 0 picks a free one.
	Addr string
	// DataDir holds secrets.json, providers.yaml, store.json, store.key
	// (the local key sealing the tokens in store.json), sandbox.json (what
	// the sandbox provider has issued, so that connections survive a
	// restart), app.json (which demo-app session owns which connection)
	// and dev-api-key.
	DataDir string
	// RefreshEvery is the refresh schedule's period (EventBridge in AWS).
	RefreshEvery time.Duration
	// Log receives the broker's JSON log lines.
	Log *slog.Logger
	// Now is the clock of the broker, its token client and the sandbox;
	// time.Now if nil. Tests move it forward.
	Now func() time.Time
}

// devServer is the whole product on one local HTTP server: the broker's
// browser routes and the app's token routes (behind a dev key), the
// sandbox provider, a demo app and the refresh schedule.
type devServer struct {
	baseURL      string // http://localhost:<port>
	dataDir      string
	refreshEvery time.Duration
	now          func() time.Time
	log          *slog.Logger

	listener net.Listener
	http     *http.Server
	broker   *broker.Broker
	store    *embedded.Store
	// devKey stands in for IAM on the app's token routes: requests must
	// carry "Authorization: Bearer <devKey>". Development only.
	devKey string
	// app is the demo app's backend: its sessions and the client it
	// confirms connections with.
	app *demoApp
}

// newServer prepares the data directory, listens on opts.Addr and
// assembles the broker; Run serves.
func newServer(opts options) (*devServer, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.RefreshEvery <= 0 {
		return nil, errors.New("-refresh-every must be positive")
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	// Keep the directory out of version control wherever it is.
	if err := writeIfMissing(filepath.Join(opts.DataDir, ".gitignore"), "# Local secrets and tokens of go run ./cmd/dev.\n*\n"); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	secretsPath := filepath.Join(opts.DataDir, "secrets.json")
	if err := ensureSecrets(secretsPath); err != nil {
		return nil, err
	}
	src := secrets.NewFile(secretsPath)
	creds, err := secrets.LoadClientCredentials(context.Background(), src, secretsPrefix, providerName)
	if err != nil {
		return nil, fmt.Errorf("%w (delete %s to generate a new one)", err, secretsPath)
	}
	if raw, err := src.Secret(context.Background(), secretsPrefix+"keys"); err != nil {
		return nil, fmt.Errorf("%w (delete %s to generate a new one)", err, secretsPath)
	} else if _, err := signing.ParseKeyset(raw); err != nil {
		return nil, fmt.Errorf("%s: %w", secretsPath, err)
	}

	devKey, err := ensureDevKey(filepath.Join(opts.DataDir, devKeyFile))
	if err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			ln.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	// "localhost", not 127.0.0.1: browsers treat http://localhost as a
	// secure context, so they keep the broker's Secure __Host- cookie.
	base := "http://localhost:" + strconv.Itoa(port)

	catalogPath := filepath.Join(opts.DataDir, "providers.yaml")
	if err := os.WriteFile(catalogPath, []byte(catalogYAML(base)), 0o600); err != nil {
		return nil, fmt.Errorf("provider catalog: %w", err)
	}
	cat, err := provider.Load(catalogPath) // as PROVIDERS_FILE in AWS
	if err != nil {
		return nil, err
	}
	// In AWS the data keys come from KMS; here a local key file wraps them,
	// so store.json holds no token in the clear either.
	key, err := envelope.OpenLocalKey(filepath.Join(opts.DataDir, "store.key"))
	if err != nil {
		return nil, err
	}
	st, err := embedded.Open(filepath.Join(opts.DataDir, "store.json"), envelope.NewSealer(key, 0))
	if err != nil {
		return nil, err
	}
	allow, err := returnto.ParseOrigins(base)
	if err != nil {
		return nil, err
	}
	b := &broker.Broker{
		Config: broker.Config{
			BaseURL:       base,
			SecretsPrefix: secretsPrefix,
			ReturnTo:      allow,
			Confirm:       true, // CONFIRM_CONNECTIONS=required, the default in AWS
		},
		Catalog:        cat,
		Store:          st,
		Secrets:        secrets.NewCache(src, time.Minute),
		ProviderClient: &provider.Client{HTTP: provider.NewHTTPClient(), Now: opts.Now},
		Log:            opts.Log,
		Now:            opts.Now,
		Events:         lifecycle.NewLog(opts.Log), // EventBridge in AWS
	}
	// The sandbox is the repository's strict OAuth test server with its
	// consent page, under /sandbox/, keeping its grants in the data
	// directory.
	sb, err := oauthserver.Open(oauthserver.Config{
		Title:               "Sandbox provider — dev only",
		ClientID:            creds.ClientID,
		ClientSecret:        creds.ClientSecret,
		RedirectURI:         b.RedirectURI(providerName),
		ConsentPage:         true,
		AuthorizePath:       "/sandbox/authorize",
		DecidePath:          "/sandbox/decide",
		TokenPath:           "/sandbox/token",
		RevokePath:          "/sandbox/revoke",
		ResourcePath:        "/sandbox/userinfo",
		GrantTypes:          []string{oauthserver.GrantAuthorizationCode, oauthserver.GrantRefreshToken},
		ClientAuth:          oauthserver.AuthBasic,
		TokenRequest:        oauthserver.RequestForm,
		RequirePKCE:         true,
		Scopes:              []string{"profile"},
		AccessTokenTTL:      sandboxTokenTTL,
		CodeTTL:             5 * time.Minute,
		RotateRefreshTokens: true, // as Outstand and GetResponse do
		StateFile:           filepath.Join(opts.DataDir, "sandbox.json"),
		Now:                 opts.Now,
	})
	if err != nil {
		return nil, err
	}

	s := &devServer{
		baseURL:      base,
		dataDir:      opts.DataDir,
		refreshEvery: opts.RefreshEvery,
		now:          opts.Now,
		log:          opts.Log,
		listener:     ln,
		broker:       b,
		store:        st,
		devKey:       devKey,
	}
	if s.app, err = newDemoApp(base, devKey, filepath.Join(opts.DataDir, "app.json")); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connect/{provider}", s.lambda(httpapi.Authorize(b), "GET /connect/{provider}"))
	mux.HandleFunc("GET /callback/{provider}", s.lambda(httpapi.Callback(b), "GET /callback/{provider}"))
	tokens := httpapi.Tokens(b)
	mux.HandleFunc("GET /connections/{provider}/{connection_id}/token", s.devKeyOnly(s.lambda(tokens, "GET /connections/{provider}/{connection_id}/token")))
	mux.HandleFunc("DELETE /connections/{provider}/{connection_id}", s.devKeyOnly(s.lambda(tokens, "DELETE /connections/{provider}/{connection_id}")))
	mux.HandleFunc("POST /connections/{provider}/{connection_id}/confirm", s.devKeyOnly(s.lambda(tokens, "POST /connections/{provider}/{connection_id}/confirm")))
	mux.Handle("/sandbox/", sb.Handler())
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /app/return", s.appReturn)
	s.http = &http.Server{
		Handler:           localHostsOnly(port, mux),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(opts.Log.Handler(), slog.LevelWarn),
	}
	ok = true
	return s, nil
}

// lambda serves an API Gateway handler the way API Gateway would: the
// same event, the same response mapping.
func (s *devServer) lambda(h httpapi.Handler, routeKey string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		params := map[string]string{"provider": r.PathValue("provider")}
		if id := r.PathValue("connection_id"); id != "" {
			params["connection_id"] = id
		}
		ev := httpapi.Event(r, routeKey, params)
		resp, err := h(r.Context(), ev)
		if err != nil { // API Gateway turns a Lambda error into a bare 500
			s.log.ErrorContext(r.Context(), "handler failed", "route", routeKey)
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
			return
		}
		httpapi.Write(w, resp)
	}
}

// devKeyOnly admits requests that carry the dev key, in place of the IAM
// authorization API Gateway applies to the token routes in AWS.
func (s *devServer) devKeyOnly(next http.HandlerFunc) http.HandlerFunc {
	want := []byte("Bearer " + s.devKey)
	return func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			httpapi.Write(w, httpapi.JSON(http.StatusUnauthorized, tokenapi.Error{Code: tokenapi.CodeUnauthorized}))
			return
		}
		next(w, r)
	}
}

// ensureDevKey returns the dev key kept at path, creating it (0600) with a
// fresh random value if it does not exist.
func ensureDevKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if k := strings.TrimSpace(string(b)); len(k) >= 32 {
			return k, nil
		}
		return "", fmt.Errorf("%s holds no usable key (delete it to generate a new one)", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("dev key: %w", err)
	}
	k, err := signing.RandomString(32)
	if err != nil {
		return "", err
	}
	if err := writeIfMissing(path, "dev-"+k+"\n"); err != nil {
		return "", fmt.Errorf("dev key: %w", err)
	}
	return ensureDevKey(path)
}

// Run serves until ctx is done, running the refresh schedule alongside,
// then shuts down gracefully.
func (s *devServer) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.listener) }()

	var wg sync.WaitGroup
	tickCtx, stopTicks := context.WithCancel(ctx)
	defer stopTicks()
	wg.Go(func() {
		t := time.NewTicker(s.refreshEvery)
		defer t.Stop()
		for {
			select {
			case <-tickCtx.Done():
				return
			case <-t.C:
				s.refreshOnce(tickCtx)
			}
		}
	})

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stopTicks()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := s.http.Shutdown(shutCtx); serr != nil && err == nil {
		err = serr
	}
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// refreshOnce is one tick of the local stand-in for the EventBridge
// schedule. The broker logs the sweep's summary.
func (s *devServer) refreshOnce(ctx context.Context) (broker.RefreshSummary, error) {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	sum, err := s.broker.Sweep(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "refresh sweep failed", "cause", err.Error())
	}
	return sum, err
}

// newConnectionID returns a demo connection id that no earlier page or
// run has handed out: 50 random bits, so ids do not repeat across
// restarts on the same data directory, whose store keeps the connections
// made before (a repeated id would connect over one of them).
func newConnectionID() string {
	return "demo-" + strings.ToLower(rand.Text()[:10])
}

// connectLink signs a connect link for connectionID, valid for ttl, as
// the SaaS app's backend would.
func (s *devServer) connectLink(ctx context.Context, connectionID string, ttl time.Duration) (string, error) {
	raw, err := s.broker.Secrets.Secret(ctx, s.broker.KeysSecret())
	if err != nil {
		return "", err
	}
	ks, err := signing.ParseKeyset(raw)
	if err != nil {
		return "", err
	}
	return signing.ConnectURL(ks, s.baseURL, signing.Link{
		Provider:     providerName,
		ConnectionID: connectionID,
		ReturnTo:     s.baseURL + "/app/return",
		Expires:      s.now().Add(ttl),
	})
}

// catalogYAML is the operator file describing the sandbox provider.
func catalogYAML(base string) string {
	return `# Written by "go run ./cmd/dev" on every start (the port may change);
# edits here are overwritten. Loaded like PROVIDERS_FILE in AWS.
providers:
  ` + providerName + `:
    display_name: Sandbox (dev only)
    authorization_url: ` + base + `/sandbox/authorize
    token_url: ` + base + `/sandbox/token
    grant_types: [authorization_code, refresh_token]
    token_request: form
    client_auth: basic
    pkce: true
    default_scopes: [profile]
`
}

// writeIfMissing creates path with content unless it exists.
func writeIfMissing(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	} else if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ensureSecrets creates the secrets file with fresh random values unless
// it exists. It is created 0600 and never overwritten.
func ensureSecrets(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("secrets file: %w", err)
	}
	key, err1 := signing.RandomString(48)
	id, err2 := signing.RandomString(12)
	secret, err3 := signing.RandomString(32)
	if err := errors.Join(err1, err2, err3); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	doc := map[string]any{
		secretsPrefix + "keys": map[string]string{"current_kid": "k1", "k1": key},
		secrets.ClientCredentialsName(secretsPrefix, providerName): map[string]string{
			"client_id":     "sandbox-" + id,
			"client_secret": secret,
		},
	}
	data, _ := json.MarshalIndent(doc, "", "  ")
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("secrets file: %w", err)
	}
	return nil
}
