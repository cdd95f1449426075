package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// Node copies. A node that joins its region, or whose region log no
// longer holds the entries after its position, is seeded with a copy of
// the leader's store: every key, at one read timestamp, in the snapshot
// stream format (snapshot.go) with a header marked Copy that names the
// region-log position the copy holds. The node replaces its store with the
// copy (LoadCopy) and follows the log from that position.

// WriteCopy writes a copy of the store to w: every key and value at one
// read timestamp, with the region-log position that state holds. It
// streams as it scans and stops with ctx.
func (s *Store) WriteCopy(ctx context.Context, w io.Writer) (SnapshotInfo, error) {
	if st := s.health.get(); st.State == StorageFailed {
		return SnapshotInfo{}, st.refusal()
	}
	if s.copying.Load() {
		return SnapshotInfo{}, fmt.Errorf("write copy: %w", ErrCopying)
	}
	ts, ok := s.snaps.acquire()
	if !ok {
		return SnapshotInfo{}, ErrClosed
	}
	defer s.snaps.release(ts)
	txn := s.db.NewTransactionAt(ts, false)
	defer txn.Discard()
	hdr := SnapshotHeader{Format: SnapshotFormat, Region: s.opts.Region, TakenAt: s.opts.Clock.Now().Wall, Copy: true}
	if item, err := txn.Get(keyActor); err == nil {
		v, err := item.ValueCopy(nil)
		if err != nil {
			return SnapshotInfo{}, fmt.Errorf("write copy: %w", err)
		}
		hdr.Actor = string(v)
	}
	if item, err := txn.Get(keyLogPos); err == nil {
		err := item.Value(func(v []byte) error {
			if len(v) == 16 {
				hdr.LogSeq, hdr.LogTerm = decodeLogPos(v)
			}
			return nil
		})
		if err != nil {
			return SnapshotInfo{}, fmt.Errorf("write copy: %w", err)
		}
	}
	sw := newSnapshotWriter(w)
	info := SnapshotInfo{Header: hdr}
	if err := sw.header(hdr); err != nil {
		return info, err
	}
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return info, err
		}
		key := it.Item().Key()
		if bytes.Equal(key, keyCopying) {
			continue
		}
		err := it.Item().Value(func(v []byte) error {
			info.Records++
			return sw.record(key, v)
		})
		if err != nil {
			return info, fmt.Errorf("write copy %q: %w", key, err)
		}
	}
	if err := sw.end(); err != nil {
		return info, err
	}
	info.Bytes = sw.n
	return info, nil
}

// LoadCopy replaces a following store's contents with a copy of its
// region's leader (WriteCopy), read from r: it drops every key, loads the
// copy's in transactions of its own, and rebuilds the in-memory state as
// Open does. Reads meanwhile fail with ErrCopying; a load cut off (a
// crash, a broken stream) leaves the store marked, so that the node loads
// a copy again before it serves. It returns the copy's header.
func (s *Store) LoadCopy(ctx context.Context, r io.Reader) (SnapshotInfo, error) {
	if s.Role() != Following {
		return SnapshotInfo{}, fmt.Errorf("load copy: the store is %s, not a follower", s.Role())
	}
	sr, err := NewSnapshotReader(r)
	if err != nil {
		return SnapshotInfo{}, err
	}
	hdr := sr.Header()
	if !hdr.Copy {
		return SnapshotInfo{Header: hdr}, fmt.Errorf("load copy: %w: a region snapshot, not a copy of a node's store", ErrSnapshot)
	}
	if hdr.Region != s.opts.Region {
		return SnapshotInfo{Header: hdr}, fmt.Errorf("load copy: a copy of region %q, not %q", hdr.Region, s.opts.Region)
	}
	req := requestPool.Get().(*request)
	req.control = &controlRequest{load: &loadRequest{ctx: ctx, sr: sr}}
	_, err = s.submit(ctx, req)
	return SnapshotInfo{Header: hdr, Records: sr.Records(), Bytes: sr.Bytes()}, err
}

type loadRequest struct {
	ctx context.Context
	sr  *SnapshotReader
}

// loadCopy runs a LoadCopy in the writer, as a turn of its own.
func (s *Store) loadCopy(lr *loadRequest) error {
	s.copying.Store(true)
	if err := s.db.DropAll(); err != nil {
		return fmt.Errorf("load copy: drop the old contents: %w", err)
	}
	// The marker first, in a commit of its own: a load cut off anywhere
	// leaves it.
	txn := s.beginCommit()
	defer func() { txn.Discard() }()
	if err := txn.Set(keyCopying, []byte{1}); err != nil {
		return err
	}
	if err := s.commit(txn); err != nil {
		return fmt.Errorf("load copy: %w", err)
	}
	txn.Discard()
	txn = s.beginCommit()
	size := 0
	for {
		if err := lr.ctx.Err(); err != nil {
			return err
		}
		key, value, err := lr.sr.NextRaw()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("load copy: %w", err)
		}
		if bytes.Equal(key, keyCopying) {
			continue
		}
		if err := txn.Set(bytes.Clone(key), bytes.Clone(value)); err != nil {
			return fmt.Errorf("load copy: %w", err)
		}
		if size += len(key) + min(len(value), valueThreshold) + 64; size >= s.batchBytes {
			if err := s.commit(txn); err != nil {
				return fmt.Errorf("load copy: %w", err)
			}
			txn.Discard()
			txn, size = s.beginCommit(), 0
		}
	}
	if err := txn.Delete(keyCopying); err != nil {
		return err
	}
	if err := s.commit(txn); err != nil {
		return fmt.Errorf("load copy: %w", err)
	}
	return s.reload()
}

// reload rebuilds the in-memory state from the stored keys, as Open does:
// after LoadCopy replaced them. The writer's.
func (s *Store) reload() error {
	s.seq, s.oseq, s.cseq, s.trimmed, s.cfirst = 0, 0, 0, 0, 0
	s.fseq, s.ffirst = 0, 0
	s.chead = nil
	s.wm = map[string]uint64{}
	s.mu.Lock()
	s.applied = nil
	s.mu.Unlock()
	s.copying.Store(false)
	if err := s.load(); err != nil {
		return fmt.Errorf("load copy: %w", err)
	}
	keys, err := newKeyFilter(s.view, s.keyFilterMin())
	if err != nil {
		return fmt.Errorf("load copy: key filter: %w", err)
	}
	s.keys = keys
	s.feedOldest.Store(s.ffirst)
	s.feedHead.Store(s.fseq)
	s.suspectMu.Lock()
	clear(s.suspects)
	s.suspectMu.Unlock()
	t := s.merkle
	t.mu.Lock()
	for _, l := range t.levels {
		clear(l)
	}
	t.ready = false
	t.mu.Unlock()
	if _, err := s.Scrub(); err != nil {
		return fmt.Errorf("load copy: digest tree: %w", err)
	}
	return nil
}
