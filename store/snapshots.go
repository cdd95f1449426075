package store

import (
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// The store runs Badger in managed mode (badger.OpenManaged): it picks the
// timestamps of Badger's multi-version transactions itself. It can, because
// it is Badger's only writer (one writer role commits at a time, see
// writer.go), and it gains by it: Badger's own timestamp oracle, built to
// order concurrent writers, costs every commit several hand-offs to its two
// watermark goroutines, about a third of a small commit's time on these
// machines. Here the writer commits at the last commit's timestamp plus one
// and then exposes it; a read sees exactly the commits exposed before it
// began.

// snapshots hands out read timestamps and tracks the ones in use, so that
// Badger's compactions never discard a version an open read may still
// need, and so that Badger is closed only once no read is open. Safe for
// concurrent use.
type snapshots struct {
	mu sync.Mutex
	// visible is the newest exposed commit timestamp: what a read that
	// begins now sees.
	visible uint64
	// open counts the reads in progress at each read timestamp.
	open map[uint64]int
	// discard is the last value given to Badger's SetDiscardTs.
	discard uint64
	// closed refuses new reads; drained is signalled when the last open
	// read ends.
	closed  bool
	drained *sync.Cond
}

func newSnapshots(visible uint64) *snapshots {
	s := &snapshots{visible: visible, discard: visible, open: map[uint64]int{}}
	s.drained = sync.NewCond(&s.mu)
	return s
}

// acquire returns the timestamp a new read runs at (every commit exposed
// so far, nothing after) and keeps it from being discarded until release.
// It fails (false) once close has begun.
func (s *snapshots) acquire() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false
	}
	ts := s.visible
	s.open[ts]++
	return ts, true
}

// release ends a read that acquire started at ts.
func (s *snapshots) release(ts uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[ts]--; s.open[ts] <= 0 {
		delete(s.open, ts)
	}
	if s.closed && len(s.open) == 0 {
		s.drained.Broadcast()
	}
}

// close refuses new reads and waits until every open read has ended.
// Idempotent.
func (s *snapshots) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for len(s.open) > 0 {
		s.drained.Wait()
	}
}

// latest returns the newest commit timestamp, for the writer's own
// transaction: it reads the state every earlier commit left, and nothing
// commits meanwhile. Only the writer may call it.
func (s *snapshots) latest() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.visible
}

// expose makes the commit at ts (newer than every earlier one) visible to
// reads that begin from now on. It returns the timestamp at or below which
// Badger may now discard versions shadowed by a newer one (the oldest open
// read, else ts) and whether that moved since the last call.
func (s *snapshots) expose(ts uint64) (discard uint64, moved bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.visible = ts
	discard = ts
	for open := range s.open {
		discard = min(discard, open)
	}
	moved = discard > s.discard
	s.discard = max(s.discard, discard)
	return s.discard, moved
}

// view runs fn in a read-only Badger transaction on a snapshot of every
// commit exposed before it began. Once Close has begun it returns
// ErrClosed; Close closes Badger only after every view has returned. Once
// the storage failed it returns ErrStorageFailed (see storage.go).
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	if st := s.health.get(); st.State == StorageFailed {
		return st.refusal()
	}
	if s.copying.Load() {
		return ErrCopying
	}
	ts, ok := s.snaps.acquire()
	if !ok {
		return ErrClosed
	}
	defer s.snaps.release(ts)
	txn := s.db.NewTransactionAt(ts, false)
	defer txn.Discard()
	return fn(txn)
}

// beginCommit opens the writer's read-write transaction on the newest
// state. Only the writer may call it; commit ends it.
func (s *Store) beginCommit() *badger.Txn {
	return s.db.NewTransactionAt(s.snaps.latest(), true)
}

// commit commits the writer's transaction at the next timestamp and, once
// Badger has it (synced when Options.Sync is set), exposes it to reads.
// A failed commit is not exposed: Badger may have applied part of it to
// its memtable, and reads must not see half a transaction. The next commit
// takes a newer timestamp all the same (lastTs), so versions a failed commit
// left behind stay below it and are shadowed by what later commits write.
func (s *Store) commit(txn *badger.Txn) error {
	ts := max(txn.ReadTs(), s.lastTs) + 1
	s.lastTs = ts
	if err := txn.CommitAt(ts, nil); err != nil {
		s.merkle.pending = s.merkle.pending[:0]
		return fmt.Errorf("commit at %d: %w", ts, err)
	}
	// The digest tree takes the commit's changes as the commit becomes
	// visible, so that a read timestamp and the tree agree (merkle.go).
	s.merkle.mu.Lock()
	s.merkle.applyPendingLocked()
	s.merkle.oseq = s.oseq
	discard, moved := s.snaps.expose(ts)
	s.merkle.mu.Unlock()
	if moved {
		s.db.SetDiscardTs(discard)
	}
	return nil
}
