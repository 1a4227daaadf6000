//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package logcheck

const teeEnv = "LOGCHECK_TEE"

// capture is a no-op where descriptors cannot be redirected: only fed
// output is checked.
type capture struct{}

func startCapture() (*capture, error) { return &capture{}, nil }

func (*capture) stop() []fed { return nil }

func (*capture) announce(string) {}

func runTee(string) int { return 2 }
