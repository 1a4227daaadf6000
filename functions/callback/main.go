// Command callback is the Lambda behind GET /callback/{provider}: it
// verifies the state, redeems the code, stores the connection and sends
// the browser back to the app.
package main

import (
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/setup"
)

func main() { setup.Start(httpapi.Callback) }
