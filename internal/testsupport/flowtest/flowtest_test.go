package flowtest_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/flowtest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/testsecrets"
	"github.com/oauthbroker/oauthbroker/shared/signing"
)

const signingKey = "flowtest-signing-key-0123456789abcdef0123"

// A raw link of a link the signing library accepts verifies as the library's
// own does: RawLink is the documented algorithm, not an approximation.
func TestRawLinkVerifies(t *testing.T) {
	keys := testsecrets.Set{SigningKey: signingKey}.Keyset(t)
	b := &flowtest.Browser{T: t, Keys: keys, SigningKey: signingKey}
	now := time.Now()
	exp := now.Add(10 * time.Minute).Truncate(time.Second)
	tests := []struct {
		name string
		link signing.Link
	}{
		{"connection only", signing.Link{Provider: "acme", ConnectionID: "c1", Expires: exp}},
		{"return address and scopes", signing.Link{Provider: "acme", ConnectionID: "c2", ReturnTo: "https://app.example/back", Scopes: []string{"read", "write"}, Expires: exp}},
		{"grant and parameters", signing.Link{Provider: "gr", ConnectionID: "c3", Grant: "client_credentials", Params: map[string]string{"domain": "mail.example.com", "region": "pl"}, Expires: exp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.Within(t)
			q, err := url.ParseQuery(b.RawLink(tt.link))
			if err != nil {
				t.Fatal(err)
			}
			got, err := signing.VerifyLink(keys, tt.link.Provider, q, now)
			if err != nil {
				t.Fatalf("raw link refused: %v", err)
			}
			if got.ConnectionID != tt.link.ConnectionID || got.ReturnTo != tt.link.ReturnTo || !got.Expires.Equal(exp) {
				t.Fatalf("verified %+v, want %+v", got, tt.link)
			}
		})
	}
}

// FlipSegment breaks one part of a state and nothing else: the state keeps
// its four parts, the others unchanged, and no longer verifies.
func TestFlipSegment(t *testing.T) {
	keys := testsecrets.Set{SigningKey: signingKey}.Keyset(t)
	now := time.Now()
	st, err := signing.NewState(keys, "acme", now, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(st.Value, ".")
	for i := range parts {
		flipped := flowtest.FlipSegment(st.Value, i)
		got := strings.Split(flipped, ".")
		if len(got) != len(parts) || got[i] == parts[i] || len(got[i]) != len(parts[i]) {
			t.Fatalf("part %d: %q from %q", i, flipped, st.Value)
		}
		for j := range parts {
			if j != i && got[j] != parts[j] {
				t.Errorf("part %d flipped part %d too", i, j)
			}
		}
		if _, err := signing.VerifyState(keys, "acme", flipped, now); err == nil {
			t.Errorf("part %d flipped: the state still verifies", i)
		}
	}
	if got := flowtest.FlipSegment(st.Value, len(parts)); got != st.Value {
		t.Errorf("a part past the end changed the state: %q", got)
	}
}
