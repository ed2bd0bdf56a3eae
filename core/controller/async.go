package controller

import (
	"context"

	"github.com/hashicorp/go-hclog"
)

// async is a result computed in the background and awaited later: the
// one future type of the controller. Wait may be called any number of
// times, from any goroutine; each call returns the same result.
type async[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// start runs fn in a goroutine of its own and returns its future result.
func start[T any](fn func() (T, error)) *async[T] {
	a := &async[T]{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.val, a.err = fn()
	}()
	return a
}

// resolved is a result known already.
func resolved[T any](val T, err error) *async[T] {
	a := &async[T]{done: make(chan struct{}), val: val, err: err}
	close(a.done)
	return a
}

// Wait waits for the result.
func (a *async[T]) Wait() (T, error) {
	<-a.done
	return a.val, a.err
}

// Err waits for the result and returns its error.
func (a *async[T]) Err() error {
	_, err := a.Wait()
	return err
}

// undoStack is a flow's rollback: as each step succeeds it pushes what
// undoes it, under a name; should a later step fail, Run undoes them all,
// last first, and logs every undo that fails (none is dropped silently).
// A flow that succeeds calls nothing (or Release, to say so explicitly).
type undoStack struct {
	log   hclog.Logger
	what  []any // log fields naming the flow, e.g. "endpoint", id
	steps []undoStep
}

type undoStep struct {
	name string
	fn   func(ctx context.Context) error
}

// newUndo returns an empty undo stack whose failures are logged with
// the fields what.
func newUndo(log hclog.Logger, what ...any) *undoStack {
	return &undoStack{log: log, what: what}
}

// Push adds an undo action, to run before those pushed earlier.
func (u *undoStack) Push(name string, fn func(ctx context.Context) error) {
	u.steps = append(u.steps, undoStep{name, fn})
}

// Run undoes every step pushed, last first, within ctx (never canceled by
// the request: an undo must finish what it starts), and empties the stack.
func (u *undoStack) Run(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for i := len(u.steps) - 1; i >= 0; i-- {
		s := u.steps[i]
		if err := s.fn(ctx); err != nil {
			u.log.Error("rolling back: "+s.name, append(u.what, "error", err)...)
		}
	}
	u.steps = nil
}

// RunIf runs the stack when *err is not nil: `defer u.RunIf(ctx, &err)`.
func (u *undoStack) RunIf(ctx context.Context, err *error) {
	if *err != nil {
		u.Run(ctx)
	}
}

// Release forgets the steps pushed: the flow succeeded.
func (u *undoStack) Release() { u.steps = nil }
