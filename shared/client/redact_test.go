package client

import (
	"bytes"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// Printing or logging a Token never shows its access token. The same lines
// also go to the test's stderr, which logcheck searches for the token.
func TestTokenNeverPrinted(t *testing.T) {
	tok := &Token{
		AccessToken: secretToken("at-print"),
		TokenType:   "Bearer",
		ExpiresAt:   newClock().Now().Add(time.Hour),
		Scope:       "read write",
		Metadata:    map[string]string{"user_id": "42"},
	}
	var buf bytes.Buffer
	out := func(s string) {
		buf.WriteString(s + "\n")
		fmt.Fprintln(os.Stderr, s)
	}
	for _, verb := range []string{"%v", "%+v", "%s", "%#v"} {
		out(fmt.Sprintf(verb, tok))
		out(fmt.Sprintf(verb, *tok))
		out(fmt.Sprintf(verb, struct{ T *Token }{tok}))
		out(fmt.Sprintf(verb, []*Token{tok}))
	}
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(os.Stderr, nil)} {
		l := slog.New(h)
		l.Info("token", "token", tok)
		l.Info("token", "token", *tok)
		l.Info("token", slog.Any("token", tok))
	}
	log.New(&buf, "", 0).Printf("token %v", tok)

	text := buf.String()
	assertClean(t, "printed token", text, tok.AccessToken)
	for _, want := range []string{redacted, "Bearer", "read write", "user_id", "2026-11-24T21:00:00Z"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if want := `token.access_token=[redacted]`; !strings.Contains(text, want) {
		t.Errorf("slog text output lacks %q", want)
	}
}
