package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// The token request is written by hand rather than with
// oauth2.Config.Exchange because two of the three encodings providers use
// (a JSON body, a GET with query parameters) are outside RFC 6749 and
// x/oauth2; one code path for all three keeps response checks (RFC 6749
// §5.1, RFC 9700 §2.x) and error hygiene identical for every provider.

func newTokenRequest(ctx context.Context, p *Provider, v url.Values) (*http.Request, error) {
	switch p.TokenRequest {
	case TokenRequestQuery:
		u, err := url.Parse(p.TokenURL)
		if err != nil {
			return nil, errors.New("token_url does not parse")
		}
		q := u.Query()
		for k, vals := range v {
			q[k] = vals
		}
		u.RawQuery = q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, errors.New("cannot build token request")
		}
		return req, nil
	case TokenRequestJSON:
		obj := make(map[string]string, len(v))
		for k := range v {
			obj[k] = v.Get(k)
		}
		b, _ := json.Marshal(obj)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.TokenURL, bytes.NewReader(b))
		if err != nil {
			return nil, errors.New("cannot build token request")
		}
		req.Header.Set("Content-Type", "application/json")
		return req, nil
	default:
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.TokenURL, strings.NewReader(v.Encode()))
		if err != nil {
			return nil, errors.New("cannot build token request")
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req, nil
	}
}
