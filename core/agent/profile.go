package agent

import (
	"os"
	"runtime/pprof"
)

// EnvCPUProfile names a file the agent writes a CPU profile of its whole
// run to (go tool pprof reads it). It is a debugging aid for benchmarks,
// deliberately not a config option.
const EnvCPUProfile = "SANDNET_CPUPROFILE"

// EnvCrashAfter names a step ("flow:step", as docs/architecture.md lists
// them) after which the agent kills itself with SIGKILL: crash injection
// for tests (cmd/host TestCrashAfterEachStep), deliberately not a config
// option. Never set it in production.
const EnvCrashAfter = "SANDNET_TEST_CRASH_AFTER"

// startProfile starts the CPU profile EnvCPUProfile asks for and returns
// the function that finishes it.
func (a *Agent) startProfile() func() {
	path := os.Getenv(EnvCPUProfile)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		a.log.Warn("not writing the CPU profile", "path", path, "error", err)
		return func() {}
	}
	a.log.Info("writing a CPU profile", "path", path)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
