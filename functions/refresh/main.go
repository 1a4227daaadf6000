// Command refresh is the Lambda the schedule invokes: it renews the tokens
// that are about to expire.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/oauthbroker/oauthbroker/shared/schedule"
	"github.com/oauthbroker/oauthbroker/shared/setup"
)

func main() {
	b := setup.Must(setup.FromEnv(context.Background()))
	lambda.Start(schedule.Handler(b))
}
