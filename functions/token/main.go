// Command token is the Lambda behind the app's IAM-authorized routes:
// GET /connections/{provider}/{connection_id}/token hands out a usable
// access token (renewing it first when needed), and DELETE
// /connections/{provider}/{connection_id} deletes a connection.
package main

import (
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/setup"
)

func main() { setup.Start(httpapi.Tokens) }
