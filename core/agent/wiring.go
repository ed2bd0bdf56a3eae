package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/core/resolver"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/store"
)

// plugins adapts the plugin manager to what the controller needs.
type plugins struct {
	m     *plugin.Manager
	store string
	// restartWait bounds how long a store operation waits for the store
	// plugin while it restarts (plugin_restart_wait): a store that cannot
	// start again is reported (503) after this long.
	restartWait time.Duration
}

func (p plugins) Store() (store.Store, error) {
	pl := p.m.Get(sdk.KindStore, p.store)
	if pl == nil {
		return nil, fmt.Errorf("store %q is not loaded: %w", p.store, sdk.ErrUnavailable)
	}
	s, err := pl.Store()
	if errors.Is(err, sdk.ErrUnavailable) && pl.WaitRunning(p.restartWait) {
		s, err = pl.Store()
	}
	if err != nil {
		return nil, err
	}
	return namedStore{Store: s, name: p.store}, nil
}

func (p plugins) Driver(name string) (driver.Driver, error) {
	pl := p.m.Get(sdk.KindDriver, name)
	if pl == nil {
		return nil, fmt.Errorf("driver %q is not loaded: %w", name, sdk.ErrNotFound)
	}
	d, err := pl.Driver()
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (p plugins) Drivers() []string {
	var names []string
	for _, pl := range p.m.Plugins() {
		if pl.Kind() == sdk.KindDriver {
			names = append(names, pl.Name())
		}
	}
	return names
}

func (p plugins) StoreGlobal() bool {
	pl := p.m.Get(sdk.KindStore, p.store)
	return pl != nil && slices.Contains(pl.Info().GetCapabilities(), sdk.CapabilityGlobalScope)
}

// startController reads the store back and replays drivers; a driver that
// restarts later gets its state replayed again.
func (a *Agent) startController(ctx context.Context) error {
	ps := plugins{m: a.plugins, store: a.cfg.Store.Name, restartWait: a.cfg.PluginRestartWait}
	alloc, err := ipam.New(ipam.Config{Store: ps.Store, DefaultPools: a.cfg.IPAM.DefaultPools, HostRoutes: hostRoutes})
	if err != nil {
		return err
	}
	a.ipam = alloc
	hostID, made, err := hostID(a.cfg.DataDir)
	if err != nil {
		return err
	}
	if made {
		a.made = append(a.made, filepath.Join(a.cfg.DataDir, "host-id"), filepath.Join(a.cfg.DataDir, controller.LayoutFile))
	}
	advertise, err := advertiseAddr(a.cfg.AdvertiseAddr)
	if err != nil {
		return err
	}
	a.cache = resolver.NewCache(cacheConfig(a.cfg.Resolver))
	c, err := controller.New(a.log.Named("controller"), controller.Config{
		HostID:            hostID,
		AdvertiseAddr:     advertise,
		HostTTL:           a.cfg.HostTTL,
		DriverRestartWait: a.cfg.PluginRestartWait,
		DataDir:           a.cfg.DataDir,
		FilesDir:          a.cfg.Sandbox.FilesDir,
		NetnsDir:          a.cfg.Sandbox.NetnsDir,
		StubGracePeriod:   a.cfg.Sandbox.StubGracePeriod,
		SpareNamespaces:   a.cfg.Sandbox.SpareNamespaces,
		CrashAfter:        os.Getenv(EnvCrashAfter),
		IPAM:              alloc,
		HostListen:        a.cfg.Resolver.HostListen,
		OnStep:            a.metrics.Step,
		OnEvent:           a.events.Publish,
		Resolver: resolver.Config{
			Upstreams:   a.cfg.Resolver.Upstreams,
			Timeout:     a.cfg.Resolver.Timeout,
			MaxInflight: a.cfg.Resolver.MaxInflight,
			Budget:      resolver.NewBudget(forwardBudget()),
			Metrics:     a.metrics.DNS(),
			Cache:       a.cache,
		},
	}, ps)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		return err
	}
	a.ctrl = c
	// A driver that exits is down until it is replayed: requests wait.
	a.plugins.OnExit(func(p *plugin.Plugin, _ string) {
		if p.Kind() == sdk.KindDriver {
			c.DriverDown(p.Name())
		}
	})
	a.plugins.OnRestart(func(p *plugin.Plugin) {
		if p.Kind() == sdk.KindStore {
			// A store that came back empty: say so (its supervisor's
			// goroutine is not held up by the store's answer).
			go c.CheckStoreHoldsSandboxes(context.Background())
			return
		}
		if p.Kind() != sdk.KindDriver {
			return
		}
		a.replayMu.Lock()
		if cancel := a.retries[p.Name()]; cancel != nil {
			cancel() // this replay takes over
			delete(a.retries, p.Name())
		}
		a.replayMu.Unlock()
		err := c.Replay(a.bg, p.Name())
		a.noteReplay(p.Name(), err)
		if errors.Is(err, sdk.ErrUnavailable) {
			a.replayLater(c, p.Name())
		}
	})
	return nil
}

