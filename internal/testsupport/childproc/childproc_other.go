//go:build !linux

package childproc

import "syscall"

// sysProcAttr is empty off Linux: a killed test process may leave its
// servers running there.
func sysProcAttr() *syscall.SysProcAttr { return nil }
