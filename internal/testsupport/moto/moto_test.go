package moto_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/childproc"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/failures"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
)

func TestStart(t *testing.T) {
	childproc.CheckStopsWithTest(t, func(t *testing.T) string {
		srv := moto.Start(t)
		acct := srv.NewAccount(t)
		arn := acct.PutSecret(t, "app/key", "value-of-app-key")
		if !strings.HasPrefix(arn, acct.ARN("secretsmanager", "secret:app/key-")) {
			t.Errorf("secret ARN %s is not in account %s", arn, acct.ID)
		}
		return srv.Endpoint
	})
}

func TestMissingBinaryFails(t *testing.T) {
	t.Setenv("MOTO_PYTHON", filepath.Join(t.TempDir(), "python3"))
	failures.Want(t, func(tb testing.TB) { moto.Start(tb) }, "run 'make tools'")
}

// TestAccountsAreApart: two accounts on one server hold resources of the
// same name without seeing each other's.
func TestAccountsAreApart(t *testing.T) {
	srv := moto.Shared(t)
	a, b := srv.NewAccount(t), srv.NewAccount(t)
	if a.ID == b.ID {
		t.Fatalf("two accounts with id %s", a.ID)
	}
	pattern := `{"source":["test"]}`
	subA, subB := a.Subscribe(t, "default", pattern), b.Subscribe(t, "default", pattern)
	for _, acct := range []*moto.Account{a, b} {
		acct.PutSecret(t, "oauthbroker/keys", "keys-of-"+acct.ID)
		if err := putEvent(t, acct, "default", `{"account":"`+acct.ID+`"}`); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		acct *moto.Account
		sub  *moto.Subscriber
	}{{a, subA}, {b, subB}} {
		out, err := secretsmanager.NewFromConfig(tt.acct.Config()).GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("oauthbroker/keys")})
		if err != nil || aws.ToString(out.SecretString) != "keys-of-"+tt.acct.ID {
			t.Errorf("account %s reads %q, %v", tt.acct.ID, aws.ToString(out.SecretString), err)
		}
		evs := tt.sub.Receive(t, 1, 5*time.Second)
		if evs[0].Account != tt.acct.ID || evs[0].Detail["account"] != tt.acct.ID {
			t.Errorf("account %s received %s", tt.acct.ID, evs[0].Body)
		}
	}
}

func putEvent(t *testing.T, acct *moto.Account, bus, detail string) error {
	t.Helper()
	out, err := eventbridge.NewFromConfig(acct.Config()).PutEvents(t.Context(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{{
		EventBusName: aws.String(bus), Source: aws.String("test"), DetailType: aws.String("test.event"), Detail: aws.String(detail),
	}}})
	if err == nil && out.FailedEntryCount != 0 {
		err = fmt.Errorf("failed entry %s", aws.ToString(out.Entries[0].ErrorCode))
	}
	return err
}

// TestSubscriber: a subscriber receives exactly the events its pattern
// matches, on its bus, and Receive fails on too few or too many.
func TestSubscriber(t *testing.T) {
	acct := moto.Shared(t).NewAccount(t)
	acct.CreateBus(t, "custom")
	sub := acct.Subscribe(t, "custom", `{"source":["test"],"detail":{"n":["1","3"]}}`)
	other := acct.Subscribe(t, "default", `{"source":["test"]}`)
	for i := range 4 {
		if err := putEvent(t, acct, "custom", fmt.Sprintf(`{"n":"%d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	evs := sub.Receive(t, 2, 5*time.Second)
	if evs[0].Detail["n"] != "1" || evs[1].Detail["n"] != "3" || evs[0].Source != "test" || evs[0].DetailType != "test.event" {
		t.Errorf("received %s", evs)
	}
	if evs[0].Time.IsZero() || time.Since(evs[0].Time) > time.Minute {
		t.Errorf("event time %v", evs[0].Time)
	}
	other.Receive(t, 0, 0) // nothing reached the default bus

	tests := []struct {
		name    string
		publish int
		receive int
		want    string
	}{
		{"too few", 1, 2, "1 event(s) after"},
		{"too many", 2, 1, "1 event(s) more than the 1 expected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := acct.Subscribe(t, "default", `{"source":["test"],"detail-type":["`+tt.name+`"]}`)
			for range tt.publish {
				if _, err := eventbridge.NewFromConfig(acct.Config()).PutEvents(t.Context(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{{
					Source: aws.String("test"), DetailType: aws.String(tt.name), Detail: aws.String(`{}`),
				}}}); err != nil {
					t.Fatal(err)
				}
			}
			failures := failures.Of(t, func(tb testing.TB) { s.Receive(tb, tt.receive, 100*time.Millisecond) })
			if len(failures) != 1 || !strings.Contains(failures[0], tt.want) {
				t.Errorf("failures %q, want one with %q", failures, tt.want)
			}
		})
	}
}

// TestProxy: injected faults answer the calls they select, as often as
// asked; every other call reaches moto; all are counted.
func TestProxy(t *testing.T) {
	acct, proxy := moto.Shared(t).NewAccount(t).Proxied(t)
	acct.PutSecret(t, "a", "value-of-secret-a")
	acct.PutSecret(t, "b", "value-of-secret-b")
	proxy.Inject("GetSecretValue", moto.Input("SecretId", "a"), 1, moto.AWSError(400, "ThrottlingException", "Rate exceeded"))
	proxy.Inject("GetSecretValue", moto.Input("SecretId", "b"), -1, moto.AWSError(500, "InternalServiceError", "boom"))
	client := secretsmanager.NewFromConfig(acct.Config())
	get := func(ctx context.Context, id string) error {
		_, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
		return err
	}

	for _, tt := range []struct {
		id, want string // want: the error code, "" for success
	}{
		{"a", "ThrottlingException"},
		{"a", ""},
		{"b", "InternalServiceError"},
		{"b", "InternalServiceError"},
		{"c", "ResourceNotFoundException"}, // from moto
	} {
		err := get(t.Context(), tt.id)
		apiErr, isAPI := errors.AsType[smithy.APIError](err)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.id, err)
		case tt.want != "" && (!isAPI || apiErr.ErrorCode() != tt.want):
			t.Errorf("%s: error %v, want %s", tt.id, err, tt.want)
		}
	}
	if n := proxy.Calls("GetSecretValue", moto.Input("SecretId", "a")); n != 2 {
		t.Errorf("%d calls for a, want 2", n)
	}
	if n := proxy.Calls("GetSecretValue", nil); n != 5 {
		t.Errorf("%d calls, want 5", n)
	}

	proxy.Inject("GetSecretValue", nil, 1, moto.Hang)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := get(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung call: %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hung call returned after %v", d)
	}
}
