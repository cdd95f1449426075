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
// (GET /v1/watch) reads: every record change this region commits, a local
// write or a replicated event that changed the record, has a position that
// grows by one per change in commit order. A commit's changes are written
// as one entry, keyed by the position of its first change and holding each
// change's key and dot (origin actor and counter), in the same transaction
// as the changes: the log has exactly the committed changes, in the order
// they were applied, across crashes. A reader takes each key's record from
// the same snapshot. So a commit adds one small entry however many changes
// it makes (a group of writes, a batch of replicated events), and encodes
// no record twice.
//
// Retention is by count (Options.FeedRetention): once the log holds more
// than the retention plus an eighth, a commit deletes whole entries from
// the oldest (at most maxFeedPrunePerCommit of them) as long as at least
// the retention is left. The newest entry is never deleted, so Open finds
// the last position again and positions never repeat.

var prefixChange = []byte("f/")

// DefaultFeedRetention is the number of change-log entries kept when
// Options.FeedRetention is 0.
const DefaultFeedRetention = 1_000_000

// maxFeedPrunePerCommit bounds the entries one commit deletes.
const maxFeedPrunePerCommit = 1024

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

// decodeChangeEntry decodes one change that appendChangeEntry wrote at the
// start of b and returns its length. The strings are copies.
func decodeChangeEntry(pos uint64, b []byte) (key, origin string, oseq uint64, n int, err error) {
	rest := b
	str := func() (string, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return "", false
		}
		s := string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
		return s, true
	}
	var ok bool
	if key, ok = str(); !ok {
		return "", "", 0, 0, fmt.Errorf("change %d: %w", pos, errCorruptChange)
	}
	if origin, ok = str(); !ok {
		return "", "", 0, 0, fmt.Errorf("change %d: %w", pos, errCorruptChange)
	}
	oseq, k := binary.Uvarint(rest)
	if k <= 0 {
		return "", "", 0, 0, fmt.Errorf("change %d: %w", pos, errCorruptChange)
	}
	return key, origin, oseq, len(b) - len(rest) + k, nil
}

// feedRetention returns the configured retention, defaults applied.
func (s *Store) feedRetention() uint64 {
	if s.opts.FeedRetention <= 0 {
		return DefaultFeedRetention
	}
	return uint64(s.opts.FeedRetention)
}

// decodeChangeGroup decodes the entry of the commit whose first change is
// at first, calling fn for each change in order (strings are copies).
func decodeChangeGroup(first uint64, b []byte, fn func(pos uint64, key, origin string, oseq uint64) error) error {
	pos := first
	for len(b) > 0 {
		key, origin, oseq, n, err := decodeChangeEntry(pos, b)
		if err != nil {
			return err
		}
		if err := fn(pos, key, origin, oseq); err != nil {
			return err
		}
		b = b[n:]
		pos++
	}
	if pos == first {
		return fmt.Errorf("change %d: %w: no change in the entry", first, errCorruptChange)
	}
	return nil
}

// loadFeed derives the change log's last and oldest positions at Open.
func (s *Store) loadFeed(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChange, Reverse: true})
	it.Seek(changeKey(math.MaxUint64))
	if it.Valid() {
		first := seqFromKey(prefixChange, it.Item().Key())
		err := it.Item().Value(func(v []byte) error {
			return decodeChangeGroup(first, v, func(pos uint64, _, _ string, _ uint64) error {
				s.fseq = pos
				return nil
			})
		})
		if err != nil {
			it.Close()
			return fmt.Errorf("change log: %w", err)
		}
	}
	it.Close()
	s.ffirst = s.fseq + 1
	it = txn.NewIterator(badger.IteratorOptions{Prefix: prefixChange})
	defer it.Close()
	if it.Rewind(); it.Valid() {
		s.ffirst = seqFromKey(prefixChange, it.Item().Key())
	}
	s.feedHead.Store(s.fseq)
	s.feedOldest.Store(s.ffirst)
	return nil
}

// logChange adds the change of key to the version (origin, oseq) to the
// batch's change-log entry (written by commitFeed).
func (s *Store) logChange(st *batchState, key, origin string, oseq uint64) {
	s.fseq++
	if st.feed == nil {
		st.feed = make([]byte, 0, 64+len(key)+len(origin))
	}
	st.feed = appendChangeEntry(st.feed, key, origin, oseq)
}