// noteReplay records (and logs, if it failed) the outcome of a replay to
// driver name.
func (a *Agent) noteReplay(name string, err error) {
	if err != nil {
		a.log.Error("replaying state to restarted driver", "driver", name, "error", err)
	}
	a.replayMu.Lock()
	if a.replayed == nil {
		a.replayed = map[string]error{}
	}
	a.replayed[name] = err
	a.replayMu.Unlock()
}

// replayRetryEvery is how often a replay the store kept from reading the
// state is tried again.
const replayRetryEvery = 2 * time.Second

// replayLater tries again, every replayRetryEvery, a replay to driver
// name that the store kept from reading the state (it did not answer):
// until then the driver holds none of its networks, endpoints and ports.
// It ends once a replay reads the state (whatever the driver made of
// it), the driver restarts again (that start's replay takes over) or the
// agent stops.
func (a *Agent) replayLater(c *controller.Controller, name string) {
	ctx, cancel := context.WithCancel(a.bg)
	a.replayMu.Lock()
	a.retries[name] = cancel
	a.replayMu.Unlock()
	a.log.Warn("the store did not answer a replay; trying again until it does", "driver", name, "every", replayRetryEvery)
	go func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(replayRetryEvery):
			}
			err := c.Replay(ctx, name)
			if ctx.Err() != nil {
				return // another replay took over, or the agent stops
			}
			a.noteReplay(name, err)
			if !errors.Is(err, sdk.ErrUnavailable) {
				if err == nil {
					a.log.Info("replayed state to the driver once the store answered", "driver", name)
				}
				return
			}
		}
	}()
}

// hostRoutes lists the destinations of the agent namespace's routes, which
// automatically chosen subnets must not overlap.
func hostRoutes() ([]netip.Prefix, error) {
	var routes []netlink.Route
	var err error
	// A dump a concurrent change interrupts (a bridge coming up, say) is
	// taken again.
	for range 10 {
		if routes, err = netlink.RouteList(nil, netlink.FAMILY_ALL); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing host routes: %w", err)
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if p, ok := netipx(r.Dst); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func netipx(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

// ReadHostID returns the ID of the host an agent on dataDir runs as, or ""
// when the directory has none yet (the agent's first start makes one).
func ReadHostID(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, "host-id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// hostID returns this host's ID, made on first start and kept in
// <data_dir>/host-id: hosts sharing a store tell their local records apart
// by it. made says this call wrote the file.
func hostID(dataDir string) (id string, made bool, err error) {
	if id := ReadHostID(dataDir); id != "" {
		return id, false, nil
	}
	path := filepath.Join(dataDir, "host-id")
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, err
	}
	id = hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", false, fmt.Errorf("creating data_dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", false, fmt.Errorf("writing host ID: %w", err)
	}
	return id, true, nil
}

// forwardBudget bounds the queries the embedded resolvers of all
// sandboxes forward at once (each holds a socket until its upstream
// answers): a quarter of the open-file limit, at least 256 but never
// over half the limit, so that containers flooding their resolvers with
// names no upstream answers leave the agent the files its API and new
// sandboxes need. One resolver holds a quarter of it at most.
func forwardBudget() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur/4 > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(min(max(256, lim.Cur/4), lim.Cur/2))
}
