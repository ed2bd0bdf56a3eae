package agent

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/core/resolver"
	"github.com/sandnet/sandnet/sdk"
)

// Reload reads the agent's config file again and applies it: a driver
// whose block changed (binary, args, checksum or config) is restarted
// with its state replayed, a new one is started, a removed one stopped;
// the others are left alone, and the log level is applied. Nothing is
// applied when the file has errors (each is logged with its position and
// the error holds them all), when the store block changed (a running
// agent does not switch stores: `sandnet store migrate` does), or when a
// removed driver still has networks. A reload runs to its end though
// its caller goes away (a client's timeout, Ctrl-C on `sandnet reload`),
// as SIGHUP's does: cut short, a driver's restart failed with the
// caller's canceled context, half the file applied. Its waits have
// bounds of their own (a drain's and a retirement's, 10 s each; each
// call of a restarted driver's replay, controller.DefaultReplayCallTimeout).
// A reload asked for while one runs is refused with ErrReloadRunning
// (sdk.ErrConflict): queued, it ran after a stuck one, never.
func (a *Agent) Reload(ctx context.Context) (*api.Reloaded, error) {
	ctx = context.WithoutCancel(ctx)
	if !a.reloadMu.TryLock() {
		a.log.Warn("a reload is already running; this one is refused")
		return nil, ErrReloadRunning
	}
	defer a.reloadMu.Unlock()
	a.Notify(daemon.SdNotifyReloading)
	defer a.Notify(daemon.SdNotifyReady)
	r, err := a.reload(ctx)
	if err != nil {
		a.log.Error("reload rejected; the running config stays", "file", a.cfg.Filename, "error", err)
		return nil, err
	}
	a.log.Info("config reloaded", "restarted", r.Restarted, "started", r.Started, "stopped", r.Stopped, "unchanged", r.Unchanged,
		"applied", r.Applied, "failed", r.Failed)
	a.events.Publish(events.Event{Type: events.TypeReload, Message: r.Summary()})
	return r, nil
}

func (a *Agent) reload(ctx context.Context) (*api.Reloaded, error) {
	next, diags := config.Load(a.cfg.Filename)
	if diags.HasErrors() {
		return nil, diagError(next, diags)
	}
	plan, err := a.planReload(next)
	if err != nil {
		return nil, err
	}
	if err := a.retire(ctx, plan); err != nil {
		return nil, err
	}
	// The lists are [] when empty, not null.
	r := &api.Reloaded{Restarted: []string{}, Started: []string{}, Stopped: []string{}, Unchanged: append([]string{}, plan.unchanged...), Ignored: a.ignoredChanges(next)}
	a.applySettings(ctx, next, r)
	a.applyDrivers(ctx, next, plan, r)
	// What the agent runs now is what the file says, where it could.
	a.cfg.PluginDir = next.PluginDir
	return r, nil
}

// ErrReloadRunning refuses a reload asked for while another runs.
var ErrReloadRunning = fmt.Errorf("a reload is already running; try again once it has ended: %w", sdk.ErrConflict)

// driverDrainWait bounds how long a reload waits for the requests using a
// driver it replaces (Controller.DrainDriver), or for the network creates
// on a driver it removes (Controller.RetireDriver).
const driverDrainWait = 10 * time.Second

// reloadPlan is what a reload does to the driver plugins: the blocks to
// restart (changed), to start (new) and the drivers to stop (their
// blocks gone).
type reloadPlan struct {
	restart, start []config.PluginBlock
	stop           []string
	unchanged      []string
}

// planReload compares the next config with the running one and refuses
// what a running agent cannot do: switch stores. It changes nothing.
func (a *Agent) planReload(next *config.Config) (*reloadPlan, error) {
	// The store first: if it changed, nothing is applied.
	same, diags := a.sameBlock(next, a.cfg.Store, next.Store)
	if diags.HasErrors() {
		return nil, diagError(next, diags)
	}
	if !same {
		return nil, storeChanged(a.cfg, next)
	}
	plan := &reloadPlan{}
	kept := map[string]bool{}
	for _, b := range next.Drivers {
		kept[b.Name] = true
		old, ok := a.driverBlock(b.Name)
		if !ok {
			plan.start = append(plan.start, b)
			continue
		}
		same, d := a.sameBlock(next, old, b)
		diags = append(diags, d...)
		if same {
			plan.unchanged = append(plan.unchanged, b.Name)
		} else {
			plan.restart = append(plan.restart, b)
		}
	}
	diags = append(diags, binaryProblems(next, append(slices.Clone(plan.restart), plan.start...))...)
	if diags.HasErrors() {
		return nil, diagError(next, diags)
	}
	for _, b := range a.cfg.Drivers {
		if !kept[b.Name] {
			plan.stop = append(plan.stop, b.Name)
		}
	}
	return plan, nil
}

