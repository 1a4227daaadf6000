// Command connectlink prints a signed connect link: the URL an app puts
// behind its "Connect" button to start a connection for one customer.
//
// Usage:
//
//	connectlink -base-url https://api.example.com -provider acme \
//	    -connection-id cust-42 -return-to https://app.example.com/done \
//	    [-scope "a b"] [-grant client_credentials] [-param domain=mail.example.com]... \
//	    [-ttl 5m] (-keys-file keys.json | -keys-secret oauthbroker/keys)
//
// -return-to may be left out only for a client_credentials connect; the
// broker then answers 201 JSON instead of redirecting.
//
// The signing keys come from a local keyset file
// ({"current_kid":"k1","k1":"…"}) or from AWS Secrets Manager, read with
// the default AWS configuration (environment, shared config, SSO, role).
// Only the link is printed, on standard output; the keys never are.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/setup"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

// DefaultTTL is how long a link stays valid unless -ttl says otherwise:
// signing.ClickLinkLifetime, as for a link minted when the customer
// clicks. Each link works from the first browser that opens it only.
const DefaultTTL = signing.ClickLinkLifetime

// awsSecrets returns the Secrets Manager source; tests replace it.
var awsSecrets = func(ctx context.Context) (secrets.Source, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	return secrets.NewManager(secretsmanager.NewFromConfig(cfg)), nil
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, time.Now))
}

// request is a parsed command line.
type request struct {
	baseURL    string
	link       signing.Link
	keysFile   string
	keysSecret string
}

// run is the command; it returns the exit status (2 for usage errors).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, now func() time.Time) int {
	req, err := parseArgs(args, stderr, now())
	if errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		fmt.Fprintln(stderr, "connectlink:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	raw, err := loadKeys(ctx, req)
	if err != nil {
		fmt.Fprintln(stderr, "connectlink:", err)
		return 1
	}
	ks, err := signing.ParseKeyset(raw)
	if err != nil {
		fmt.Fprintln(stderr, "connectlink:", err)
		return 1
	}
	link, err := signing.ConnectURL(ks, req.baseURL, req.link)
	if err != nil {
		fmt.Fprintln(stderr, "connectlink:", err)
		return 2
	}
	fmt.Fprintln(stdout, link)
	return 0
}

func parseArgs(args []string, stderr io.Writer, now time.Time) (request, error) {
	fs := flag.NewFlagSet("connectlink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	baseURL := fs.String("base-url", "", "the broker's BASE_URL, e.g. https://api.example.com (required)")
	prov := fs.String("provider", "", "provider name in the catalog (required)")
	connID := fs.String("connection-id", "", "the app's id for this customer connection (required)")
	returnTo := fs.String("return-to", "", "where the browser goes afterwards; its origin must be in RETURN_ORIGINS (leave out only for client_credentials)")
	scope := fs.String("scope", "", `space-separated scopes; empty: the provider's default scopes`)
	grant := fs.String("grant", "", "authorization_code or client_credentials; empty: the provider's default")
	params := map[string]string{}
	fs.Func("param", "connection parameter name=value the provider declares (repeatable), e.g. domain=mail.example.com", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return errors.New("want name=value")
		}
		if _, dup := params[k]; dup {
			return fmt.Errorf("%s given twice", k)
		}
		params[k] = v
		return nil
	})
	ttl := fs.Duration("ttl", DefaultTTL, "how long the link stays valid")
	keysFile := fs.String("keys-file", "", `signing keyset file {"current_kid":"k1","k1":"…"}`)
	keysSecret := fs.String("keys-secret", "", "Secrets Manager secret holding the keyset, e.g. oauthbroker/keys")
	if err := fs.Parse(args); err != nil {
		return request{}, err
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, "unexpected arguments: "+strings.Join(fs.Args(), " "))
	}
	base, err := setup.BaseURL(*baseURL) // the broker's own rule for BASE_URL
	if err != nil {
		problems = append(problems, "-base-url: "+err.Error())
	}
	if *prov == "" {
		problems = append(problems, "-provider is required")
	}
	if *connID == "" {
		problems = append(problems, "-connection-id is required")
	}
	// An empty -return-to is for client_credentials connects; whether that
	// is the provider's default grant is the broker's call (it answers 403
	// to an authorization_code link without one).
	if *returnTo != "" || *grant == "authorization_code" {
		if err := checkReturnTo(*returnTo); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if *ttl <= 0 || *ttl > signing.MaxLinkLifetime {
		problems = append(problems, fmt.Sprintf("-ttl must be positive and at most %s", signing.MaxLinkLifetime))
	}
	if (*keysFile == "") == (*keysSecret == "") {
		problems = append(problems, "give exactly one of -keys-file and -keys-secret")
	}
	if len(problems) > 0 {
		return request{}, errors.New(strings.Join(problems, "; "))
	}
	return request{
		baseURL: base,
		link: signing.Link{
			Provider:     *prov,
			ConnectionID: *connID,
			ReturnTo:     *returnTo,
			Scopes:       strings.Fields(*scope),
			Grant:        *grant,
			Params:       params,
			Expires:      now.Add(*ttl),
		},
		keysFile:   *keysFile,
		keysSecret: *keysSecret,
	}, nil
}

// checkReturnTo applies the broker's return URL rules with the URL's own
// origin allowed: it catches what the broker would refuse whatever
// RETURN_ORIGINS holds (http off loopback, userinfo, backslashes, …).
func checkReturnTo(raw string) error {
	bad := errors.New("-return-to must be an absolute https URL (http only on loopback) without userinfo or fragment")
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Scheme == "" || u.Host == "" {
		return bad
	}
	allow, err := returnto.ParseOrigins(u.Scheme + "://" + u.Host)
	if err != nil {
		return bad
	}
	if _, err := allow.Check(raw); err != nil {
		return bad
	}
	return nil
}

// loadKeys reads the keyset from the file or the secret.
func loadKeys(ctx context.Context, req request) ([]byte, error) {
	if req.keysFile != "" {
		b, err := os.ReadFile(req.keysFile)
		if err != nil {
			return nil, fmt.Errorf("keys file: %w", err)
		}
		return b, nil
	}
	src, err := awsSecrets(ctx)
	if err != nil {
		return nil, err
	}
	return src.Secret(ctx, req.keysSecret)
}
