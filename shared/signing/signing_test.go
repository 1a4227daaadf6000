package signing

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
)

var (
	t0   = time.Unix(1_800_000_000, 0)
	key1 = []byte(strings.Repeat("a", 32))
	key2 = []byte(strings.Repeat("b", 40))
)

func keyset(t testing.TB, current string) *Keyset {
	t.Helper()
	logcheck.Register(string(key1), string(key2))
	ks, err := ParseKeyset([]byte(`{"current_kid":"` + current + `","k1":"` + string(key1) + `","k2":"` + string(key2) + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestParseKeyset(t *testing.T) {
	tests := []struct {
		name, json, err string
	}{
		{"ok", `{"current_kid":"k1","k1":"` + string(key1) + `"}`, ""},
		{"not json", `nope`, "not a JSON object"},
		{"short key", `{"current_kid":"k1","k1":"short"}`, "shorter than 32"},
		{"bad kid", `{"current_kid":"k 1","k 1":"` + string(key1) + `"}`, "must match"},
		{"missing current", `{"k1":"` + string(key1) + `"}`, "current_kid"},
		{"current unknown", `{"current_kid":"k9","k1":"` + string(key1) + `"}`, "current_kid"},
		{"nested", `{"current_kid":"k1","k1":{"x":1}}`, "not a JSON object of strings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeyset([]byte(tt.json))
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("err = %v, want containing %q", err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), string(key1)) {
				t.Fatal("error message contains key material")
			}
		})
	}
}

// TestSignLinkDrawsANonce: every link SignLink mints carries its own
// 128-bit nonce, in the query and under the signature, unless the caller
// gave one.
func TestSignLinkDrawsANonce(t *testing.T) {
	ks := keyset(t, "k1")
	l := Link{Provider: "acme", ConnectionID: "cust-42", ReturnTo: "https://app.example.com/", Expires: t0.Add(time.Hour)}
	seen := map[string]bool{}
	for range 50 {
		raw, err := SignLink(ks, l)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := url.ParseQuery(raw)
		n := q.Get("nonce")
		if len(n) != 22 || seen[n] {
			t.Fatalf("nonce %q: want 22 base64url characters (16 bytes), new each time", n)
		}
		seen[n] = true
		got, err := VerifyLink(ks, "acme", q, t0)
		if err != nil || got.Nonce != n {
			t.Fatalf("VerifyLink: %+v, %v", got, err)
		}
	}
	l.Nonce = "given-nonce-0123456789_"
	raw, _ := SignLink(ks, l)
	if q, _ := url.ParseQuery(raw); q.Get("nonce") != l.Nonce {
		t.Fatalf("a given nonce was replaced: %s", raw)
	}
	l.Nonce = "short"
	if _, err := SignLink(ks, l); err == nil || !strings.Contains(err.Error(), "nonce") {
		t.Fatalf("a short nonce was signed: %v", err)
	}
}

// TestConnectURLDefaultsToAClickLink: without an expiry, ConnectURL mints
// a link for the click that asks for it, valid ClickLinkLifetime.
func TestConnectURLDefaultsToAClickLink(t *testing.T) {
	ks := keyset(t, "k1")
	before := time.Now()
	raw, err := ConnectURL(ks, "https://connect.example.com/", Link{Provider: "acme", ConnectionID: "c1", ReturnTo: "https://app.example.com/"})
	if err != nil || !strings.HasPrefix(raw, "https://connect.example.com/connect/acme?") {
		t.Fatalf("ConnectURL = %q, %v", raw, err)
	}
	u, _ := url.Parse(raw)
	exp, _ := strconv.ParseInt(u.Query().Get("exp"), 10, 64)
	if life := time.Unix(exp, 0).Sub(before); life < ClickLinkLifetime-time.Second || life > ClickLinkLifetime+time.Second {
		t.Errorf("the link lives %v, want %v", life, ClickLinkLifetime)
	}
	if _, err := VerifyLink(ks, "acme", u.Query(), time.Now()); err != nil {
		t.Errorf("VerifyLink: %v", err)
	}
}

func TestLinkRoundTripAndRotation(t *testing.T) {
	l := Link{Provider: "acme", ConnectionID: "cust-42", ReturnTo: "https://app.example.com/done?x=1", Scopes: []string{"read", "write"}, Expires: t0.Add(time.Hour)}
	raw, err := SignLink(keyset(t, "k1"), l)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := url.ParseQuery(raw)
	// The previous key still verifies after the current key changes.
	got, err := VerifyLink(keyset(t, "k2"), "acme", q, t0)
	if err != nil {
		t.Fatalf("VerifyLink: %v", err)
	}
	if got.ConnectionID != l.ConnectionID || got.ReturnTo != l.ReturnTo || strings.Join(got.Scopes, " ") != "read write" {
		t.Fatalf("got %+v", got)
	}
	// Once k1 is removed, its links stop verifying.
	only2, _ := ParseKeyset([]byte(`{"current_kid":"k2","k2":"` + string(key2) + `"}`))
	if _, err := VerifyLink(only2, "acme", q, t0); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("removed key: err = %v", err)
	}
}

