// Package setup builds a broker.Broker from the environment, once per
// Lambda execution environment (outside the handler), on DynamoDB and
// Secrets Manager.
package setup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/oauthbroker/oauthbroker/shared/broker"
	"github.com/oauthbroker/oauthbroker/shared/envelope"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
	"github.com/oauthbroker/oauthbroker/shared/provider"
	"github.com/oauthbroker/oauthbroker/shared/returnto"
	"github.com/oauthbroker/oauthbroker/shared/secrets"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

// SecretsTTL is how long a warm function reuses a secret it read.
const SecretsTTL = 5 * time.Minute

// Env is the configuration read from the environment.
type Env struct {
	// TableName is the DynamoDB table (TABLE_NAME).
	TableName string
	// EventBusName is the EventBridge bus for lifecycle events
	// (EVENT_BUS_NAME: a name or ARN); empty publishes none.
	EventBusName string
	// TokenKeyID is the KMS key that wraps the data keys sealing stored
	// credentials (TOKEN_KEY_ID: a key ARN, key id or alias ARN).
	TokenKeyID string
	// Broker holds BASE_URL, SECRETS_PREFIX, RETURN_ORIGINS and
	// CONFIRM_CONNECTIONS (required, the default, or off).
	Broker broker.Config
	// ProvidersFile is the operator's catalog file (PROVIDERS_FILE).
	ProvidersFile string
	// Refresh holds REFRESH_WORKERS, REFRESH_BATCH, REFRESH_LEASE_SECONDS
	// and REFRESH_FAILING_AFTER; unset means the broker's default.
	Refresh broker.RefreshOptions
}

// ReadEnv reads and validates the configuration; getenv is os.Getenv in
// production. Errors name the variable, never a secret (none is here).
func ReadEnv(getenv func(string) string) (Env, error) {
	var errs []error
	e := Env{TableName: getenv("TABLE_NAME"), TokenKeyID: getenv("TOKEN_KEY_ID"), EventBusName: getenv("EVENT_BUS_NAME"), ProvidersFile: getenv("PROVIDERS_FILE")}
	if e.TableName == "" {
		errs = append(errs, errors.New("TABLE_NAME is required"))
	}
	if e.TokenKeyID == "" {
		errs = append(errs, errors.New("TOKEN_KEY_ID is required (the KMS key sealing stored tokens)"))
	}
	base, err := BaseURL(getenv("BASE_URL"))
	if err != nil {
		errs = append(errs, err)
	}
	e.Broker.BaseURL = base
	e.Broker.SecretsPrefix = getenv("SECRETS_PREFIX")
	if e.Broker.SecretsPrefix == "" {
		e.Broker.SecretsPrefix = "oauthbroker/"
	}
	if e.Broker.ReturnTo, err = returnto.ParseOrigins(getenv("RETURN_ORIGINS")); err != nil {
		errs = append(errs, err)
	}
	switch v := getenv("CONFIRM_CONNECTIONS"); v {
	case "", "required":
		e.Broker.Confirm = true
	case "off":
	default:
		errs = append(errs, fmt.Errorf("CONFIRM_CONNECTIONS %q must be required (the default) or off", v))
	}
	intVar := func(name string, lo, hi int) int {
		raw := getenv(name)
		if raw == "" {
			return 0
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s %q must be a whole number from %d to %d", name, raw, lo, hi))
			return 0
		}
		return n
	}
	e.Refresh.Workers = intVar("REFRESH_WORKERS", 1, 256)
	e.Refresh.Batch = intVar("REFRESH_BATCH", 1, 100000)
	e.Refresh.LeasePeriod = time.Duration(intVar("REFRESH_LEASE_SECONDS", int(broker.MinLeasePeriod/time.Second), 3600)) * time.Second
	e.Refresh.FailingAfter = intVar("REFRESH_FAILING_AFTER", 1, 1000)
	return e, errors.Join(errs...)
}

