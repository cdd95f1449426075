package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
)

// The change log (key space f/<pos:8>) is what the change feed
// (GET /v1/watch) reads: one entry per record change this region
// committed, a local write or a replicated event that changed the record,
// at a position that grows by one per change in commit order. An entry is
// written in the same transaction as the change it names, so the log has
// exactly the committed changes, in the order they were applied, across
// crashes. It holds only the key and the change's dot (origin actor and
// counter): a reader takes the key's record from the same snapshot, so the
// writer adds one small entry per change and no encoding of the record.
//
// Retention is by count (Options.FeedRetention): each commit deletes the
// entries that fell out of it, a bounded number per commit, so the log never
// holds many more than that. The newest entry is never deleted, so Open
// finds the last position again and positions never repeat.

var prefixChange = []byte("f/")

// DefaultFeedRetention is the number of change-log entries kept when
// Options.FeedRetention is 0.
const DefaultFeedRetention = 1_000_000

// maxFeedPrunePerCommit bounds the entries one commit deletes: the writer's
// extra work per commit stays proportional to what the commit added.
const maxFeedPrunePerCommit = 4096

// ErrPositionGone is returned, wrapped in a *PositionGoneError, for a read
// of the change log after a position older than the log retains: the
// changes right after it were pruned.
var ErrPositionGone = errors.New("change-log position no longer retained")

// ErrPositionAhead is returned, wrapped, for a read after a position this
// store's change log has not reached: the position came from another
// region's log or from a store since replaced (restored from empty).
var ErrPositionAhead = errors.New("change-log position beyond this region's log")

// PositionGoneError says which positions a read asked for and the oldest
// the log still holds.
type PositionGoneError struct {
	After  uint64 // the position the read resumes after
	Oldest uint64 // the oldest position retained
}

func (e *PositionGoneError) Error() string {
	return fmt.Sprintf("%v: asked for changes after %d, the oldest retained is %d", ErrPositionGone, e.After, e.Oldest)
}

// Unwrap makes errors.Is(err, ErrPositionGone) hold.
func (e *PositionGoneError) Unwrap() error { return ErrPositionGone }

// FeedEntry is one change of the change log, with the key's record as the
// snapshot that read it holds (at or after the change).
type FeedEntry struct {
	// Pos is the change's position in this region's log: from 1, one more
	// per change, in the order the changes were committed.
	Pos uint64
	Key string
	// Origin is the actor that made the version the change concerns
	// (this region's actor for a local write); OSeq is that version's
	// counter, its position in the origin's own log. Per origin, OSeq
	// grows with Pos.
	Origin string
	OSeq   uint64
	// Record is the key's record when the entry was read: it shows the
	// change and whatever changed the key after it, never an older state.
	// Found is false when the key has no record (never, unless records
	// are someday removed).
	Record conflict.Record
	Found  bool
}

// Dot returns the version the change concerns.
func (e FeedEntry) Dot() conflict.Dot { return conflict.Dot{Actor: e.Origin, Counter: e.OSeq} }

// FeedPage is one read of the change log.
type FeedPage struct {
	// Entries are the changes after the read's position whose key has the
	// prefix, in position order.
	Entries []FeedEntry
	// Next is the position the read looked at last (matching or not): the
	// next read resumes after it. It equals the read's position when
	// nothing was there.
	Next uint64
}

func changeKey(pos uint64) []byte { return seqKey(prefixChange, pos) }

// appendChangeEntry encodes a change-log entry: the key, then the origin
// actor, then the counter.
func appendChangeEntry(b []byte, key, origin string, oseq uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(origin)))
	b = append(b, origin...)
	return binary.AppendUvarint(b, oseq)
}

var errCorruptChange = errors.New("corrupt change-log entry")

// decodeChangeEntry decodes what appendChangeEntry wrote. The strings are
// copies.
func decodeChangeEntry(pos uint64, b []byte) (key, origin string, oseq uint64, err error) {
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	var ok bool
	if key, ok = str(); !ok {
		return "", "", 0, fmt.Errorf("change %d: %w", pos, errCorruptChange)
	}
	if origin, ok = str(); !ok {
		return "", "", 0, fmt.Errorf("change %d: %w", pos, errCorruptChange)
	}
	oseq, k := binary.Uvarint(b)
	if k <= 0 || k != len(b) {
		return "", "", 0, fmt.Errorf("change %d: %w", pos, errCorruptChange)
	}
	return key, origin, oseq, nil
}

// feedRetention returns the configured retention, defaults applied.
func (s *Store) feedRetention() uint64 {
	if s.opts.FeedRetention <= 0 {
		return DefaultFeedRetention
	}
	return uint64(s.opts.FeedRetention)
}

