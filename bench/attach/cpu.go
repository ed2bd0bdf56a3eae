package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// cpuTime returns the CPU time (user and system) that process pid and its
// children still running (an agent's plugins) have used so far.
func cpuTime(pid int) time.Duration {
	var ticks int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ... utime stime: comm may hold spaces.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 {
			continue
		}
		p, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		ppid, _ := strconv.Atoi(f[1])
		if p == pid || ppid == pid {
			u, _ := strconv.Atoi(f[11])
			st, _ := strconv.Atoi(f[12])
			ticks += u + st
		}
	}
	return time.Duration(ticks) * clockTick
}