// TestLinkCanonical pins the documented canonical string so that other
// languages can sign links: a change here breaks every app's signer.
func TestLinkCanonical(t *testing.T) {
	l := Link{Provider: "getresponse360", ConnectionID: "cust-42", ReturnTo: "https://app.example.com/done", Scopes: []string{"read", "write"},
		Grant: "authorization_code", Params: map[string]string{"region": "pl", "domain": "mail.acme.com"}, Expires: time.Unix(1800003600, 0),
		Nonce: "AAECAwQFBgcICQoLDA0ODw"}
	want := "oauthbroker-connect-v3\nk1\ngetresponse360\ncust-42\nhttps://app.example.com/done\nread write\nauthorization_code\ndomain=mail.acme.com&region=pl\n1800003600\nAAECAwQFBgcICQoLDA0ODw"
	if got := l.Canonical("k1"); got != want {
		t.Fatalf("canonical = %q, want %q", got, want)
	}
	// HMAC-SHA256(key="aaaa…" (32 × "a"), canonical), base64url without
	// padding; cross-checked with Python: hmac.new(b"a"*32, m, sha256).
	if got := mac(key1, want); got != "42YEWQJLTdt0_HUsWWSWU7IykbsLLJSOAXI6knhiVFY" {
		t.Fatalf("signature = %s", got)
	}
}