// commitFeed writes the batch's change-log entry, if it made changes, and
// prunes the log beyond its retention, in the writer's transaction.
func (s *Store) commitFeed(st *batchState) error {
	if len(st.feed) == 0 {
		return nil
	}
	if err := st.txn.Set(changeKey(st.fseq+1), st.feed); err != nil {
		return fmt.Errorf("change log %d: %w", st.fseq+1, err)
	}
	keep := s.feedRetention()
	if s.fseq-s.ffirst+1 <= keep+max(keep/8, 1) {
		return nil
	}
	// Entries are deleted whole, oldest first, while the newest keep
	// changes stay: an entry is kept when a change at or after fseq-keep+1
	// is in it. Its end is where the next entry begins.
	it := st.txn.NewIterator(badger.IteratorOptions{Prefix: prefixChange})
	defer it.Close()
	it.Seek(changeKey(s.ffirst))
	if !it.Valid() {
		return nil
	}
	cur := it.Item().KeyCopy(nil)
	for n := 0; n < maxFeedPrunePerCommit; n++ {
		it.Next()
		if !it.Valid() {
			return nil // cur is the newest entry
		}
		next := seqFromKey(prefixChange, it.Item().Key())
		if s.fseq-next+1 < keep {
			return nil
		}
		if err := st.txn.Delete(cur); err != nil {
			return fmt.Errorf("prune change log %d: %w", s.ffirst, err)
		}
		s.ffirst = next
		cur = it.Item().KeyCopy(nil) // a new slice: the transaction keeps the deleted one
	}
	return nil
}

// FeedHead returns the position of the newest committed change (0 when
// none). It never decreases while the store is open.
func (s *Store) FeedHead() uint64 { return s.feedHead.Load() }

// FeedWait returns the newest committed position and, when it is not past
// after, a channel that is closed after the next commit (which may or may
// not add a change: check FeedHead again). It never blocks.
func (s *Store) FeedWait(after uint64) (head uint64, next <-chan struct{}) {
	if head = s.feedHead.Load(); head > after {
		return head, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Checked again under the lock: a commit stores feedHead before
	// exposeApplied (which takes s.mu), so it cannot slip in between.
	if head = s.feedHead.Load(); head > after {
		return head, nil
	}
	s.waiters = true
	return head, s.changed
}

// maxFeedReadBytes bounds the values one ReadFeed returns (a page ends
// after the change whose record passes it).
const maxFeedReadBytes = 4 << 20

// ReadFeed returns the changes after position after whose key starts with
// prefix, looking at no more than max changes and ending the page once the
// records returned hold more than 4 MiB of values, with each key's record
// from the same snapshot. It fails with a *PositionGoneError when the change
// right after after was pruned (the caller missed changes and must re-read
// what it follows), and with ErrPositionAhead when after is beyond the
// newest position.
func (s *Store) ReadFeed(after uint64, prefix string, max int) (FeedPage, error) {
	page := FeedPage{Next: after}
	head := s.feedHead.Load()
	switch {
	case after > head:
		return page, fmt.Errorf("read changes after %d: %w (newest %d)", after, ErrPositionAhead, head)
	case after == head:
		return page, nil
	case after+1 < s.feedOldest.Load():
		return page, fmt.Errorf("read changes: %w", &PositionGoneError{After: after, Oldest: s.feedOldest.Load()})
	}
	errStop := errors.New("page full")
	err := s.view(func(txn *badger.Txn) error {
		// The entry holding after+1 is the last one at or before it.
		rev := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChange, Reverse: true})
		rev.Seek(changeKey(after + 1))
		start := after + 1
		if rev.Valid() {
			start = seqFromKey(prefixChange, rev.Item().Key())
		}
		rev.Close()
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChange, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		records := map[string]FeedEntry{} // the records this read took, by key
		bytes := 0                        // their values' size
		first := true
		for it.Seek(changeKey(start)); it.Valid(); it.Next() {
			group := seqFromKey(prefixChange, it.Item().Key())
			if first && group > after+1 {
				return &PositionGoneError{After: after, Oldest: group} // pruned meanwhile
			}
			first = false
			err := it.Item().Value(func(v []byte) error {
				return decodeChangeGroup(group, v, func(pos uint64, key, origin string, oseq uint64) error {
					if pos <= after {
						return nil
					}
					if max == 0 || bytes > maxFeedReadBytes {
						return errStop
					}
					max--
					page.Next = pos
					if !strings.HasPrefix(key, prefix) {
						return nil
					}
					e, ok := records[key]
					if !ok {
						var err error
						if e.Record, e.Found, err = getRecord(txn, key); err != nil {
							return err
						}
						records[key] = e
						for _, v := range e.Record.Versions {
							bytes += len(v.Value)
						}
					}
					e.Pos, e.Key, e.Origin, e.OSeq = pos, key, origin, oseq
					page.Entries = append(page.Entries, e)
					return nil
				})
			})
			if err != nil {
				return err
			}
		}
		if first {
			// Nothing at or after after+1 though after < FeedHead: every
			// entry from there was pruned meanwhile (the newest never is).
			return &PositionGoneError{After: after, Oldest: s.feedOldest.Load()}
		}
		return nil
	})
	var gone *PositionGoneError
	switch {
	case errors.Is(err, errStop):
	case errors.As(err, &gone):
		return FeedPage{Next: after}, fmt.Errorf("read changes: %w", err)
	case err != nil:
		return FeedPage{Next: after}, fmt.Errorf("read changes after %d: %w", after, err)
	}
	return page, nil
}

// FeedOldest returns the oldest position the change log still holds (one
// past the newest when it is empty). It never decreases.
func (s *Store) FeedOldest() uint64 { return s.feedOldest.Load() }
