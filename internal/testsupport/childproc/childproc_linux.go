//go:build linux

package childproc

import "syscall"

// sysProcAttr has the kernel kill the server if the test process dies
// first (a timed-out or killed test), so no server outlives its tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