// binaryProblems reports, at their blocks, the binaries of blocks that
// are missing, not executable, or not the build their checksum pins, as
// `config validate -offline` does: a reload that would start one is
// refused whole, before anything is stopped or applied (the running
// plugin was stopped, its new block refused, and the file's other
// settings applied).
func binaryProblems(next *config.Config, blocks []config.PluginBlock) hcl.Diagnostics {
	at := map[hcl.Range]bool{}
	for _, b := range blocks {
		at[b.DeclRange] = true
	}
	var diags hcl.Diagnostics
	for _, d := range config.CheckBinaries(next) {
		if d.Subject != nil && at[*d.Subject] {
			diags = append(diags, d)
			delete(at, *d.Subject)
		}
	}
	present := slices.DeleteFunc(slices.Clone(blocks), func(b config.PluginBlock) bool { return !at[b.DeclRange] })
	return append(diags, plugin.CheckChecksums(present, next.PluginDir)...)
}

// retire readies the drivers plan stops (RetireDriver): none may have a
// network, and none gets one meanwhile. On a refusal, the ones readied
// are taken back and nothing else has changed.
func (a *Agent) retire(ctx context.Context, plan *reloadPlan) error {
	for i, name := range plan.stop {
		if err := a.ctrl.RetireDriver(ctx, name, driverDrainWait); err != nil {
			for _, done := range plan.stop[:i] {
				a.ctrl.EndRetire(done)
			}
			return err
		}
	}
	return nil
}

// applyDrivers restarts, starts and stops the driver plugins as plan
// says, noting each in r. A driver whose new block does not start runs
// on with its old one (Replace's doing) and is reported as failed.
func (a *Agent) applyDrivers(ctx context.Context, next *config.Config, plan *reloadPlan, r *api.Reloaded) {
	for _, b := range plan.restart {
		// Requests under way finish on the old plugin; new ones wait
		// until the new one is replayed.
		if !a.ctrl.DrainDriver(b.Name, driverDrainWait) {
			a.log.Warn("requests still using the driver; replacing it anyway", "driver", b.Name, "waited", driverDrainWait)
		}
		a.takeReplayed(b.Name)
		if _, err := a.plugins.Replace(ctx, PluginSpec(next, b)); err != nil {
			if a.plugins.Get(sdk.KindDriver, b.Name) == nil {
				a.ctrl.EndDriverWait(b.Name) // neither block started: nothing to wait for
			}
			a.log.Error("restarting driver with its new block", "driver", b.Name, "error", err)
			r.Failed = append(r.Failed, fmt.Sprintf("%s (%v)", b.Name, err))
			continue
		}
		if err := a.takeReplayed(b.Name); err != nil {
			r.Failed = append(r.Failed, fmt.Sprintf("%s (%s)", b.Name, a.restoreBlock(ctx, b.Name, err)))
			continue
		}
		r.Restarted = append(r.Restarted, b.Name)
		a.setDriverBlock(b)
	}
	for _, b := range plan.start {
		if _, err := a.plugins.Start(ctx, PluginSpec(next, b)); err != nil {
			a.log.Error("starting driver", "driver", b.Name, "error", err)
			r.Failed = append(r.Failed, fmt.Sprintf("%s (%v)", b.Name, err))
			continue
		}
		r.Started = append(r.Started, b.Name)
		a.cfg.Drivers = append(a.cfg.Drivers, b)
		a.ctrl.EndDriverWait(b.Name) // a driver of that name that died before its block went
	}
	for _, name := range plan.stop {
		a.plugins.Stop(sdk.KindDriver, name)
		a.ctrl.EndRetire(name)     // creates on it are now refused as not loaded
		a.ctrl.EndDriverWait(name) // it will not come back: no one waits
		r.Stopped = append(r.Stopped, name)
		a.cfg.Drivers = deleteBlock(a.cfg.Drivers, name)
	}
}

