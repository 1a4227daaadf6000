package moto

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// defaultAccount is the account moto gives a request it cannot attribute
// to another: never one of NewAccount's.
const defaultAccount = "123456789012"

// Account is an AWS account of its own on a Server, reached with its own
// access key.
type Account struct {
	// ID is the twelve-digit account id, as in the ARNs moto makes.
	ID string
	// Endpoint is where the account's requests go: the server, or a Proxy
	// in front of it (see Proxied).
	Endpoint string

	accessKeyID, secretAccessKey string
}

// NewAccount creates an account with a fresh random id and an IAM user
// with an access key in it, and returns it. Moto attributes a request to
// the account whose IAM holds the request's access key, so every client
// and function given the account's credentials works in it alone.
func (s *Server) NewAccount(t testing.TB) *Account {
	t.Helper()
	id := defaultAccount
	for id == defaultAccount {
		n, err := rand.Int(rand.Reader, big.NewInt(1e12))
		if err != nil {
			t.Fatal(err)
		}
		id = fmt.Sprintf("%012d", n.Int64())
	}
	// The IAM calls name the account with moto's own header: no access key
	// of the account exists yet.
	client := iam.New(iam.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("bootstrap", "bootstrap", ""),
		Retryer:      aws.NopRetryer{},
		APIOptions: []func(*middleware.Stack) error{
			smithyhttp.AddHeaderValue("x-moto-account-id", id),
		},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	user := aws.String(testUser)
	if _, err := client.CreateUser(ctx, &iam.CreateUserInput{UserName: user}); err != nil {
		t.Fatalf("moto: create user in account %s: %v", id, err)
	}
	key, err := client.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: user})
	if err != nil {
		t.Fatalf("moto: create access key in account %s: %v", id, err)
	}
	return &Account{
		ID:              id,
		Endpoint:        s.Endpoint,
		accessKeyID:     aws.ToString(key.AccessKey.AccessKeyId),
		secretAccessKey: aws.ToString(key.AccessKey.SecretAccessKey),
	}
}

// Config returns an aws.Config for the account: its credentials, Region,
// BaseEndpoint set to Endpoint for every service, and no retries, so a
// fault a Proxy injects surfaces after exactly one request.
func (a *Account) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		BaseEndpoint: aws.String(a.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(a.accessKeyID, a.secretAccessKey, ""),
		Retryer:      func() aws.Retryer { return aws.NopRetryer{} },
	}
}

// Env returns the environment that points the functions' Secrets Manager
// and EventBridge clients at the account: the endpoint variables, its
// credentials and Region.
func (a *Account) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": a.Endpoint,
		"AWS_ENDPOINT_URL_EVENTBRIDGE":     a.Endpoint,
		"AWS_ACCESS_KEY_ID":                a.accessKeyID,
		"AWS_SECRET_ACCESS_KEY":            a.secretAccessKey,
		"AWS_REGION":                       Region,
	}
}

// ARN returns the ARN of a resource of service in the account, such as
// ARN("events", "event-bus/default").
func (a *Account) ARN(service, resource string) string {
	return "arn:aws:" + service + ":" + Region + ":" + a.ID + ":" + resource
}
