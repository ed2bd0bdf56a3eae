package boltstore

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// crashCopy copies the database file and the log of the open store at
// path to a new directory, as a crash would leave them on disk, and
// returns the copy's path.
func crashCopy(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "store.db")
	for _, suffix := range []string{"", walSuffix} {
		in, err := os.Open(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(dst + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		out.Close()
	}
	return dst
}

// TestCrashRecovery: every write that was acknowledged survives a crash
// before any checkpoint, with its index, and the revision goes on from
// there.
func TestCrashRecovery(t *testing.T) {
	ctx := t.Context()
	path := dbPath(t)
	s := newTestStore()
	s.idleAfter = time.Hour // no checkpoint but the one at open
	if err := s.Configure(ctx, configJSON(t, path, nil)); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	a := mustPut(t, s, "k/a", "1")
	b := mustPut(t, s, "k/b", "2")
	if err := s.Delete(ctx, "k/a"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Txn(ctx, []*pb.TxnOp{
		{Verb: pb.TxnOp_CAS, Key: "k/c", Value: []byte("3")},
		{Verb: pb.TxnOp_CAS, Key: "k/b", Value: []byte("2b"), Index: b.GetIndex()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + walSuffix); err != nil || fi.Size() == 0 {
		t.Fatalf("log after the writes: %v, %v; want the writes in it", fi, err)
	}

	r := newTestStore()
	if err := r.Configure(ctx, configJSON(t, crashCopy(t, path), nil)); err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if _, err := r.Get(ctx, a.GetKey()); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("deleted key after recovery: %v, want sdk.ErrNotFound", err)
	}
	wantGet(t, r, res[0])
	wantGet(t, r, res[1])
	kvs, err := r.List(ctx, "k/")
	if err != nil || len(kvs) != 2 || kvs[0].GetKey() != "k/b" || kvs[1].GetKey() != "k/c" {
		t.Fatalf("List after recovery = %v, %v", kvs, err)
	}
	if d := mustPut(t, r, "k/d", "4"); d.GetIndex() != res[0].GetIndex()+1 {
		t.Fatalf("first write after recovery at index %d, want %d", d.GetIndex(), res[0].GetIndex()+1)
	}
}

// TestTornLog: an append cut short by a crash was never acknowledged;
// opening the store ignores it and cuts it off the log.
func TestTornLog(t *testing.T) {
	ctx := t.Context()
	path := dbPath(t)
	s := newTestStore()
	s.idleAfter = time.Hour
	if err := s.Configure(ctx, configJSON(t, path, nil)); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	a := mustPut(t, s, "a", "1")
	mustPut(t, s, "b", "2")
	copyPath := crashCopy(t, path)
	// Cut the last record in half.
	fi, err := os.Stat(copyPath + walSuffix)
	if err != nil {
		t.Fatal(err)
	}
	whole := fi.Size()
	if err := os.Truncate(copyPath+walSuffix, whole-5); err != nil {
		t.Fatal(err)
	}
	r := newTestStore()
	if err := r.Configure(ctx, configJSON(t, copyPath, nil)); err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	wantGet(t, r, a)
	if _, err := r.Get(ctx, "b"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("key of the torn record: %v, want sdk.ErrNotFound", err)
	}
	// The open checkpointed and emptied the log.
	if fi, err := os.Stat(copyPath + walSuffix); err != nil || fi.Size() != 0 {
		t.Fatalf("log after open: %v, %v; want empty", fi, err)
	}
	if c := mustPut(t, r, "c", "3"); c.GetIndex() != a.GetIndex()+1 {
		t.Fatalf("write after the torn record at index %d, want %d", c.GetIndex(), a.GetIndex()+1)
	}
}

// TestCheckpoint: the log goes into the bbolt file once the store is idle
// and once enough keys wait, and the file alone then has everything.
func TestCheckpoint(t *testing.T) {
	ctx := t.Context()
	path := dbPath(t)
	s := newTestStore()
	s.idleAfter, s.maxWaiting = 20*time.Millisecond, 10
	if err := s.Configure(ctx, configJSON(t, path, nil)); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	walSize := func() int64 {
		fi, err := os.Stat(path + walSuffix)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var last *pb.KVPair
	for i := range 9 {
		last = mustPut(t, s, "k"+string(rune('0'+i)), "v")
	}
	if walSize() == 0 {
		t.Fatal("the log is empty before any checkpoint")
	}
	last = mustPut(t, s, "k9", "v") // the tenth key waiting
	if walSize() != 0 {
		t.Fatal("the log is not empty after checkpointWrites keys")
	}
	mustPut(t, s, "idle", "v")
	deadline := time.Now().Add(5 * time.Second)
	for walSize() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint while idle")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The bbolt file alone has the latest revision and the keys.
	s.mu.RLock()
	err := s.db.View(func(tx *bolt.Tx) error {
		rev, err := revision(tx.Bucket(metaBucket))
		if err != nil {
			return err
		}
		if rev != last.GetIndex()+1 {
			t.Errorf("revision in the file %d, want %d", rev, last.GetIndex()+1)
		}
		if tx.Bucket(dataBucket).Get([]byte("idle")) == nil || tx.Bucket(dataBucket).Get([]byte("k0")) == nil {
			t.Error("keys missing from the file after the checkpoints")
		}
		return nil
	})
	s.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestoredFileWithNewerLog: a database file put back from a backup
// beside the log of later writes, which go on from a checkpoint the file
// does not hold, is refused with what to do, and nothing is changed; once
// the log is removed the file opens as it was backed up.
func TestRestoredFileWithNewerLog(t *testing.T) {
	ctx := t.Context()
	path := dbPath(t)
	s := newTestStore()
	if err := s.Configure(ctx, configJSON(t, path, nil)); err != nil {
		t.Fatal(err)
	}
	kept := mustPut(t, s, "k/kept", "1")
	if err := s.Close(ctx); err != nil { // a checkpoint: the file holds k/kept
		t.Fatal(err)
	}
	backup, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s = newTestStore()
	s.idleAfter, s.maxWaiting = time.Hour, 1 // a checkpoint after each write
	if err := s.Configure(ctx, configJSON(t, path, nil)); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k/later", "2") // the file moves past the backup
	s.maxWaiting = 1000
	mustPut(t, s, "k/logged", "3") // in the log only
	dir := crashCopy(t, path)
	s.Close(ctx)
	if err := os.WriteFile(dir, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	logBefore, _ := os.ReadFile(dir + walSuffix)

	r := newTestStore()
	err = r.Configure(ctx, configJSON(t, dir, nil))
	if !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), "the file was replaced (restored from a backup?)") || !strings.Contains(err.Error(), "remove "+dir+walSuffix) {
		t.Fatalf("opening a restored file beside a newer log: %v", err)
	}
	if logAfter, _ := os.ReadFile(dir + walSuffix); string(logAfter) != string(logBefore) {
		t.Fatal("the refused open changed the log")
	}
	if err := os.Remove(dir + walSuffix); err != nil {
		t.Fatal(err)
	}
	if err := r.Configure(ctx, configJSON(t, dir, nil)); err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	wantGet(t, r, kept)
	for _, k := range []string{"k/later", "k/logged"} {
		if _, err := r.Get(ctx, k); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("%s, written after the backup: %v, want sdk.ErrNotFound", k, err)
		}
	}
}
