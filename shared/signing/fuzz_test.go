package signing

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzVerifyState: no input panics, and nothing but a state this keyset
// signed for this provider, unexpired, is accepted.
func FuzzVerifyState(f *testing.F) {
	ks := keyset(f, "k1")
	// A fixed nonce: fuzz workers rebuild this setup, so it must not be random.
	st := mintState(ks, "acme", "2brSXjAaSKnfxMRGYjCn4oLxFm0V-WDEhsTb3BVNZQA", t0.Add(10*time.Minute))
	for _, s := range []string{st.Value, "", "....", "k1.x.1.y", "k9." + st.Value[3:], st.Value + "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		id, err := VerifyState(ks, "acme", value, t0)
		if err == nil && (value != st.Value || id != st.ID) {
			t.Fatalf("accepted a state it did not mint: %q", value)
		}
	})
}

// FuzzVerifyLink: no query panics the verifier, only the signed query
// verifies, and an accepted link's exp is spelled canonically (it
// re-formats to the same string), so one signed link has one spelling.
func FuzzVerifyLink(f *testing.F) {
	ks := keyset(f, "k1")
	// Fixed nonces: fuzz workers rebuild this setup, so it must not be random.
	good, _ := SignLink(ks, Link{Provider: "acme", ConnectionID: "c1", ReturnTo: "https://app.example.com/", Expires: t0.Add(time.Hour),
		Nonce: "AAECAwQFBgcICQoLDA0ODw"})
	withParams, _ := SignLink(ks, Link{Provider: "acme", ConnectionID: "c1", Grant: "client_credentials",
		Params: map[string]string{"domain": "mail.example.com", "region": "pl"}, Expires: t0.Add(time.Hour), Nonce: "EBESExQVFhcYGRobHB0eHw"})
	exp := "exp=" + strconv.FormatInt(t0.Add(time.Hour).Unix(), 10)
	for _, s := range []string{good, withParams, "", "exp=1&kid=k1&sig=x", "connection_id=c1&return_to=x&exp=99999999999&kid=k1&sig=AAAA",
		strings.Replace(good, exp, "exp=%2B"+exp[4:], 1), strings.Replace(good, exp, "exp=00"+exp[4:], 1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		l, err := VerifyLink(ks, "acme", q, t0)
		if err != nil {
			return
		}
		again, _ := SignLink(ks, l)
		want, _ := url.ParseQuery(again)
		if q.Get("sig") != want.Get("sig") || !l.Expires.After(t0) {
			t.Fatalf("accepted an unsigned or expired link: %q", raw)
		}
		if got := strconv.FormatInt(l.Expires.Unix(), 10); got != q.Get("exp") {
			t.Fatalf("accepted exp %q, which re-formats to %q", q.Get("exp"), got)
		}
	})
}
