package plugin

import (
	"context"
	"fmt"
)

// Replace stops the running plugin of spec's kind and name and starts
// spec in its place (a reload that changed its block), then calls the
// OnRestart functions so its owner replays state. Calls in flight to the
// old plugin finish first (for at most Options.DrainTimeout); calls made
// in between fail with sdk.ErrUnavailable (the agent holds its requests
// back meanwhile: Controller.DrainDriver). When spec fails to start, the
// plugin is started again as it was and the error says so; a plugin that
// is not running is simply started.
func (m *Manager) Replace(ctx context.Context, spec Spec) (*Plugin, error) {
	key := spec.Kind + "/" + spec.Name
	m.mu.Lock()
	old, closed := m.plugins[key], m.closed
	m.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("replacing %s plugin %q: manager is shut down", spec.Kind, spec.Name)
	}
	if old == nil {
		return m.Start(ctx, spec)
	}
	restarts := old.Status().Restarts
	old.shutdown()
	p, err := m.relaunch(ctx, spec, restarts+1)
	if err != nil {
		// Keep the plugin the agent had rather than none.
		if back, berr := m.relaunch(ctx, old.spec, restarts+1); berr == nil {
			m.restarted(back)
			return nil, fmt.Errorf("%w (the plugin runs again with its previous block)", err)
		}
		m.mu.Lock()
		delete(m.plugins, key)
		m.mu.Unlock()
		return nil, err
	}
	m.restarted(p)
	return p, nil
}

// relaunch launches spec as the plugin of its key, in place of whatever
// was there, and supervises it.
func (m *Manager) relaunch(ctx context.Context, spec Spec, restarts int) (*Plugin, error) {
	p := &Plugin{spec: spec, m: m, log: m.log.Named(spec.Kind + "." + spec.Name), stop: make(chan struct{}), done: make(chan struct{}), restarts: restarts}
	if err := p.launch(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		p.terminate()
		close(p.done)
		return nil, fmt.Errorf("starting %s plugin %q: manager is shut down", spec.Kind, spec.Name)
	}
	m.plugins[spec.Kind+"/"+spec.Name] = p
	m.mu.Unlock()
	go p.supervise()
	return p, nil
}

// Stop stops the plugin of that kind and name and forgets it (a reload
// that removed its block), letting calls in flight finish first, as
// Replace does. It reports whether there was one.
func (m *Manager) Stop(kind, name string) bool {
	m.mu.Lock()
	p := m.plugins[kind+"/"+name]
	delete(m.plugins, kind+"/"+name)
	closed := m.closed
	m.mu.Unlock()
	if p == nil || closed {
		return false
	}
	p.shutdown()
	return true
}