// sameBlock reports whether the running plugin of block old would run as
// the block nb of the next config says: same binary, arguments, checksum
// and config, the config compared as decoded against the schema the
// running plugin declared (so that formatting and comments do not count,
// and a config the plugin's schema rejects is an error).
func (a *Agent) sameBlock(next *config.Config, old, nb config.PluginBlock) (bool, hcl.Diagnostics) {
	p := a.plugins.Get(old.Kind, old.Name)
	if p == nil {
		return false, nil
	}
	schema := p.Info().GetConfigSchema()
	newJS, diags := config.DecodePluginConfig(nb, schema)
	if diags.HasErrors() {
		return false, diags
	}
	oldJS, _ := config.DecodePluginConfig(old, schema)
	return old.Binary(a.cfg.PluginDir) == nb.Binary(next.PluginDir) &&
		reflect.DeepEqual(old.Args, nb.Args) && old.Checksum == nb.Checksum &&
		string(oldJS) == string(newJS), nil
}

// storeChanged is the refusal of a reload that would switch stores. It
// names what changed: a file with no store block uses the bolt store at
// <data_dir>/store.db, so a new data_dir, or a store block added or
// removed, switches stores as surely as an edited block does.
func storeChanged(old, next *config.Config) error {
	var what string
	switch {
	case old.Store.Implicit && next.Store.Implicit:
		what = fmt.Sprintf("the store changed: the file has no store block, so the store is data_dir's store.db, and data_dir changed from %s to %s", old.DataDir, next.DataDir)
	case old.Store.Implicit:
		what = fmt.Sprintf("the store changed: the file now has a store block (%s), where the running agent uses the bolt store in data_dir (%s)", at(next.Store.DeclRange), filepath.Join(old.DataDir, "store.db"))
	case next.Store.Implicit:
		what = fmt.Sprintf("the store changed: the file no longer has a store block, so the store would be the bolt store at %s", filepath.Join(next.DataDir, "store.db"))
	default:
		what = fmt.Sprintf("the store block changed (%s)", at(next.Store.DeclRange))
	}
	return fmt.Errorf("%s: a running agent does not switch stores; stop it, copy the state with `sandnet store migrate --from OLD.hcl --to NEW.hcl`, and start it with the new file: %w", what, sdk.ErrConflict)
}

