package signing

import (
	"net/url"
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

// FuzzVerifyLink: no query panics the verifier, and only the signed query
// verifies.
func FuzzVerifyLink(f *testing.F) {
	ks := keyset(f, "k1")
	good, _ := SignLink(ks, Link{Provider: "acme", ConnectionID: "c1", ReturnTo: "https://app.example.com/", Expires: t0.Add(time.Hour)})
	withParams, _ := SignLink(ks, Link{Provider: "acme", ConnectionID: "c1", Grant: "client_credentials",
		Params: map[string]string{"domain": "mail.example.com", "region": "pl"}, Expires: t0.Add(time.Hour)})
	for _, s := range []string{good, withParams, "", "exp=1&kid=k1&sig=x", "connection_id=c1&return_to=x&exp=99999999999&kid=k1&sig=AAAA"} {
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
	})
}
