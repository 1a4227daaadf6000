// Command refresh is the Lambda the schedule invokes: it renews the tokens
// that are about to expire.
package main

import (
	"github.com/oauthbroker/oauthbroker/shared/schedule"
	"github.com/oauthbroker/oauthbroker/shared/setup"
)

func main() { setup.Start(schedule.Handler) }
