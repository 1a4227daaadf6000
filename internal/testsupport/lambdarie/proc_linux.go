//go:build linux

package lambdarie

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts the emulator in its own process group and has the kernel
// kill it if the test process dies first (the runtime then loses its Runtime
// API connection and exits too).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// proc identifies a process by pid and start time, so that a recycled pid is
// never mistaken for it.
type proc struct {
	pid, pgid int
	start     string
}

// stat reads state, ppid, pgid and start time from /proc/<pid>/stat.
func stat(pid int) (state string, ppid, pgid int, start string, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, 0, "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces and parentheses
	if i < 0 {
		return "", 0, 0, "", false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", 0, 0, "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	pgid, _ = strconv.Atoi(f[2])
	return f[0], ppid, pgid, f[19], true
}

// descendants lists the processes below pid (the function's runtime and
// anything it started).
func descendants(pid int) []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]proc{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		_, ppid, pgid, start, ok := stat(p)
		if ok {
			children[ppid] = append(children[ppid], proc{pid: p, pgid: pgid, start: start})
		}
	}
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// alive reports whether the process still runs (a zombie does not count).
func (p proc) alive() bool {
	state, _, _, start, ok := stat(p.pid)
	return ok && start == p.start && state != "Z" && state != "X"
}

// kill SIGKILLs the process and, if it leads one, its process group.
func (p proc) kill() {
	if !p.alive() {
		return
	}
	if p.pgid == p.pid {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
}

// isExe reports whether the process runs the executable at path.
func (p proc) isExe(path string) bool {
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(p.pid), "exe"))
	if err != nil {
		return false
	}
	if exe == path {
		return true
	}
	resolved, err := filepath.EvalSymlinks(path)
	return err == nil && exe == resolved
}
