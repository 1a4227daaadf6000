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
	"maps"
	"slices"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/dynalite"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/localkms"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testcatalog"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/setup"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

// Config is what a stack holds besides its servers.
type Config struct {
	// Bus is the EventBridge bus created and named in EVENT_BUS_NAME.
	Bus string
	// Secrets are put in Secrets Manager.
	Secrets testsecrets.Set
	// Catalog is the providers file (PROVIDERS_FILE), YAML.
	Catalog string
	// BaseURL and ReturnOrigins are BASE_URL and RETURN_ORIGINS.
	BaseURL, ReturnOrigins string
	// Account is the moto account to use, such as one behind a proxy
	// (moto.Account.Proxied); nil means a new account on the package's
	// shared moto server.
	Account *moto.Account
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
}

// New starts a stack for t; everything it made goes with t's cleanup.
func New(t testing.TB, c Config) *Stack {
	t.Helper()
	ddb := dynalite.Shared(t)
	s := &Stack{DynamoDB: ddb, Table: dynalite.NewTable(t, ddb.Client), KMS: localkms.Start(t), Account: c.Account}
	if s.Account == nil {
		s.Account = moto.Shared(t).NewAccount(t)
	}
	// moto, unlike AWS, refuses events for a bus that does not exist, so
	// a misnamed bus fails the run.
	s.Account.CreateBus(t, c.Bus)
	values := c.Secrets.Values()
	for _, name := range slices.Sorted(maps.Keys(values)) {
		s.Account.PutSecret(t, name, values[name])
	}
	s.Env = s.Account.Env()
	maps.Copy(s.Env, map[string]string{
		"TABLE_NAME":                s.Table,
		"BASE_URL":                  c.BaseURL,
		"RETURN_ORIGINS":            c.ReturnOrigins,
		"PROVIDERS_FILE":            testcatalog.File(t, []byte(c.Catalog)),
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

// Store returns a store on the stack's table sealing as the functions do
// (setup.Store), with uncounted clients of its own: for seeding and
// checking what the functions store.
func (s *Stack) Store() *dynamo.Store {
	return setup.Store(s.DynamoDB.Client, s.KMS.Client, setup.Env{TableName: s.Table, TokenKeyID: s.KMS.KeyARN})
}
