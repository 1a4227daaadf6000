// Command hello is a tiny Lambda function used by the lambdarie tests: it
// echoes the event back together with the value of HELLO_GREETING and a few
// facts about its environment. Fields of the event steer it:
//
//	{"fail": "msg"}       returns an error with that message
//	{"sleep_ms": 1500}    sleeps before answering (honours the deadline)
//	{"stall_ms": 1500}    sleeps before answering, ignoring the deadline
//	{"pad": 300000}       adds that many bytes to the answer
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type steer struct {
	Fail    string `json:"fail"`
	SleepMS int    `json:"sleep_ms"`
	StallMS int    `json:"stall_ms"`
	Pad     int    `json:"pad"`
}

type reply struct {
	Event        json.RawMessage `json:"event"`
	Greeting     string          `json:"greeting"`
	FunctionName string          `json:"function_name"`
	Region       string          `json:"region"`
	Profile      string          `json:"profile,omitempty"`
	HasDeadline  bool            `json:"has_deadline"`
	Pad          string          `json:"pad,omitempty"`
}

func handle(ctx context.Context, event json.RawMessage) (reply, error) {
	var s steer
	_ = json.Unmarshal(event, &s)
	if s.Fail != "" {
		return reply{}, errors.New(s.Fail)
	}
	if s.SleepMS > 0 {
		select {
		case <-time.After(time.Duration(s.SleepMS) * time.Millisecond):
		case <-ctx.Done():
			return reply{}, ctx.Err()
		}
	}
	time.Sleep(time.Duration(s.StallMS) * time.Millisecond)
	_, hasDeadline := ctx.Deadline()
	return reply{
		Event:        event,
		Greeting:     os.Getenv("HELLO_GREETING"),
		FunctionName: lambdacontext.FunctionName,
		Region:       os.Getenv("AWS_REGION"),
		Profile:      os.Getenv("AWS_PROFILE"),
		HasDeadline:  hasDeadline,
		Pad:          strings.Repeat("x", s.Pad),
	}, nil
}

func main() {
	lambda.Start(handle)
}
