package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"sync"

	"github.com/oauthbroker/oauthbroker/shared/client"
)

// demoApp is the backend of the demo app: what a SaaS app keeps to
// confirm a connection (S24). Its users are browser sessions; the user
// whose page minted a connect link owns its connection id, and only that
// user's return is confirmed — with the Go client, through the broker's
// confirm route, as an app's backend does in AWS (there with SigV4).
type demoApp struct {
	client *client.Client
	path   string // where owners is kept, so that it survives a restart

	mu     sync.Mutex
	owners map[string]string // connection id → the session that owns it
}

// sessionCookie names the demo app's own session cookie: the app's
// sign-in, which the broker knows nothing about.
const sessionCookie = "demo_session"

// newDemoApp returns the demo app's backend, keeping its users'
// connections in the file at path.
func newDemoApp(baseURL, devKey, path string) (*demoApp, error) {
	c, err := client.New(context.Background(), baseURL, client.WithDevKey(devKey))
	if err != nil {
		return nil, err
	}
	a := &demoApp{client: c, path: path, owners: map[string]string{}}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &a.owners); err != nil {
			return nil, fmt.Errorf("%s: %w (delete it to start afresh)", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return a, nil
}

// session returns the browser's session, starting one (a cookie) if it
// has none.
func (a *demoApp) session(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(sessionCookie); err == nil && len(c.Value) == 26 {
		return c.Value
	}
	id := rand.Text()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return id
}

// own records that session owns connectionID: its page minted the link.
func (a *demoApp) own(session, connectionID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.owners[connectionID] = session
	b, err := json.Marshal(a.owners)
	if err != nil {
		return err
	}
	return os.WriteFile(a.path, b, 0o600)
}

// owns reports whether the browser's session owns connectionID.
func (a *demoApp) owns(r *http.Request, connectionID string) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.owners[connectionID] == c.Value
}
