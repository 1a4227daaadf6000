// Command authorize is the Lambda behind GET /connect/{provider}: it
// checks the app's signed connect link and sends the browser to the
// provider's authorization page.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/oauthbroker/oauthbroker/shared/httpapi"
	"github.com/oauthbroker/oauthbroker/shared/setup"
)

func main() {
	b := setup.Must(setup.FromEnv(context.Background()))
	lambda.Start(httpapi.Authorize(b))
}
