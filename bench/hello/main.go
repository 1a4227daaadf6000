// Command hello is the baseline of the Lambda benchmarks (bench/lambda_test.go):
// the smallest aws-lambda-go function that answers an HTTP API event, so
// that the functions' cold start, size and memory can be read against what
// aws-lambda-go and the Go runtime cost on their own.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	return events.APIGatewayV2HTTPResponse{
		StatusCode: 200,
		Headers:    map[string]string{"Content-Type": "text/plain; charset=utf-8"},
		Body:       "hello\n",
	}, nil
}

func main() {
	lambda.Start(handle)
}
