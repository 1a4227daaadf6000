// Package brokertest builds the broker a test drives in process: a
// catalog whose providers are strict providertest servers, their client
// credentials and the signing keys in a secrets file, a store (in-memory
// embedded unless the test brings one), a settable clock and a JSON log
// checked by logcheck. Tests state only what they vary, so the wiring and
// its import block have one definition.
package brokertest

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/fakeclock"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testcatalog"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/embedded"
)

const (
	// BaseURL is the broker's public URL unless Options.BaseURL says otherwise.
	BaseURL = "https://broker.example.test"
	// AppOrigin is the one origin connect links may return to.
	AppOrigin = "https://app.example.com"
	// ReturnTo is the app's return page, under AppOrigin.
	ReturnTo = AppOrigin + "/done"
	// SigningKey is the keys secret's key material unless
	// Options.SigningKey says otherwise.
	SigningKey = "brokertest-signing-key-0123456789abcdef0123"
	// CodeEntry is a code-flow catalog entry with refresh, the entry of a
	// Provider that gives none.
	CodeEntry = "    authorization_url: AUTH_URL\n    token_url: TOKEN_URL\n    grant_types: [authorization_code, refresh_token]\n"
)

// Provider is one catalog entry served by its own providertest server.
type Provider struct {
	Name string
	// Config is the server's; an empty ClientID is "cid", an empty
	// ClientSecret a random one, an empty RedirectURI the broker's
	// callback for Name.
	Config providertest.Config
	// SharedWith names an earlier Provider whose server (and client
	// credentials) serve this entry too; Config is then unused. The
	// server knows only its own provider's redirect URI, so a flow of
	// this entry stops at the consent: for tests of what comes before.
	SharedWith string
	// Entry is the catalog entry's body (4-space indented) with
	// AUTH_URL, TOKEN_URL and REVOKE_URL standing for the server's
	// endpoints; CodeEntry when "".
	Entry string
}

// Options are what tests vary; the zero value is a broker for one "acme"
// provider (CodeEntry, one-hour tokens) on an in-memory store.
type Options struct {
	BaseURL string // BaseURL when ""
	// Providers are served by providertest servers; one "acme" when
	// both Providers and Catalog are empty.
	Providers []Provider
	// Catalog is more catalog YAML, entries indented under "providers:",
	// for providers served elsewhere or nowhere; Clients are their client
	// credentials.
	Catalog string
	Clients map[string]testsecrets.Client
	// SigningKey is the keys secret's material; SigningKey when "".
	SigningKey string
	// Store is the broker's store; a fresh in-memory embedded one when nil.
	Store store.Store
	// Now is the broker's clock; World.Clock (whole seconds, as the
	// stores keep them) when nil.
	Now func() time.Time
	// HTTP is the provider client's; provider.NewHTTPClient() when nil.
	HTTP *http.Client
	// Secrets wraps the secrets file's source (a cache, a counter) when set.
	Secrets func(secrets.Source) secrets.Source
	Refresh broker.RefreshOptions
}

// World is the broker and the handles tests reach for.
type World struct {
	Broker *broker.Broker
	Store  store.Store
	// Keys sign connect links as the app does.
	Keys    *signing.Keyset
	Servers map[string]*providertest.Server
	// Clock is the broker's clock unless Options.Now was set (then nil).
	Clock *fakeclock.Clock
	// Logs holds the broker's JSON log (debug level); it is fed to
	// logcheck and printed when the test fails.
	Logs *syncbuf.Buffer
	// Secrets is what SecretsFile holds; Rewrite changes both.
	Secrets     testsecrets.Set
	SecretsFile string
	first       string // the first Provider's name
}

