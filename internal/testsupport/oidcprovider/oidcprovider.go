// Package oidcprovider runs panva's oidc-provider, a certified OpenID
// Connect and OAuth 2.0 server written independently of this repository,
// for tests that need a real authorization server rather than one of ours.
//
// The server (server.mjs, embedded here and written to a temporary
// directory so that any package's tests can start it, whatever their
// working directory) registers one confidential client and serves the
// authorization code grant with PKCE (S256, required), refresh tokens with
// rotation and reuse detection, and RFC 7009 revocation. devInteractions
// serve the login and consent pages, which a Browser fills in.
//
// oidc-provider is installed under the module root's .tools by `make
// tools`; Node.js runs it. A missing installation fails the test: it is
// never skipped. The server's output goes to logcheck.Feed when it stops,
// and every code and token it stores is registered with logcheck (S22), as
// is the client secret.
package oidcprovider

import (
	"bufio"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

//go:embed server.mjs
var serverScript []byte

// Options configure the server and its one client.
type Options struct {
	// RedirectURIs are the client's registered redirect URIs; at least one.
	RedirectURIs []string
	// ClientID defaults to "oauthbroker-test"; ClientSecret to a random
	// value. The client authenticates with client_secret_basic or
	// client_secret_post, as it likes.
	ClientID, ClientSecret string
	// Scopes are the scopes the server grants besides openid and
	// offline_access. An authorization request must ask for at least one
	// scope the server knows: oidc-provider answers access_denied to a
	// request that would grant none.
	Scopes []string
	// AccessTokenTTL is the lifetime of access tokens, in whole seconds;
	// default 60 s.
	AccessTokenTTL time.Duration
}

// Server is a running oidc-provider.
type Server struct {
	// Issuer is the server's issuer identifier and base URL, such as
	// http://127.0.0.1:41234; authorization responses carry it as iss
	// (RFC 9207).
	Issuer string
	// The endpoints, as the server's discovery document names them.
	AuthorizationEndpoint, TokenEndpoint, RevocationEndpoint string
	// ClientID and ClientSecret are the registered client's credentials.
	ClientID, ClientSecret string
	// RedirectURIs are the client's registered redirect URIs.
	RedirectURIs []string

	p      *childproc.Process
	issued chan struct{} // closed when the issued-credentials pipe is drained
}

// Start starts a server for t and stops it when t's cleanup runs.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := start(t.TempDir(), o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("oidc-provider output:\n%s", s.p.Output())
		}
	})
	return s
}

// config is what server.mjs reads from $OIDCP_CONFIG.
type config struct {
	Tools  string `json:"tools"`
	Port   int    `json:"port"`
	Issuer string `json:"issuer"`
	Client struct {
		ClientID     string   `json:"client_id"`
		ClientSecret string   `json:"client_secret"`
		RedirectURIs []string `json:"redirect_uris"`
	} `json:"client"`
	Scopes         []string `json:"scopes"`
	AccessTokenTTL int      `json:"accessTokenTTL"`
}

func start(dir string, o Options) (*Server, error) {
	if len(o.RedirectURIs) == 0 {
		return nil, fmt.Errorf("oidcprovider: Options.RedirectURIs is empty")
	}
	if o.ClientID == "" {
		o.ClientID = "oauthbroker-test"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = rand.Text()
	}
	logcheck.Register(o.ClientSecret)
	if o.AccessTokenTTL == 0 {
		o.AccessTokenTTL = time.Minute
	}
	if o.AccessTokenTTL < time.Second || o.AccessTokenTTL%time.Second != 0 {
		return nil, fmt.Errorf("oidcprovider: AccessTokenTTL %v is not a whole number of seconds", o.AccessTokenTTL)
	}

	node, tools, err := installation()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(dir, "server.mjs")
	if err := os.WriteFile(script, serverScript, 0o600); err != nil {
		return nil, fmt.Errorf("oidcprovider: %w", err)
	}

	// The server writes each code and token it stores to descriptor 3.
	issuedR, issuedW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("oidcprovider: %w", err)
	}
	s := &Server{
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		RedirectURIs: o.RedirectURIs,
		issued:       make(chan struct{}),
	}
	go func() {
		defer close(s.issued)
		defer issuedR.Close()
		registerLines(issuedR)
	}()
	s.p, err = childproc.Start(childproc.Spec{
		Name: "oidc-provider",
		Command: func(port int) *exec.Cmd {
			var c config
			c.Tools, c.Port = tools, port
			c.Issuer = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			c.Client.ClientID, c.Client.ClientSecret, c.Client.RedirectURIs = o.ClientID, o.ClientSecret, o.RedirectURIs
			c.Scopes = append([]string{"openid", "offline_access"}, o.Scopes...)
			c.AccessTokenTTL = int(o.AccessTokenTTL / time.Second)
			cfg, _ := json.Marshal(c) // strings and numbers only: it cannot fail
			cmd := exec.Command(node, script)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "OIDCP_CONFIG="+string(cfg))
			cmd.ExtraFiles = []*os.File{issuedW}
			return cmd
		},
		ReadyPath: discoveryPath,
	})
	issuedW.Close() // the server holds its own copy
	if err != nil {
		<-s.issued
		return nil, err
	}
	s.Issuer = s.p.URL
	if err := s.discover(); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w\noidc-provider output:\n%s", err, s.p.Output())
	}
	return s, nil
}

// registerLines registers each line of r with logcheck.
func registerLines(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		logcheck.Register(sc.Text())
	}
}

// discoveryPath is where the server serves its discovery document.
const discoveryPath = "/.well-known/openid-configuration"

// discover reads the endpoints from the discovery document.
func (s *Server) discover() error {
	url := s.Issuer + discoveryPath
	var doc struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		RevocationEndpoint    string `json:"revocation_endpoint"`
	}
	if err := getJSON(url, &doc); err != nil {
		return fmt.Errorf("oidcprovider: discovery: %w", err)
	}
	if doc.Issuer != s.Issuer || doc.AuthorizationEndpoint == "" || doc.TokenEndpoint == "" || doc.RevocationEndpoint == "" {
		return fmt.Errorf("oidcprovider: discovery at %s lacks the issuer or an endpoint: %+v", url, doc)
	}
	s.AuthorizationEndpoint, s.TokenEndpoint, s.RevocationEndpoint = doc.AuthorizationEndpoint, doc.TokenEndpoint, doc.RevocationEndpoint
	return nil
}

func getJSON(url string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// stop kills the server, registers what it issued and feeds its output to
// logcheck.
func (s *Server) stop() {
	s.p.Stop()
	<-s.issued
}

// installation returns the node command and the directory oidc-provider
// is installed under.
func installation() (node, tools string, err error) {
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", fmt.Errorf("oidc-provider needs Node.js: install nodejs and npm (apt-get install nodejs npm), then run 'make tools' (%v)", err)
	}
	root, err := modroot.Dir()
	if err != nil {
		return "", "", fmt.Errorf("oidc-provider not installed: run 'make tools' (%v)", err)
	}
	tools = filepath.Join(root, ".tools")
	if _, err := os.Stat(filepath.Join(tools, "node_modules", "oidc-provider", "package.json")); err != nil {
		return "", "", fmt.Errorf("oidc-provider not installed: run 'make tools' (%v)", err)
	}
	return node, tools, nil
}