// loadFeed derives the change log's last and oldest positions at Open.
func (s *Store) loadFeed(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChange, Reverse: true})
	it.Seek(changeKey(math.MaxUint64))
	if it.Valid() {
		s.fseq = seqFromKey(prefixChange, it.Item().Key())
	}
	it.Close()
	s.ffirst = s.fseq + 1
	it = txn.NewIterator(badger.IteratorOptions{Prefix: prefixChange})
	defer it.Close()
	if it.Rewind(); it.Valid() {
		s.ffirst = seqFromKey(prefixChange, it.Item().Key())
	}
	s.fcommitted.Store(s.fseq)
	return nil
}

// logChange appends the change of key to the version (origin, oseq) to the
// change log, in the writer's transaction.
func (s *Store) logChange(st *batchState, key, origin string, oseq uint64) error {
	s.fseq++
	v := appendChangeEntry(make([]byte, 0, len(key)+len(origin)+12), key, origin, oseq)
	if err := st.txn.Set(changeKey(s.fseq), v); err != nil {
		return fmt.Errorf("change log %d: %w", s.fseq, err)
	}
	return nil
}

// pruneFeed deletes, in the writer's transaction, the entries beyond the
// retention, oldest first, at most maxFeedPrunePerCommit of them.
func (s *Store) pruneFeed(st *batchState) error {
	keep := s.feedRetention()
	for n := 0; s.fseq-s.ffirst+1 > keep && n < maxFeedPrunePerCommit; n++ {
		if err := st.txn.Delete(changeKey(s.ffirst)); err != nil {
			return fmt.Errorf("prune change log %d: %w", s.ffirst, err)
		}
		s.ffirst++
	}
	return nil
}

// FeedHead returns the position of the newest committed change (0 when
// none). It never decreases while the store is open.
func (s *Store) FeedHead() uint64 { return s.fcommitted.Load() }

// FeedWait returns the newest committed position and, when it is not past
// after, a channel that is closed after the next commit (which may or may
// not add a change: check FeedHead again). It never blocks.
func (s *Store) FeedWait(after uint64) (head uint64, next <-chan struct{}) {
	if head = s.fcommitted.Load(); head > after {
		return head, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Checked again under the lock: a commit stores fcommitted before it
	// publishes (which takes s.mu), so it cannot slip in between.
	if head = s.fcommitted.Load(); head > after {
		return head, nil
	}
	s.waiters = true
	return head, s.changed
}

// ReadFeed returns the changes after position after whose key starts with
// prefix, looking at no more than max entries, with each key's record from
// the same snapshot. It fails with a *PositionGoneError when the entry
// right after after was pruned (the caller missed changes and must re-read
// what it follows), and with ErrPositionAhead when after is beyond the
// newest position.
func (s *Store) ReadFeed(after uint64, prefix string, max int) (FeedPage, error) {
	page := FeedPage{Next: after}
	if head := s.fcommitted.Load(); after > head {
		return page, fmt.Errorf("read changes after %d: %w (newest %d)", after, ErrPositionAhead, head)
	}
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChange, PrefetchValues: true, PrefetchSize: 128})
		defer it.Close()
		records := map[string]FeedEntry{} // the records this read took, by key
		first := true
		for it.Seek(changeKey(after + 1)); it.Valid() && max > 0; it.Next() {
			pos := seqFromKey(prefixChange, it.Item().Key())
			if first && pos != after+1 {
				return &PositionGoneError{After: after, Oldest: pos}
			}
			first = false
			max--
			page.Next = pos
			var key, origin string
			var oseq uint64
			err := it.Item().Value(func(v []byte) error {
				var err error
				key, origin, oseq, err = decodeChangeEntry(pos, v)
				return err
			})
			if err != nil {
				return err
			}
			if !strings.HasPrefix(key, prefix) {
				continue
			}
			e, ok := records[key]
			if !ok {
				if e.Record, e.Found, err = getRecord(txn, key); err != nil {
					return err
				}
				records[key] = e
			}
			e.Pos, e.Key, e.Origin, e.OSeq = pos, key, origin, oseq
			page.Entries = append(page.Entries, e)
		}
		// Nothing after `after` means it is the newest position: the
		// newest entry is never pruned, and the snapshot holds every
		// commit up to FeedHead (a commit is published before it stores
		// fcommitted).
		return nil
	})
	var gone *PositionGoneError
	if errors.As(err, &gone) {
		return page, fmt.Errorf("read changes: %w", err)
	}
	if err != nil {
		return page, fmt.Errorf("read changes after %d: %w", after, err)
	}
	return page, nil
}

// FeedOldest returns the oldest position the change log may still hold
// (one past the newest when it is empty).
func (s *Store) FeedOldest() uint64 {
	oldest := uint64(0)
	s.view(func(txn *badger.Txn) error { //nolint:errcheck // 0 when closed
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChange})
		defer it.Close()
		if it.Rewind(); it.Valid() {
			oldest = seqFromKey(prefixChange, it.Item().Key())
		} else {
			oldest = s.fcommitted.Load() + 1
		}
		return nil
	})
	return oldest
}