// New builds a World for t.
func New(t testing.TB, o Options) *World {
	t.Helper()
	if o.BaseURL == "" {
		o.BaseURL = BaseURL
	}
	if len(o.Providers) == 0 && o.Catalog == "" {
		o.Providers = []Provider{{Name: "acme", Config: providertest.Config{AccessTokenTTL: time.Hour}}}
	}
	if o.SigningKey == "" {
		o.SigningKey = SigningKey
	}
	w := &World{
		Servers: map[string]*providertest.Server{},
		Logs:    &syncbuf.Buffer{},
		Secrets: testsecrets.Set{SigningKey: o.SigningKey, Clients: map[string]testsecrets.Client{}},
		Store:   o.Store,
	}
	yml := "providers:\n"
	if len(o.Providers) > 0 {
		w.first = o.Providers[0].Name
	}
	for _, p := range o.Providers {
		entry := p.Entry
		if entry == "" {
			entry = CodeEntry
		}
		if srv, ok := w.Servers[p.SharedWith]; ok {
			w.Servers[p.Name] = srv
			w.Secrets.Clients[p.Name] = w.Secrets.Clients[p.SharedWith]
			yml += "  " + p.Name + ":\n" + fill(entry, srv)
			continue
		}
		cfg := p.Config
		if cfg.ClientID == "" {
			cfg.ClientID = "cid"
		}
		if cfg.ClientSecret == "" {
			cfg.ClientSecret = "cs-" + p.Name + "-" + rand.Text()
		}
		if cfg.RedirectURI == "" {
			cfg.RedirectURI = o.BaseURL + "/callback/" + p.Name
		}
		srv := providertest.New(t, cfg)
		w.Servers[p.Name] = srv
		w.Secrets.Clients[p.Name] = testsecrets.Client{ID: cfg.ClientID, Secret: cfg.ClientSecret}
		yml += "  " + p.Name + ":\n" + fill(entry, srv)
	}
	for name, c := range o.Clients {
		w.Secrets.Clients[name] = c
	}
	cat, err := testcatalog.Load(t, []byte(yml+o.Catalog))
	if err != nil {
		t.Fatal(err)
	}
	w.SecretsFile = w.Secrets.File(t)
	w.Keys = w.Secrets.Keyset(t)
	if w.Store == nil {
		st, err := embedded.Open("", nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Store = st
	}
	now := o.Now
	if now == nil {
		w.Clock = fakeclock.At(time.Now().Truncate(time.Second))
		now = w.Clock.Now
	}
	hc := o.HTTP
	if hc == nil {
		hc = provider.NewHTTPClient()
	}
	var src secrets.Source = secrets.NewFile(w.SecretsFile)
	if o.Secrets != nil {
		src = o.Secrets(src)
	}
	allow, err := returnto.ParseOrigins(AppOrigin)
	if err != nil {
		t.Fatal(err)
	}
	w.Broker = &broker.Broker{
		Config:         broker.Config{BaseURL: o.BaseURL, SecretsPrefix: testsecrets.Prefix, ReturnTo: allow},
		Catalog:        cat,
		Store:          w.Store,
		Secrets:        src,
		ProviderClient: &provider.Client{HTTP: hc, Now: now},
		Log:            slog.New(slog.NewJSONHandler(w.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:            now,
		Refresh:        o.Refresh,
	}
	t.Cleanup(func() {
		logcheck.Feed("broker log in "+t.Name(), w.Logs.String())
		if t.Failed() {
			t.Logf("broker log:\n%s", w.Logs.String())
		}
	})
	return w
}

// fill puts srv's endpoints in for an entry's placeholders.
func fill(entry string, srv *providertest.Server) string {
	return strings.NewReplacer("AUTH_URL", srv.AuthorizeURL(), "TOKEN_URL", srv.TokenURL(), "REVOKE_URL", srv.RevokeURL()).Replace(entry)
}

// Server is the providertest server of provider name; it fails t when
// there is none.
func (w *World) Server(t testing.TB, name string) *providertest.Server {
	t.Helper()
	s, ok := w.Servers[name]
	if !ok {
		t.Fatalf("brokertest: no server for provider %q", name)
	}
	return s
}

// Rewrite edits the secrets and writes them to SecretsFile, as an
// operator rotating a secret would.
func (w *World) Rewrite(t testing.TB, edit func(*testsecrets.Set)) {
	t.Helper()
	edit(&w.Secrets)
	b, err := os.ReadFile(w.Secrets.File(t))
	if err == nil {
		err = os.WriteFile(w.SecretsFile, b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Link signs a connect link for provider name and connection id with
// Keys, expiring in an hour, edited by edit when it is not nil, and
// returns its query; its signature is registered with logcheck.
func (w *World) Link(t testing.TB, name, id string, edit func(*signing.Link)) url.Values {
	t.Helper()
	l := signing.Link{Provider: name, ConnectionID: id, ReturnTo: ReturnTo, Expires: w.Broker.Now().Add(time.Hour)}
	if edit != nil {
		edit(&l)
	}
	raw, err := signing.SignLink(w.Keys, l)
	if err != nil {
		t.Fatal(err)
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	logcheck.Register(q.Get("sig"))
	return q
}

// Connect runs Connect for a link query in a browser that has not used
// the link before, and registers the state, binding and link secrets it
// hands out with logcheck.
func (w *World) Connect(name string, q url.Values) (broker.ConnectResult, error) {
	return w.ConnectAgain(name, q, broker.ConnectResult{})
}

// ConnectAgain is Connect in the browser that got earlier: it brings back
// earlier's link secret, as a browser that used the link before does.
func (w *World) ConnectAgain(name string, q url.Values, earlier broker.ConnectResult) (broker.ConnectResult, error) {
	logcheck.Register(q.Get("sig"))
	res, err := w.Broker.Connect(context.Background(), broker.ConnectRequest{
		Provider: name,
		Query:    q,
		LinkSecret: func(id string) (string, bool) {
			if earlier.Link == nil || earlier.Link.Flow != id {
				return "", false
			}
			return earlier.Link.Secret, true
		},
	})
	if res.Link != nil {
		logcheck.Register(res.Link.Secret)
	}
	if loc, perr := url.Parse(res.Location); perr == nil {
		logcheck.Register(loc.Query().Get("state"))
	}
	if res.Binding != nil {
		logcheck.Register(res.Binding.Secret)
	}
	return res, err
}

// Callback delivers the callback query of provider name in the browser
// that holds res's binding cookie.
func (w *World) Callback(name string, res broker.ConnectResult, q url.Values) (broker.CallbackResult, error) {
	return w.Broker.Callback(context.Background(), broker.CallbackRequest{
		Provider: name,
		Query:    q,
		Binding: func(flow string) (string, bool) {
			if res.Binding == nil {
				return "", false
			}
			return res.Binding.Secret, flow == res.Binding.Flow
		},
	})
}

// Connected runs a whole flow for provider name and connection id — link,
// connect, the provider's consent, callback — and returns the stored
// connection.
func (w *World) Connected(t testing.TB, name, id string) store.Connection {
	t.Helper()
	res, err := w.Connect(name, w.Link(t, name, id, nil))
	if err != nil {
		t.Fatal(err)
	}
	loc, err := url.Parse(res.Location)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Location, w.Broker.Config.BaseURL+"/callback/") {
		loc = w.Server(t, name).Authorize(t, res.Location)
	}
	cb, err := w.Callback(name, res, loc.Query())
	if err != nil || cb.Connection == nil || cb.Connection.ConnectionID != id {
		t.Fatalf("callback: %+v %v", cb, err)
	}
	return w.Get(t, name, id)
}

// Get returns the stored connection.
func (w *World) Get(t testing.TB, name, id string) store.Connection {
	t.Helper()
	c, err := w.Store.GetConnection(context.Background(), name, id)
	if err != nil {
		t.Fatalf("%s/%s: %v", name, id, err)
	}
	return c
}

// Seed stores a connected connection of provider name holding a grant its
// server issued (scope read), expiring in an hour and due for refresh at
// now+due. A provider no server serves (one since removed from the
// catalog, say) gets its grant from the first Provider's server.
func (w *World) Seed(t testing.TB, name, id string, due time.Duration) store.Connection {
	t.Helper()
	srv, ok := w.Servers[name]
	if !ok {
		srv = w.Server(t, w.first)
	}
	access, refresh := srv.IssueGrant("read")
	now := w.Broker.Now().Truncate(time.Second) // the stores keep seconds
	c, err := w.Store.SaveConnection(context.Background(), store.Connection{
		Provider: name, ConnectionID: id, Status: store.StatusConnected,
		AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresAt: now.Add(time.Hour), Scope: "read", Metadata: map[string]string{"user_id": "u1"},
		Grant: provider.GrantAuthorizationCode, NextRefresh: now.Add(due),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Sweep runs one refresh sweep.
func (w *World) Sweep(t testing.TB) broker.RefreshSummary {
	t.Helper()
	sum, err := w.Broker.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
