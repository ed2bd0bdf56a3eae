package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/sandnet/sandnet/core/agent"
	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// migratePrefix is what a migration copies: every sandnet key.
const migratePrefix = "sandnet/"

// storeMigrateCmd copies every sandnet key from the store of one config
// to the store of another, through the plugins, and verifies the copy.
// Stop the agent first: a migration under a running agent copies a moving
// target.
func storeMigrateCmd(args []string) int {
	fs := newFlags("store migrate", "")
	from := fs.String("from", "", "config file of the store to copy from")
	to := fs.String("to", "", "config file of the store to copy to")
	force := fs.Bool("force", false, "copy even when the target already holds sandnet keys (they are replaced)")
	pos, err := parse(fs, args)
	if err != nil {
		return usageFail(err)
	}
	if *from == "" || *to == "" || len(pos) > 0 {
		fmt.Fprintln(os.Stderr, "sandnet: store migrate needs --from and --to, the agent config files of the store to copy from and the store to copy to, and nothing else")
		fmt.Fprintf(os.Stderr, "See '%s -h'.\n", fs.Name())
		return 2
	}
	ctx := context.Background()
	m := plugin.NewManager(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}), plugin.Options{})
	defer m.Shutdown()
	// Both configs are checked before either store is opened, which
	// may create it.
	srcCfg, err := migrateConfig(*from, "source")
	if err != nil {
		return fail(err)
	}
	dstCfg, err := migrateConfig(*to, "target")
	if err != nil {
		return fail(err)
	}
	// A bolt source whose file is not there is a wrong --from: opening
	// it would make an empty one, and "copy" nothing.
	if path := absentStoreFile(ctx, m, srcCfg); path != "" {
		return fail(fmt.Errorf("source store: the bolt file %s (of %s) does not exist: nothing to migrate; is --from the config of the store to copy from?", path, *from))
	}
	src, err := openStore(ctx, m, srcCfg, "source")
	if err != nil {
		return fail(err)
	}
	dst, err := openStore(ctx, m, dstCfg, "target")
	if err != nil {
		return fail(err)
	}
	progress := func(done, total int) {}
	if isTerminal(os.Stderr) {
		progress = func(done, total int) {
			fmt.Fprintf(os.Stderr, "\rcopying %d/%d keys", done, total)
			if done == total {
				fmt.Fprintln(os.Stderr)
			}
		}
	}
	n, err := migrate(ctx, src, dst, *force, progress)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("copied and verified %d keys from %s to %s\n", n, *from, *to)
	return 0
}

// migrateConfig loads a config file of a migration and checks that no
// agent runs on it. role names it in errors.
func migrateConfig(file, role string) (*config.Config, error) {
	cfg, diags := config.Load(file)
	if diags.HasErrors() {
		var b strings.Builder
		_ = config.FormatDiagnostics(&b, cfg.Files(), diags)
		return nil, fmt.Errorf("%s config:\n%s", role, b.String())
	}
	if err := agent.CheckFree(cfg); err != nil {
		// The lock names the agent's PID: a migration beside it would
		// copy a moving store (Consul, etcd) or fail on bolt's file lock.
		return nil, fmt.Errorf("%s config %s: %w; stop the agent before migrating", role, file, err)
	}
	return cfg, nil
}

