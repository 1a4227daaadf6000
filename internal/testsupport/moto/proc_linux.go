//go:build linux

package moto

import "syscall"

// sysProcAttr has the kernel kill moto_server if the test process dies
// first (a timed-out or killed test), so no server outlives its tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