func TestVerifyLinkRejects(t *testing.T) {
	ks := keyset(t, "k1")
	l := Link{Provider: "acme", ConnectionID: "cust-42", ReturnTo: "https://app.example.com/", Expires: t0.Add(time.Hour)}
	raw, _ := SignLink(ks, l)
	good, _ := url.ParseQuery(raw)
	mod := func(f func(q url.Values)) url.Values {
		q := url.Values{}
		for k, v := range good {
			q[k] = append([]string(nil), v...)
		}
		f(q)
		return q
	}
	tests := []struct {
		name     string
		provider string
		q        url.Values
		now      time.Time
		want     error
	}{
		{"other provider", "other", good, t0, ErrBadSignature},
		{"changed connection", "acme", mod(func(q url.Values) { q.Set("connection_id", "cust-43") }), t0, ErrBadSignature},
		{"changed return_to", "acme", mod(func(q url.Values) { q.Set("return_to", "https://evil.example/") }), t0, ErrBadSignature},
		{"added scope", "acme", mod(func(q url.Values) { q.Set("scope", "admin") }), t0, ErrBadSignature},
		{"added grant", "acme", mod(func(q url.Values) { q.Set("grant", "client_credentials") }), t0, ErrBadSignature},
		{"added param", "acme", mod(func(q url.Values) { q.Set("param.domain", "evil.example") }), t0, ErrBadSignature},
		{"dropped return_to", "acme", mod(func(q url.Values) { q.Del("return_to") }), t0, ErrBadSignature},
		{"param with a slash", "acme", mod(func(q url.Values) { q.Set("param.domain", "evil.example/x") }), t0, ErrMalformed},
		{"param with a colon", "acme", mod(func(q url.Values) { q.Set("param.domain", "evil.example:8443") }), t0, ErrMalformed},
		{"param with an at", "acme", mod(func(q url.Values) { q.Set("param.domain", "u@evil.example") }), t0, ErrMalformed},
		{"upper-case param name", "acme", mod(func(q url.Values) { q.Set("param.Domain", "a.example") }), t0, ErrMalformed},
		{"extended expiry", "acme", mod(func(q url.Values) { q.Set("exp", "1900000000") }), t0, ErrBadSignature},
		{"unsigned", "acme", mod(func(q url.Values) { q.Del("sig") }), t0, ErrMalformed},
		{"unknown kid", "acme", mod(func(q url.Values) { q.Set("kid", "k9") }), t0, ErrUnknownKey},
		{"garbage sig", "acme", mod(func(q url.Values) { q.Set("sig", "!!") }), t0, ErrMalformed},
		{"expired", "acme", good, t0.Add(time.Hour), ErrExpired},
		{"newline in id", "acme", mod(func(q url.Values) { q.Set("connection_id", "a\nb") }), t0, ErrMalformed},
		{"changed nonce", "acme", mod(func(q url.Values) { q.Set("nonce", strings.Repeat("A", 22)) }), t0, ErrBadSignature},
		{"no nonce", "acme", mod(func(q url.Values) { q.Del("nonce") }), t0, ErrMalformed},
		{"short nonce", "acme", mod(func(q url.Values) { q.Set("nonce", strings.Repeat("A", 21)) }), t0, ErrMalformed},
		{"nonce not base64url", "acme", mod(func(q url.Values) { q.Set("nonce", strings.Repeat("A", 21)+"=") }), t0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := VerifyLink(ks, tt.provider, tt.q, tt.now); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	far := l
	far.Expires = t0.Add(MaxLinkLifetime + time.Hour)
	raw, _ = SignLink(ks, far)
	q, _ := url.ParseQuery(raw)
	if _, err := VerifyLink(ks, "acme", q, t0); !errors.Is(err, ErrTooFarAhead) {
		t.Fatalf("link beyond MaxLinkLifetime: err = %v", err)
	}
}

// TestVerifyLinkCanonicalExp: exp has one spelling, the decimal that
// strconv.FormatInt writes (as a state's expiry). The signature covers
// the parsed value, so without this check "+1800003600" and
// "01800003600" verified under the signature of "1800003600".
func TestVerifyLinkCanonicalExp(t *testing.T) {
	ks := keyset(t, "k1")
	raw, _ := SignLink(ks, Link{Provider: "acme", ConnectionID: "cust-42", ReturnTo: "https://app.example.com/", Expires: t0.Add(time.Hour)})
	good, _ := url.ParseQuery(raw)
	exp := good.Get("exp")
	tests := []struct {
		name, exp string
		want      error
	}{
		{"canonical", exp, nil},
		{"plus sign", "+" + exp, ErrMalformed},
		{"leading zero", "0" + exp, ErrMalformed},
		{"leading zeros", "000" + exp, ErrMalformed},
		{"leading space", " " + exp, ErrMalformed},
		{"trailing newline", exp + "\n", ErrMalformed},
		{"underscores", exp[:4] + "_" + exp[4:], ErrMalformed},
		{"hex", "0x" + strconv.FormatInt(t0.Add(time.Hour).Unix(), 16), ErrMalformed},
		{"minus zero", "-0", ErrMalformed},
		{"empty", "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range good {
				q[k] = append([]string(nil), v...)
			}
			q.Set("exp", tt.exp)
			_, err := VerifyLink(ks, "acme", q, t0)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("exp %q: err = %v, want %v", tt.exp, err, tt.want)
			}
		})
	}
}