// BaseURL validates the public base URL: absolute, https (http only on
// loopback), no query or fragment; a trailing slash is dropped.
func BaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
		!(u.Scheme == "https" || u.Scheme == "http" && returnto.IsLoopback(u.Hostname())) {
		return "", fmt.Errorf("BASE_URL %q must be an absolute https URL (http only on loopback) without query", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// FromEnv builds the broker for a Lambda function: configuration from the
// environment and AWS clients from the default chain — which honours
// AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_SECRETS_MANAGER,
// AWS_ENDPOINT_URL_KMS and AWS_ENDPOINT_URL_EVENTBRIDGE, so tests and
// `sam local` can point the function anywhere — put together by New.
func FromEnv(ctx context.Context) (*broker.Broker, error) {
	env, err := ReadEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	return New(env, cfg)
}

// New builds the broker for env with AWS clients made from cfg: the
// catalog (failing fast on an invalid one), the DynamoDB store sealing
// under TOKEN_KEY_ID, Secrets Manager behind a SecretsTTL cache and, when
// a bus is named, EventBridge. FromEnv uses it with the default config; a
// caller can pass its own (an instrumented HTTPClient, say) and get the
// same wiring.
func New(env Env, cfg aws.Config) (*broker.Broker, error) {
	cat, err := provider.Load(env.ProvidersFile)
	if err != nil {
		return nil, err
	}
	var events lifecycle.Publisher
	if env.EventBusName != "" {
		// Two tries at most: an event is best effort, never worth holding
		// up a browser's answer or a sweep.
		eb := eventbridge.NewFromConfig(cfg, func(o *eventbridge.Options) { o.RetryMaxAttempts = 2 })
		events = lifecycle.NewEventBridge(eb, env.EventBusName)
	}
	return &broker.Broker{
		Config:         env.Broker,
		Catalog:        cat,
		Store:          Store(dynamodb.NewFromConfig(cfg), kms.NewFromConfig(cfg), env),
		Secrets:        secrets.NewCache(secrets.NewManager(secretsmanager.NewFromConfig(cfg)), SecretsTTL),
		ProviderClient: &provider.Client{HTTP: provider.NewHTTPClient()},
		Log:            Logger(),
		Refresh:        env.Refresh,
		Events:         events,
	}, nil
}

// Record kinds, named in the encryption context of each data key so that
// IAM can grant opening one kind and not the other: the callback opens
// states (their PKCE verifiers), never connections (their tokens).
const (
	RecordState      = "state"
	RecordConnection = "connection"
)

// Sealers returns the sealers of stored credentials: data keys from the
// KMS key TOKEN_KEY_ID under the encryption context {"oauthbroker:table":
// TABLE_NAME, "oauthbroker:record": kind}, which the functions' IAM
// policies require. Connections sealed before the record kind was named
// (context {"oauthbroker:table": TABLE_NAME}) still open; states live
// minutes and are not carried over.
func Sealers(client *kms.Client, env Env) (states, connections *envelope.Sealer) {
	states = envelope.NewSealer(envelope.NewKMS(client, env.TokenKeyID, EncryptionContext(env.TableName, RecordState)), envelope.DefaultKeyReuse)
	connKeys := envelope.NewKMS(client, env.TokenKeyID, EncryptionContext(env.TableName, RecordConnection)).WithLegacyContext(LegacyEncryptionContext(env.TableName))
	return states, envelope.NewSealer(connKeys, envelope.DefaultKeyReuse)
}

// Store returns the DynamoDB store of env, sealing under Sealers.
func Store(ddb *dynamodb.Client, client *kms.Client, env Env) *dynamo.Store {
	states, conns := Sealers(client, env)
	return dynamo.NewWithSealers(ddb, env.TableName, states, conns)
}

// EncryptionContext is the KMS encryption context of the data keys of one
// record kind (RecordState or RecordConnection).
func EncryptionContext(table, record string) map[string]string {
	return map[string]string{"oauthbroker:table": table, "oauthbroker:record": record}
}

// LegacyEncryptionContext is the context of data keys wrapped before the
// record kind was named.
func LegacyEncryptionContext(table string) map[string]string {
	return map[string]string{"oauthbroker:table": table}
}

// Logger returns the JSON logger every function uses (one line per event,
// CloudWatch-friendly).
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stdout, nil))
}

// Start is a function's main: it builds the broker from the environment
// (FromEnv), once per execution environment, and serves the handler that
// handlerFor makes of it until Lambda stops the process. A configuration
// error is logged and ends the process before the first invoke.
func Start[H any](handlerFor func(*broker.Broker) H) {
	b, err := FromEnv(context.Background())
	if err != nil {
		Logger().Error("configuration error", "cause", err.Error())
		os.Exit(1)
	}
	lambda.Start(handlerFor(b))
}