// at is a block's position as diagnostics give it: file:line:col.
func at(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

func (a *Agent) driverBlock(name string) (config.PluginBlock, bool) {
	for _, b := range a.cfg.Drivers {
		if b.Name == name {
			return b, true
		}
	}
	return config.PluginBlock{}, false
}

// takeReplayed returns, and forgets, the outcome of the last replay of
// driver name.
func (a *Agent) takeReplayed(name string) error {
	a.replayMu.Lock()
	defer a.replayMu.Unlock()
	err := a.replayed[name]
	delete(a.replayed, name)
	return err
}

// restoreBlock runs driver name with its previous block again, after its
// new block's plugin started but did not take the agent's state back
// (replayErr: it crashed on it, failed or left a call unanswered), and
// says what happened, for the reload's answer.
func (a *Agent) restoreBlock(ctx context.Context, name string, replayErr error) string {
	why := fmt.Sprintf("its new block's plugin did not take the state back: %v", replayErr)
	i := slices.IndexFunc(a.cfg.Drivers, func(b config.PluginBlock) bool { return b.Name == name })
	if i < 0 {
		return why
	}
	a.log.Error("the driver's new block did not take the state back; running its previous block again", "driver", name, "error", replayErr)
	if _, err := a.plugins.Replace(ctx, PluginSpec(a.cfg, a.cfg.Drivers[i])); err != nil {
		return fmt.Sprintf("%s; its previous block did not start again either: %v", why, err)
	}
	if err := a.takeReplayed(name); err != nil {
		return fmt.Sprintf("%s; it runs its previous block again, which did not take it back either: %v", why, err)
	}
	return why + "; it runs its previous block again"
}

func (a *Agent) setDriverBlock(nb config.PluginBlock) {
	for i, b := range a.cfg.Drivers {
		if b.Name == nb.Name {
			a.cfg.Drivers[i] = nb
		}
	}
}

func deleteBlock(bs []config.PluginBlock, name string) []config.PluginBlock {
	out := bs[:0]
	for _, b := range bs {
		if b.Name != name {
			out = append(out, b)
		}
	}
	return out
}

// applySettings applies what of next's settings a running agent can —
// the log level, the resolver's (applyResolver), the IPAM default pools,
// the stub grace period, the number of spare namespaces, the Prometheus
// listener — and names in r those it applied and those it could not.
func (a *Agent) applySettings(ctx context.Context, next *config.Config, r *api.Reloaded) {
	if next.Log.Level != a.cfg.Log.Level {
		if lvl := hclog.LevelFromString(next.Log.Level); lvl != hclog.NoLevel {
			a.log.SetLevel(lvl)
		}
		a.cfg.Log.Level = next.Log.Level // json only at the next start
		r.Applied = append(r.Applied, "log.level")
	}
	a.applyResolver(next.Resolver, r)
	if !reflect.DeepEqual(next.IPAM, a.cfg.IPAM) {
		// The file's pools were checked when it was read; should the
		// allocator refuse them still, the reload says so.
		if err := a.ipam.SetDefaultPools(next.IPAM.DefaultPools); err != nil {
			a.log.Error("applying ipam default_pools", "error", err)
			r.Failed = append(r.Failed, fmt.Sprintf("ipam.default_pools (%v)", err))
		} else {
			a.cfg.IPAM = next.IPAM
			r.Applied = append(r.Applied, "ipam.default_pools")
		}
	}
	if next.Sandbox.StubGracePeriod != a.cfg.Sandbox.StubGracePeriod {
		a.ctrl.SetStubGracePeriod(next.Sandbox.StubGracePeriod)
		a.cfg.Sandbox.StubGracePeriod = next.Sandbox.StubGracePeriod
		r.Applied = append(r.Applied, "sandbox.stub_grace_period")
	}
	if next.Sandbox.SpareNamespaces != a.cfg.Sandbox.SpareNamespaces {
		a.ctrl.SetSpareNamespaces(next.Sandbox.SpareNamespaces)
		a.cfg.Sandbox.SpareNamespaces = next.Sandbox.SpareNamespaces
		r.Applied = append(r.Applied, "sandbox.spare_namespaces")
	}
	if next.Telemetry != a.cfg.Telemetry {
		if err := a.movePrometheus(ctx, next.Telemetry.PrometheusListen); err != nil {
			a.log.Error("applying telemetry prometheus_listen; metrics stay where they were", "error", err)
			r.Failed = append(r.Failed, fmt.Sprintf("telemetry.prometheus_listen (%v)", err))
		} else {
			a.cfg.Telemetry = next.Telemetry
			r.Applied = append(r.Applied, "telemetry.prometheus_listen")
		}
	}
}

// applyResolver applies what of next's resolver settings a running agent
// can — upstreams, limits, the cache, the host listener — and names in r
// those it applied and those it could not.
func (a *Agent) applyResolver(next config.Resolver, r *api.Reloaded) {
	cur := &a.cfg.Resolver
	if !slices.Equal(next.Upstreams, cur.Upstreams) {
		a.ctrl.SetResolverUpstreams(next.Upstreams)
		cur.Upstreams = next.Upstreams
		r.Applied = append(r.Applied, "resolver.upstreams")
	}
	if next.Timeout != cur.Timeout || next.MaxInflight != cur.MaxInflight {
		a.ctrl.SetResolverLimits(next.Timeout, next.MaxInflight)
		if next.Timeout != cur.Timeout {
			r.Applied = append(r.Applied, "resolver.timeout")
		}
		if next.MaxInflight != cur.MaxInflight {
			r.Applied = append(r.Applied, "resolver.max_inflight")
		}
		cur.Timeout, cur.MaxInflight = next.Timeout, next.MaxInflight
	}
	a.applyCache(next, r)
	if next.HostListen != cur.HostListen {
		if err := a.ctrl.SetHostListen(next.HostListen); err != nil {
			a.log.Error("applying resolver host_listen; the host listener stays where it was", "error", err)
			r.Failed = append(r.Failed, fmt.Sprintf("resolver.host_listen (%v)", err))
		} else {
			cur.HostListen = next.HostListen
			r.Applied = append(r.Applied, "resolver.host_listen")
		}
	}
}

// ignoredChanges names the settings next changes that only a restart
// applies.
func (a *Agent) ignoredChanges(next *config.Config) []string {
	var out []string
	live := cacheLive(a.cfg.Resolver, next.Resolver)
	for _, s := range []struct {
		name      string
		old, next any
	}{
		{"data_dir", a.cfg.DataDir, next.DataDir},
		{"advertise_addr", a.cfg.AdvertiseAddr, next.AdvertiseAddr},
		{"host_ttl", a.cfg.HostTTL, next.HostTTL},
		{"plugin_restart_wait", a.cfg.PluginRestartWait, next.PluginRestartWait},
		{"log.json", a.cfg.Log.JSON, next.Log.JSON},
		{"api", a.cfg.API, next.API},
		{"sandbox", restartOnly(a.cfg.Sandbox), restartOnly(next.Sandbox)},
		{"resolver", resolverRestartOnly(a.cfg.Resolver, live), resolverRestartOnly(next.Resolver, live)},
	} {
		if !reflect.DeepEqual(s.old, s.next) {
			out = append(out, s.name)
		}
	}
	if len(out) > 0 {
		a.log.Warn("settings changed that take effect at the next start", "settings", out)
	}
	return out
}

// diagError is the error of a config file with problems: every
// diagnostic, one per line with its position, as `config validate`
// prints them.
func diagError(cfg *config.Config, diags hcl.Diagnostics) error {
	var b strings.Builder
	_ = config.FormatDiagnostics(&b, cfg.Files(), diags)
	return fmt.Errorf("%s has errors:\n%s%w", cfg.Filename, b.String(), errConfigInvalid)
}

// errConfigInvalid ends the message of diagError; it wraps sdk.ErrInvalid
// (400 at the API).
var errConfigInvalid = fmt.Errorf("the running config stays: %w", sdk.ErrInvalid)

// resolverRestartOnly is r without what a reload applies (upstreams,
// timeout, max_inflight, host_listen, and with cacheLive the cache's
// settings): what remains, compared, only a restart applies.
func resolverRestartOnly(r config.Resolver, cacheLive bool) config.Resolver {
	r.Upstreams, r.Timeout, r.MaxInflight, r.HostListen = nil, 0, 0, netip.AddrPort{}
	if cacheLive {
		r.CacheSize, r.CacheMaxTTL, r.CacheMaxNegativeTTL = 0, 0, 0
	}
	return r
}

// cacheLive says whether a reload from r to next can apply the cache's
// settings: unless it turns the cache on or off, which only a restart
// does (every running resolver holds the cache, or none).
func cacheLive(r, next config.Resolver) bool { return (r.CacheSize > 0) == (next.CacheSize > 0) }

// cacheConfig is the forwarding cache's part of r.
func cacheConfig(r config.Resolver) resolver.CacheConfig {
	return resolver.CacheConfig{Size: r.CacheSize, MaxTTL: r.CacheMaxTTL, MaxNegativeTTL: r.CacheMaxNegativeTTL}
}

// applyCache applies next's cache settings to the running cache, when a
// reload can (cacheLive), and names in r those that changed.
func (a *Agent) applyCache(next config.Resolver, r *api.Reloaded) {
	cur := &a.cfg.Resolver
	if !cacheLive(*cur, next) {
		return
	}
	for _, f := range []struct {
		name    string
		changed bool
	}{
		{"resolver.cache_size", cur.CacheSize != next.CacheSize},
		{"resolver.cache_max_ttl", cur.CacheMaxTTL != next.CacheMaxTTL},
		{"resolver.cache_max_negative_ttl", cur.CacheMaxNegativeTTL != next.CacheMaxNegativeTTL},
	} {
		if f.changed {
			r.Applied = append(r.Applied, f.name)
		}
	}
	a.cache.SetLimits(cacheConfig(next)) // false, changing nothing, for no cache
	cur.CacheSize, cur.CacheMaxTTL, cur.CacheMaxNegativeTTL = next.CacheSize, next.CacheMaxTTL, next.CacheMaxNegativeTTL
}

// restartOnly is s without the settings a reload applies
// (spare_namespaces, stub_grace_period): the rest, compared, is what only
// a restart applies.
func restartOnly(s config.Sandbox) config.Sandbox {
	s.SpareNamespaces, s.StubGracePeriod = 0, 0
	return s
}
