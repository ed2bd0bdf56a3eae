package boltstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The write-ahead log makes a commit durable with one fdatasync of an
// append, where a bbolt commit takes two (its pages, then its meta page).
// Every committed write is appended to the log, synced, and kept in
// memory (Store.ov); a checkpoint later applies everything the log holds
// to the bbolt file in one ordinary, synced bbolt transaction and empties
// the log. The bbolt file thus only ever holds whole, synced checkpoints,
// and after a crash it and the log's records past its revision together
// are every write that was acknowledged.
//
// A record is
//
//	u32 length of the payload | u32 CRC-32C of the payload | payload
//
// and its payload
//
//	u64 revision | u32 count | count × change
//	change: u8 kind (1 put, 2 delete) | u32 key length | key
//	        [put only: u32 value length | value]
//
// A record cut short or failing its checksum — a crash in the middle of
// an append, which was never acknowledged — ends the log; opening the log
// cuts it off there.

// walSuffix names the log after the database file: store.db.wal.
const walSuffix = ".wal"

const (
	changePut = 1
	changeDel = 2
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// change is the new state of one key in a record.
type change struct {
	key     string
	value   []byte
	deleted bool
}

// record is one commit: its revision and the keys it changed.
type record struct {
	rev     uint64
	changes []change
}

// wal is the log file. It is not safe for concurrent use: the Store
// writes it under wmu.
type wal struct {
	f      *os.File
	size   int64
	noSync bool
	buf    []byte
}

// openWAL opens (creating it if needed) the log at path and returns it
// with the records it holds, the torn tail of a crashed append cut off.
func openWAL(path string, noSync bool) (*wal, []record, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", path, err)
	}
	w := &wal{f: f, noSync: noSync}
	recs, end, err := readRecords(f)
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && fi.Size() != end {
			// Never acknowledged: its writer crashed before the sync
			// returned.
			if err = f.Truncate(end); err == nil {
				err = w.sync()
			}
		}
	}
	if err == nil {
		// The log must not vanish with its directory entry.
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	w.size = end
	return w, recs, nil
}

// readRecords reads whole, intact records from the start of f and returns
// them with the offset just past the last one.
func readRecords(f *os.File) ([]record, int64, error) {
	r := bufio.NewReader(io.NewSectionReader(f, 0, 1<<62))
	var recs []record
	var end int64
	var head [8]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return recs, end, nil // end of the log, or a torn header
		}
		n, sum := binary.BigEndian.Uint32(head[:4]), binary.BigEndian.Uint32(head[4:])
		if n > maxRecord {
			return recs, end, nil
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil || crc32.Checksum(payload, crcTable) != sum {
			return recs, end, nil
		}
		rec, err := decodeRecord(payload)
		if err != nil {
			return recs, end, nil
		}
		recs = append(recs, rec)
		end += int64(len(head)) + int64(n)
	}
}

// maxRecord bounds a record's payload: more than a Txn can write.
const maxRecord = 1 << 30

// append writes rec at the end of the log and, unless noSync, waits until
// it is on disk. After a failure the log is as before.
func (w *wal) append(rec record) error {
	w.buf = encodeRecord(w.buf[:0], rec)
	if _, err := w.f.Write(w.buf); err != nil {
		w.rewind()
		return fmt.Errorf("appending to the write-ahead log: %w", err)
	}
	if err := w.sync(); err != nil {
		w.rewind()
		return fmt.Errorf("syncing the write-ahead log: %w", err)
	}
	w.size += int64(len(w.buf))
	return nil
}

// rewind cuts off what a failed append may have left.
func (w *wal) rewind() { _ = w.f.Truncate(w.size) }

// reset empties the log once a checkpoint has put its records in the
// database. A failure leaves records the database already has, which
// opening skips.
func (w *wal) reset() error {
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	w.size = 0
	return w.sync()
}

func (w *wal) sync() error {
	if w.noSync {
		return nil
	}
	return unix.Fdatasync(int(w.f.Fd()))
}

func (w *wal) close() error { return w.f.Close() }

func encodeRecord(b []byte, rec record) []byte {
	b = append(b, make([]byte, 8)...) // length and checksum, below
	b = binary.BigEndian.AppendUint64(b, rec.rev)
	b = binary.BigEndian.AppendUint32(b, uint32(len(rec.changes)))
	for _, c := range rec.changes {
		kind := byte(changePut)
		if c.deleted {
			kind = changeDel
		}
		b = append(b, kind)
		b = binary.BigEndian.AppendUint32(b, uint32(len(c.key)))
		b = append(b, c.key...)
		if !c.deleted {
			b = binary.BigEndian.AppendUint32(b, uint32(len(c.value)))
			b = append(b, c.value...)
		}
	}
	payload := b[8:]
	binary.BigEndian.PutUint32(b[:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[4:8], crc32.Checksum(payload, crcTable))
	return b
}

var errBadRecord = errors.New("malformed write-ahead log record")

func decodeRecord(p []byte) (record, error) {
	var rec record
	if len(p) < 12 {
		return rec, errBadRecord
	}
	rec.rev = binary.BigEndian.Uint64(p)
	n := binary.BigEndian.Uint32(p[8:])
	p = p[12:]
	field := func() ([]byte, bool) {
		if len(p) < 4 {
			return nil, false
		}
		l := binary.BigEndian.Uint32(p)
		if uint64(len(p)-4) < uint64(l) {
			return nil, false
		}
		f := p[4 : 4+l]
		p = p[4+l:]
		return f, true
	}
	for range n {
		if len(p) < 1 {
			return rec, errBadRecord
		}
		kind := p[0]
		p = p[1:]
		key, ok := field()
		if !ok {
			return rec, errBadRecord
		}
		c := change{key: string(key)}
		switch kind {
		case changePut:
			v, ok := field()
			if !ok {
				return rec, errBadRecord
			}
			c.value = append([]byte{}, v...)
		case changeDel:
			c.deleted = true
		default:
			return rec, errBadRecord
		}
		rec.changes = append(rec.changes, c)
	}
	if len(p) != 0 {
		return rec, errBadRecord
	}
	return rec, nil
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
