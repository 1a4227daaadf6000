//go:build !linux

package moto

import "syscall"

// sysProcAttr is empty off Linux: a killed test process may leave its
// moto_server running there.
func sysProcAttr() *syscall.SysProcAttr { return nil }
