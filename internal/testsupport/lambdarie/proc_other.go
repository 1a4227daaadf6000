//go:build unix && !linux

package lambdarie

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

type proc struct{ pid int }

// descendants is only implemented on Linux (/proc); elsewhere Stop relies on
// the emulator killing its runtime on SIGTERM.
func descendants(int) []proc { return nil }

func (p proc) alive() bool { return false }
func (p proc) kill()       {}

func (p proc) isExe(string) bool { return false }
