// Package awsstack stands up the AWS side of one deployment on local
// servers, as template.yaml gives it to the functions: a DynamoDB table
// (dynalite), a KMS key (local-kms), the signing keys and the providers'
// client credentials in Secrets Manager and an event bus in EventBridge (an
// account of its own on moto), a providers file, and the environment that
// points a function at all of it: one definition for every test that runs
// the functions against local AWS, so a new variable or resource is added
// in one place.
//
// A package that uses it shares dynalite's and moto's servers: its TestMain
// must wrap both (logcheck.Main(moto.Wrap(dynalite.Wrap(m)))).
package awsstack

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/localkms"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testkeys"
	"github.com/oauthbroker/oauthbroker/shared/setup"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

// SecretsPrefix is the prefix of the stack's secrets, the functions'
// default (SECRETS_PREFIX unset).
const SecretsPrefix = "oauthbroker/"

// KeyID is the id of the one signing key in the keys secret.
const KeyID = "k1"

// Config is what a stack holds besides its servers.
type Config struct {
	// Bus is the EventBridge bus created and named in EVENT_BUS_NAME.
	Bus string
	// SigningKey is the material of the signing key KeyID, the current
	// one of the keys secret.
	SigningKey string
	// Clients are the client credentials of each provider, stored as the
	// secret <SecretsPrefix>provider/<name>.
	Clients map[string]Client
	// Catalog is the providers file (PROVIDERS_FILE), YAML.
	Catalog string
	// BaseURL and ReturnOrigins are BASE_URL and RETURN_ORIGINS.
	BaseURL, ReturnOrigins string
	// Account is the moto account to use, such as one behind a proxy
	// (moto.Account.Proxied); nil means a new account on the package's
	// shared moto server.
	Account *moto.Account
}

// Client is a provider's client credentials as the broker reads them.
type Client struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

// Stack is a running deployment's AWS side.
type Stack struct {
	DynamoDB *dynalite.Server // the package's shared server
	Table    string           // a fresh table of its own
	KMS      *localkms.Server // a server of its own, with the token key
	Account  *moto.Account    // Secrets Manager and EventBridge
	// Env is the functions' environment: the account's credentials and
	// endpoints, the table, key, bus, providers file, base URL and return
	// origins. Callers add to it (a copy per function, when they differ).
	Env map[string]string

	cfg Config
}

// New starts a stack for t; everything it made goes with t's cleanup.
func New(t testing.TB, c Config) *Stack {
	t.Helper()
	ddb := dynalite.Shared(t)
	s := &Stack{DynamoDB: ddb, Table: dynalite.NewTable(t, ddb.Client), KMS: localkms.Start(t), Account: c.Account, cfg: c}
	if s.Account == nil {
		s.Account = moto.Shared(t).NewAccount(t)
	}
	// moto, unlike AWS, refuses events for a bus that does not exist, so
	// a misnamed bus fails the run.
	s.Account.CreateBus(t, c.Bus)
	s.Account.PutSecret(t, SecretsPrefix+"keys", mustJSON(t, map[string]string{"current_kid": KeyID, KeyID: c.SigningKey}))
	for _, name := range slices.Sorted(maps.Keys(c.Clients)) {
		s.Account.PutSecret(t, SecretsPrefix+"provider/"+name, mustJSON(t, c.Clients[name]))
	}
	providers := filepath.Join(t.TempDir(), "providers.yaml")
	if err := os.WriteFile(providers, []byte(c.Catalog), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Env = s.Account.Env()
	maps.Copy(s.Env, map[string]string{
		"TABLE_NAME":                s.Table,
		"BASE_URL":                  c.BaseURL,
		"RETURN_ORIGINS":            c.ReturnOrigins,
		"PROVIDERS_FILE":            providers,
		"AWS_ENDPOINT_URL_DYNAMODB": ddb.Endpoint,
		"TOKEN_KEY_ID":              s.KMS.KeyARN,
		"AWS_ENDPOINT_URL_KMS":      s.KMS.Endpoint,
		"EVENT_BUS_NAME":            c.Bus,
	})
	return s
}

// EnvWith returns a copy of Env with vars laid over it.
func (s *Stack) EnvWith(vars map[string]string) map[string]string {
	env := maps.Clone(s.Env)
	maps.Copy(env, vars)
	return env
}

// Keys returns the keyset of the keys secret, to sign connect links as the
// app does.
func (s *Stack) Keys(t testing.TB) *signing.Keyset {
	t.Helper()
	ks, err := testkeys.Keyset(KeyID, map[string][]byte{KeyID: []byte(s.cfg.SigningKey)})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// Store returns a store on the stack's table sealing as the functions do
// (setup.Store), with uncounted clients of its own: for seeding and
// checking what the functions store.
func (s *Stack) Store() *dynamo.Store {
	return setup.Store(s.DynamoDB.Client, s.KMS.Client, setup.Env{TableName: s.Table, TokenKeyID: s.KMS.KeyARN})
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
