package provider

import "testing"

// TestResolveGetResponse360 checks that per-connection values reach only
// the places the catalog templates, and that no value can point the
// token request at a host of its choosing.
func TestResolveGetResponse360(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Get("getresponse360")
	r, err := p.Resolve(map[string]string{"domain": "mail.acme.com"})
	if err != nil {
		t.Fatal(err)
	}
	if r.AuthorizationURL != "https://mail.acme.com/oauth2_authorize.html" || r.TokenURL != "https://api3.getresponse360.com/v3/token" ||
		r.TokenHeaders["X-Domain"] != "mail.acme.com" || r.Params["region"] != "com" || r.Provider != p {
		t.Fatalf("resolved %+v", r)
	}
	if p.AuthorizationURL != "https://{domain}/oauth2_authorize.html" {
		t.Fatal("Resolve changed the catalog entry")
	}
	r, err = p.Resolve(map[string]string{"domain": "mail.acme.pl", "region": "pl"})
	if err != nil || r.TokenURL != "https://api3.getresponse360.pl/v3/token" {
		t.Fatalf("pl: %v %v", r, err)
	}
	for _, bad := range []map[string]string{
		nil, // domain is required
		{"domain": "evil.example/x"},
		{"domain": "evil.example:8443"},
		{"domain": "user@evil.example"},
		{"domain": "evil.example#"},
		{"domain": "evil.example?x="},
		{"domain": "127.0.0.1"},
		{"domain": "localhost"},
		{"domain": "%2e%2e"},
		{"domain": "EVIL.example"},
		{"domain": "a.example", "region": "org"},
		{"domain": "a.example", "region": "com.evil.example"},
		{"domain": "a.example", "host": "evil.example"},
		{"domain": "a.example\r\nX-Injected: 1"},
	} {
		if r, err := p.Resolve(bad); err == nil {
			t.Errorf("Resolve(%q) = %s %s, want an error", bad, r.AuthorizationURL, r.TokenURL)
		}
	}
	// An entry without parameters takes none.
	o, _ := c.Get("omnisend")
	if _, err := o.Resolve(map[string]string{"domain": "a.example"}); err == nil {
		t.Error("omnisend accepted a connection parameter")
	}
}
