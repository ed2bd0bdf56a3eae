package plugin

import (
	"runtime"
)

// launcher runs functions on one OS thread that is never released. Plugin
// processes forked from it get Pdeathsig relative to a thread that lives as
// long as the agent.
type launcher struct {
	reqs chan func()
}

func newLauncher() *launcher {
	l := &launcher{reqs: make(chan func())}
	go func() {
		// Never unlocked: the thread must outlive every child it forks.
		runtime.LockOSThread()
		for fn := range l.reqs {
			fn()
		}
	}()
	return l
}

// run calls fn on the launcher thread and waits for it.
func (l *launcher) run(fn func()) {
	done := make(chan struct{})
	l.reqs <- func() {
		defer close(done)
		fn()
	}
	<-done
}
