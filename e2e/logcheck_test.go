package e2e

import "github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"

// registerS22 hands values to logcheck, which searches every log of this
// test binary for them (S22); stack.remember calls it.
func registerS22(values ...string) { logcheck.Register(values...) }
