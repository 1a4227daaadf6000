package eventrecorder_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/eventrecorder"
	"github.com/oauthbroker/oauthbroker/shared/lifecycle"
)

func TestRecorder(t *testing.T) {
	when := time.Date(2026, 11, 24, 21, 0, 0, 0, time.UTC)
	events := []lifecycle.Event{
		{Type: lifecycle.Created, Provider: "acme", ConnectionID: "c1", Status: "connected", Time: when},
		{Type: lifecycle.NeedsReauth, Provider: "acme", ConnectionID: "c1", Status: "needs_reauth", Time: when, FailureClass: "invalid_grant"},
		{Type: lifecycle.Failing, Provider: "getresponse360", ConnectionID: "cust:42@eu", Status: "failing", Time: when, FailureClass: "provider_unavailable"},
		{Type: lifecycle.Deleted, Provider: "acme", ConnectionID: "c1", Status: "deleted", Time: when},
	}
	var rec eventrecorder.Recorder
	var wg sync.WaitGroup
	for _, e := range events {
		wg.Go(func() {
			if err := rec.Publish(context.Background(), e); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := rec.Publish(context.Background(), lifecycle.Event{Type: "bogus"}); err == nil {
		t.Error("Recorder accepted an unknown type")
	}
	got := rec.Events()
	if len(got) != len(events) {
		t.Fatalf("Recorder has %d events", len(got))
	}
	for _, e := range events {
		if !slices.Contains(got, e) {
			t.Errorf("Recorder lacks %+v", e)
		}
	}
}
