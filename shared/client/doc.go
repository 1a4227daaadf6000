// Package client is the Go client an app's backend uses to fetch a
// customer's access token from oauthbroker's token route
// (GET /connections/{provider}/{connection_id}/token, IAM-authorized).
//
// Requests are signed with AWS Signature Version 4 for the execute-api
// service, with credentials from the default AWS credential chain (or
// WithCredentials). The token itself is never part of an error, and a
// Token logs and prints with its access token redacted.
//
//	c, err := client.New(ctx, "https://connect.example.com")
//	if err != nil { … }
//	tok, err := c.Token(ctx, "getresponse", "cust-42")
//	switch {
//	case errors.Is(err, client.ErrReauthRequired): // ask the customer to connect again
//	case errors.Is(err, client.ErrNotFound):       // never connected (or deleted)
//	case err != nil:                               // *client.Error: see RetryAfter
//	}
//
// Or let the client put the token on every request to the provider's API,
// refreshing it when it nears expiry or when the API answers 401:
//
//	api := &http.Client{Transport: c.Transport("getresponse", "cust-42", nil)}
//	resp, err := api.Get("https://api.getresponse.com/v3/accounts")
//
// Against make dev, pass WithDevKey with the key it prints instead of
// signing.
package client
