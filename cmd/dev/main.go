// Command dev runs the whole of oauthbroker on localhost, with no AWS
// account and no real provider: what `make dev` starts.
//
// One HTTP server plays every part. The broker's routes
// (GET /connect/{provider}, GET /callback/{provider}, and the app's
// GET /connections/{provider}/{connection_id}/token and DELETE
// /connections/{provider}/{connection_id}, which take a dev-only key in
// place of AWS IAM) run the very API Gateway handlers the Lambda
// functions run; lifecycle events are logged; a development-only OAuth
// provider, the "sandbox" (the strict OAuth server of package
// oauthserver, with its consent page), answers under /sandbox/; a tiny
// demo app at / signs connect links and shows connections when the
// browser comes back (with a Reconnect button for one that needs
// re-authorization);
// and a ticker calls Sweep in place of the EventBridge schedule.
// Connections go to an embedded store, secrets to a local file and the
// sandbox's grants to another, all under the data directory (default
// .dev, created 0700), so connections survive a restart. The server
// answers only requests addressed to localhost, 127.0.0.1 or [::1] on its
// port (a 421 otherwise), so a DNS-rebinding page cannot read it.
//
// Usage:
//
//	go run ./cmd/dev [-addr 127.0.0.1:8787] [-data .dev] [-refresh-every 20s]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/setup"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8787", "listen address")
	data := flag.String("data", ".dev", "data directory (secrets, provider catalog, store)")
	every := flag.Duration("refresh-every", 20*time.Second, "period of the token refresh schedule")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s, err := newServer(options{Addr: *addr, DataDir: *data, RefreshEvery: *every, Log: setup.Logger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
	if err := s.printBanner(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
	fmt.Println("dev: stopped")
}
