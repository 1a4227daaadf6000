package logcheck

import (
	"os"
	"os/exec"
)

// HelperCommand returns the command that runs this test binary again with
// only the test named test and env added to its environment: how a test
// checks what Main makes of a whole run (that a planted leak fails it, and
// what the report names), which the run itself cannot show.
func HelperCommand(test string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), env...), quickRaceExit())
	return cmd
}

// quickRaceExit is the GORACE setting that spares a passing -race binary
// its one-second sleep at exit.
func quickRaceExit() string { return "GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0" }
