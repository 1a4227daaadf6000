// Command authorize is the Lambda behind GET /connect/{provider}: it
// checks the app's signed connect link and sends the browser to the
// provider's authorization page.
package main

import (
	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/setup"
)

func main() { setup.Start(httpapi.Authorize) }
