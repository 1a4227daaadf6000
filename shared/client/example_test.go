package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"time"

	"github.com/oauthbroker/oauthbroker/shared/client"
)

// Fetch a customer's token with the default AWS credentials and region.
func Example_token() {
	ctx := context.Background()
	c, err := client.New(ctx, "https://abc123.execute-api.eu-west-1.amazonaws.com")
	if err != nil {
		log.Fatal(err)
	}
	tok, err := c.Token(ctx, "getresponse", "cust-42")
	var apiErr *client.Error
	switch {
	case errors.Is(err, client.ErrReauthRequired):
		fmt.Println("ask the customer to connect GetResponse again")
		return
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("the customer has not connected GetResponse")
		return
	case errors.As(err, &apiErr) && apiErr.RetryAfter > 0:
		fmt.Println("provider busy; try again in", apiErr.RetryAfter)
		return
	case err != nil:
		log.Fatal(err)
	}
	slog.Info("got a token", "token", tok) // the access token is redacted
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://api.getresponse.com/v3/accounts", nil)
	req.Header.Set("Authorization", tok.TokenType+" "+tok.AccessToken)
	// … send req
}

// Call a provider's API with a client that adds the token, keeps it until
// shortly before it expires, and refreshes it once when the API answers 401.
func Example_transport() {
	ctx := context.Background()
	c, err := client.New(ctx, "https://connect.example.com")
	if err != nil {
		log.Fatal(err)
	}
	getresponse := &http.Client{
		Transport: c.Transport("getresponse", "cust-42", nil),
		Timeout:   30 * time.Second,
	}
	resp, err := getresponse.Get("https://api.getresponse.com/v3/accounts")
	if errors.Is(err, client.ErrReauthRequired) {
		fmt.Println("ask the customer to connect GetResponse again")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, len(body))
}

// Disconnect a customer.
func ExampleClient_Delete() {
	ctx := context.Background()
	c, err := client.New(ctx, "https://connect.example.com")
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Delete(ctx, "getresponse", "cust-42"); err != nil && !errors.Is(err, client.ErrNotFound) {
		log.Fatal(err)
	}
}

// Sign with explicit settings, for instance in a tool that assumes a role.
func ExampleNew_options() {
	ctx := context.Background()
	c, err := client.New(ctx, "https://connect.example.com",
		client.WithRegion("eu-central-1"),
		client.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}),
	)
	if err != nil {
		log.Fatal(err)
	}
	_ = c
}