func TestState(t *testing.T) {
	ks := keyset(t, "k1")
	st, err := NewState(ks, "acme", t0, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := NewState(ks, "acme", t0, 10*time.Minute)
	logcheck.Register(st.Value, st2.Value)
	if st.Value == st2.Value || st.ID == st2.ID {
		t.Fatal("two states are equal")
	}
	if i := strings.IndexAny(st.Value, "+/=&# "); i >= 0 {
		t.Fatalf("state is not URL-safe: %q at %d", st.Value[i], i)
	}
	id, err := VerifyState(ks, "acme", st.Value, t0.Add(9*time.Minute))
	if err != nil || id != st.ID {
		t.Fatalf("VerifyState = %q, %v; want %q", id, err, st.ID)
	}
	flip := []byte(st.Value)
	flip[len(flip)/2] ^= 1
	// Other spellings of the same signature bytes (found by fuzzing): the
	// base64 decoder skips CR/LF and the spare low bits of the last
	// character; only the canonical spelling may verify.
	sigAt := strings.LastIndexByte(st.Value, '.') + 1
	withLF := st.Value[:sigAt+3] + "\n" + st.Value[sigAt+3:]
	last := st.Value[len(st.Value)-1]
	sibling := st.Value[:len(st.Value)-1] + string(spareBitSibling(last))
	tests := []struct {
		name, provider, value string
		now                   time.Time
		want                  error
	}{
		{"expired", "acme", st.Value, t0.Add(10 * time.Minute), ErrExpired},
		{"other provider (S9)", "other", st.Value, t0, ErrBadSignature},
		{"flipped byte (S5)", "acme", string(flip), t0, nil},
		{"empty", "acme", "", t0, ErrMalformed},
		{"extended expiry", "acme", strings.Replace(st.Value, ".1800000600.", ".1900000600.", 1), t0, ErrBadSignature},
		{"non-canonical exp", "acme", strings.Replace(st.Value, ".1800000600.", ".01800000600.", 1), t0, ErrMalformed},
		{"newline in signature", "acme", withLF, t0, nil},
		{"other spare bits in signature", "acme", sibling, t0, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyState(ks, tt.provider, tt.value, tt.now)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLinkGrantAndParamsRoundTrip(t *testing.T) {
	ks := keyset(t, "k1")
	l := Link{Provider: "getresponse360", ConnectionID: "cust-7", Grant: "client_credentials",
		Params: map[string]string{"domain": "mail.acme.com", "region": "pl"}, Expires: t0.Add(time.Hour)}
	raw, err := SignLink(ks, l)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := url.ParseQuery(raw)
	if q.Has("return_to") || q.Get("param.domain") != "mail.acme.com" || q.Get("grant") != "client_credentials" {
		t.Fatalf("link query %s", raw)
	}
	got, err := VerifyLink(ks, "getresponse360", q, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got.ReturnTo != "" || got.Grant != l.Grant || len(got.Params) != 2 || got.Params["region"] != "pl" {
		t.Fatalf("got %+v", got)
	}
	tooMany := l
	tooMany.Params = map[string]string{}
	for i := range MaxParams + 1 {
		tooMany.Params[fmt.Sprintf("p%d", i)] = "x"
	}
	if _, err := SignLink(ks, tooMany); err == nil {
		t.Fatal("signed a link with too many parameters")
	}
	for _, id := range []string{".", ".."} { // dot segments in the token route's path
		dot := l
		dot.ConnectionID = id
		if _, err := SignLink(ks, dot); err == nil {
			t.Errorf("signed a link for connection_id %q", id)
		}
	}
}

// spareBitSibling returns another base64url character that decodes to the
// same bits as c in the last position of a 32-byte value (43 characters:
// the last one carries 4 data bits and 2 spare ones).
func spareBitSibling(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i^1]
}

// TestFieldsMatchTheirPatterns: the hand-written field checks accept
// exactly what the patterns they quote accept.
func TestFieldsMatchTheirPatterns(t *testing.T) {
	inputs := []string{"", "a", "A", "0", "_", "-", ".", ":", "@", "a-b", "a_b", "a.b", "a:b@c", "-a", "_a", "0a", "Zz09._-",
		"a b", "a/b", "ä", "a\n", strings.Repeat("a", 32), strings.Repeat("a", 33), strings.Repeat("a", 63), strings.Repeat("a", 64),
		strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("a", 253), strings.Repeat("a", 254)}
	for _, f := range []field{connectionIDField, providerField, grantField, paramNameField, paramValueField, kidField} {
		re := regexp.MustCompile(f.String())
		for _, in := range inputs {
			if got, want := f.match(in), re.MatchString(in); got != want {
				t.Errorf("%s: match(%q) = %v, the pattern says %v", f, in, got, want)
			}
		}
	}
}

// The provider-name rule, which the catalog and the connect link share.
func TestValidProviderName(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want bool
	}{
		{"letter", "a", true},
		{"digit first", "0a", true},
		{"dash and underscore", "acme-crm_eu", true},
		{"longest", strings.Repeat("a", MaxProviderName), true},
		{"too long", strings.Repeat("a", MaxProviderName+1), false},
		{"empty", "", false},
		{"dash first", "-a", false},
		{"underscore first", "_a", false},
		{"upper case", "Acme", false},
		{"dot", "a.b", false},
		{"store key separator", "a#b", false},
		{"path separator", "a/b", false},
		{"non-ASCII", "é", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidProviderName(tt.in); got != tt.want {
				t.Errorf("ValidProviderName(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if _, err := SignLink(keyset(t, "k1"), Link{Provider: tt.in, ConnectionID: "c1", Expires: t0.Add(time.Minute)}); (err == nil) != tt.want {
				t.Errorf("SignLink with provider %q: err %v, want valid=%v", tt.in, err, tt.want)
			}
		})
	}
	if !regexp.MustCompile(ProviderNamePattern).MatchString(strings.Repeat("a", MaxProviderName)) ||
		regexp.MustCompile(ProviderNamePattern).MatchString(strings.Repeat("a", MaxProviderName+1)) {
		t.Errorf("ProviderNamePattern %s does not bound names to MaxProviderName (%d)", ProviderNamePattern, MaxProviderName)
	}
}
