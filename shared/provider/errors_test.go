package provider

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestTransportKinds: a request that got no whole answer says why in a
// typed kind, and whether it had left in full, so that callers decide on
// values rather than on Reason's prose.
func TestTransportKinds(t *testing.T) {
	hang := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(500 * time.Millisecond): // well past every deadline below
		}
	}
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		http       *http.Client
		ctx        func(context.Context) (context.Context, context.CancelFunc)
		refused    bool
		want       Transport
		unanswered bool
		failure    Failure
	}{
		{name: "client timeout", handler: hang, http: &http.Client{Timeout: 50 * time.Millisecond},
			want: TransportTimeout, unanswered: true, failure: FailureUnavailable},
		{name: "context deadline", handler: hang,
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, 50*time.Millisecond)
			},
			want: TransportTimeout, unanswered: true, failure: FailureUnavailable},
		{name: "context cancelled", handler: hang,
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			},
			want: TransportCancelled, unanswered: true, failure: FailureUnavailable},
		{name: "connection cut after the request", handler: func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, want: TransportNetwork, unanswered: true, failure: FailureUnavailable},
		{name: "connection refused", refused: true, want: TransportNetwork, unanswered: false, failure: FailureUnavailable},
		{name: "answered 503", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}, want: TransportAnswered, unanswered: false, failure: FailureUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tokenURL string
			if tt.refused {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				tokenURL = "http://" + l.Addr().String() + "/token"
				l.Close()
			} else {
				srv := httptest.NewServer(tt.handler)
				defer srv.Close()
				tokenURL = srv.URL + "/token"
			}
			ctx, cancel := context.WithCancel(t.Context())
			if tt.ctx != nil {
				ctx, cancel = tt.ctx(ctx)
			}
			defer cancel()
			hc := tt.http
			if hc == nil {
				hc = NewHTTPClient()
			}
			c := &Client{HTTP: hc, Now: func() time.Time { return t0 }}
			_, err := c.Refresh(ctx, testProvider(t, tokenURL, ClientAuthBasic, TokenRequestForm), creds, "rt")
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if pe.Transport != tt.want || pe.Unanswered != tt.unanswered || pe.Failure != tt.failure {
				t.Errorf("transport %d unanswered %v failure %s, want %d %v %s (%v)", pe.Transport, pe.Unanswered, pe.Failure, tt.want, tt.unanswered, tt.failure, err)
			}
		})
	}
}
