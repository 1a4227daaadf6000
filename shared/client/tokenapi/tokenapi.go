// Package tokenapi is the contract of oauthbroker's token routes, the one
// definition that both the handler answering them (shared/httpapi) and the
// Go client calling them (shared/client) use: the routes, the token
// answer, and the error answers — each error code with its HTTP status and
// whether it carries Retry-After (codes.go).
//
// It imports only the standard library, so that an app's backend that
// imports shared/client pulls in nothing more.
package tokenapi

// The routes, as API Gateway route keys. API Gateway admits requests to
// both only with IAM (SigV4) authorization.
const (
	// RouteToken answers a usable access token of the connection (Token),
	// renewing it first when it is expired, about to expire or forced.
	RouteToken = "GET /connections/{provider}/{connection_id}/token"
	// RouteDelete deletes the connection; it answers 204 with no body.
	RouteDelete = "DELETE /connections/{provider}/{connection_id}"
	// RouteConfirm makes a pending grant the connection's (its body is a
	// Confirm); it answers 200 with the connection's Status.
	RouteConfirm = "POST /connections/{provider}/{connection_id}/confirm"
)

// ParamConfirmation is the return URL's query parameter that carries a
// pending grant's one-time confirmation code (with status=pending and
// connection_id), and Confirm's field for it.
const ParamConfirmation = "confirmation"

// Confirm is the body of RouteConfirm.
type Confirm struct {
	// Confirmation is the code the browser brought back in the return URL.
	Confirmation string `json:"confirmation"`
}

// Status is the 200 answer of RouteConfirm: the connection as it now
// stands, never a token.
type Status struct {
	Provider     string `json:"provider"`
	ConnectionID string `json:"connection_id"`
	// Status is "connected" after a confirmation.
	Status string `json:"status"`
	// ExpiresAt is RFC 3339 in UTC, omitted when the token does not expire.
	ExpiresAt string `json:"expires_at,omitempty"`
	Scope     string `json:"scope,omitempty"`
}

// ParamForceRefresh is RouteToken's only query parameter: "true" renews
// the token at the provider now (the app's call was refused with it),
// "false" is the default.
const ParamForceRefresh = "force_refresh"

// Token is the 200 answer of RouteToken: what the app needs to call the
// provider's API (RFC 6750). It never holds a refresh token.
type Token struct {
	AccessToken string `json:"access_token"`
	// TokenType is the authorization scheme, "Bearer".
	TokenType string `json:"token_type"`
	// ExpiresAt is RFC 3339 in UTC, whole seconds; omitted when the token
	// does not expire.
	ExpiresAt string `json:"expires_at,omitempty"`
	// Scope is the granted scope, space-separated; omitted if none was
	// recorded.
	Scope string `json:"scope,omitempty"`
	// Metadata holds the provider's extra token fields the catalog keeps;
	// omitted if none.
	Metadata map[string]string `json:"metadata,omitempty"`
}