// openStore starts the store plugin of cfg, configured as the agent would
// configure it. role names it in errors.
func openStore(ctx context.Context, m *plugin.Manager, cfg *config.Config, role string) (store.Store, error) {
	spec := agent.PluginSpec(cfg, cfg.Store)
	spec.Name = role + "-" + spec.Name // the two stores may be the same kind
	p, err := m.Start(ctx, spec)
	if errors.Is(err, sdk.ErrUnavailable) {
		// A bolt file's lock, most often.
		return nil, fmt.Errorf("%s store: %w (is an agent still running on it, or do --from and --to name the same store?)", role, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s store: %w", role, err)
	}
	return p.Store()
}

// migrate copies every key under migratePrefix from src to dst but the
// hosts' records (hostRecords), and verifies dst then holds exactly those
// keys and values. A target that already holds sandnet keys is refused
// unless force; with force its sandnet keys are replaced. Two configs
// that name one store (a Consul or an etcd: a bolt file's lock refuses
// the second opening) are refused before anything changes: with force,
// clearing the target cleared the source, and an empty copy was
// "verified". It returns the number of keys copied.
func migrate(ctx context.Context, src, dst store.Store, force bool, progress func(done, total int)) (int, error) {
	if err := refuseSameStore(ctx, src, dst); err != nil {
		return 0, err
	}
	all, err := src.List(ctx, migratePrefix)
	if err != nil {
		return 0, fmt.Errorf("reading source: %w", err)
	}
	pairs := slices.DeleteFunc(all, isHostRecord)
	if len(pairs) == 0 {
		return 0, fmt.Errorf("the source store holds no sandnet keys: nothing to migrate (is --from the config of the store to copy from?): %w", sdk.ErrNotFound)
	}
	existing, err := dst.List(ctx, migratePrefix)
	if err != nil {
		return 0, fmt.Errorf("reading target: %w", err)
	}
	if len(existing) > 0 {
		if !force {
			return 0, fmt.Errorf("target store already holds %d sandnet keys; use -force to replace them: %w", len(existing), sdk.ErrExists)
		}
		if err := dst.DeleteTree(ctx, migratePrefix); err != nil {
			return 0, fmt.Errorf("clearing target: %w", err)
		}
	}
	// Transactions of a bounded size: Consul takes at most 64 ops in one.
	const batch = 64
	done := 0
	for chunk := range slices.Chunk(pairs, batch) {
		ops := make([]*pb.TxnOp, 0, len(chunk))
		for _, p := range chunk {
			ops = append(ops, &pb.TxnOp{Verb: pb.TxnOp_PUT, Key: p.GetKey(), Value: p.GetValue()})
		}
		if _, err := dst.Txn(ctx, ops); err != nil {
			return 0, fmt.Errorf("writing keys from %s: %w", chunk[0].GetKey(), err)
		}
		done += len(ops)
		progress(done, len(pairs))
	}
	if len(pairs) == 0 {
		progress(0, 0)
	}
	copied, err := dst.List(ctx, migratePrefix)
	if err != nil {
		return 0, fmt.Errorf("verifying: %w", err)
	}
	if len(copied) != len(pairs) {
		return 0, fmt.Errorf("verifying: target holds %d sandnet keys, source %d", len(copied), len(pairs))
	}
	for i := range pairs {
		if copied[i].GetKey() != pairs[i].GetKey() || !bytes.Equal(copied[i].GetValue(), pairs[i].GetValue()) {
			return 0, fmt.Errorf("verifying: key %s differs between source and target", pairs[i].GetKey())
		}
	}
	return len(pairs), nil
}

// hostRecords holds the hosts' records, each tied to its host's lease in
// the store: not copied, since a lease does not move between stores (a
// copied record, a plain key, kept a stopped host live for ever). Each
// agent puts its own again, with a new lease, when it starts.
const hostRecords = migratePrefix + "v1/host/"

func isHostRecord(kv *pb.KVPair) bool { return strings.HasPrefix(kv.GetKey(), hostRecords) }

// refuseSameStore refuses to migrate between two configs that name one
// store: a probe key put in the target must not be found in the source.
func refuseSameStore(ctx context.Context, src, dst store.Store) error {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	probe := "sandnet-migrate-probe/" + hex.EncodeToString(b)
	if _, err := dst.Put(ctx, probe, []byte("probe")); err != nil {
		return fmt.Errorf("writing to the target: %w", err)
	}
	_, err := src.Get(ctx, probe)
	if derr := dst.Delete(ctx, probe); derr != nil && !errors.Is(derr, sdk.ErrNotFound) {
		return fmt.Errorf("removing the target's probe key %s: %w", probe, derr)
	}
	switch {
	case err == nil:
		return fmt.Errorf("--from and --to name the same store (a key written to the target is in the source): nothing to migrate: %w", sdk.ErrInvalid)
	case !errors.Is(err, sdk.ErrNotFound):
		return fmt.Errorf("reading source: %w", err)
	}
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
