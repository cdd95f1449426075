package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
)

// ConflictEntry records versions a rule discarded: nothing is dropped
// silently. Kept is the version the rule chose (or the merged value);
// Discarded are the others.
type ConflictEntry struct {
	Seq       uint64             `json:"seq"`
	Key       string             `json:"key"`
	Rule      string             `json:"rule"`
	Region    string             `json:"region"`
	Kept      *conflict.Version  `json:"kept,omitempty"`
	Discarded []conflict.Version `json:"discarded"`
	// At is the wall time (Unix ms) the region logged it.
	At   int64  `json:"at"`
	Note string `json:"note,omitempty"`
}

// size estimates the bytes an entry adds to a transaction (its log entry
// and index key).
func (e ConflictEntry) size() int {
	n := 256 + 2*len(e.Key) + len(e.Rule) + len(e.Note)
	if e.Kept != nil {
		n += 128 + min(len(e.Kept.Value), valueThreshold)
	}
	for _, v := range e.Discarded {
		n += 128 + min(len(v.Value), valueThreshold)
	}
	return n
}

func (s *Store) appendConflict(st *batchState, e ConflictEntry) error {
	s.cseq++
	e.Seq = s.cseq
	if e.Region == "" {
		e.Region = s.opts.Region
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode conflict %q: %w", e.Key, err)
	}
	if err := st.txn.Set(seqKey(prefixConflict, e.Seq), b); err != nil {
		return err
	}
	if err := st.txn.Set(conflictIndexKey(e.Key, e.Seq), nil); err != nil {
		return err
	}
	st.conflicts = append(st.conflicts, e)
	return s.pruneConflicts(st, e)
}

// conflictHead is what pruning needs of the oldest conflict-log entry: its
// key (for its index entry) and time. The writer caches it, so an append
// that prunes nothing reads nothing, and each entry is read once, when it
// becomes the oldest.
type conflictHead struct {
	seq     uint64
	present bool // false: no entry at seq (already deleted)
	key     string
	at      int64
}

// pruneConflicts enforces the conflict log's bounds after appending e:
// at most ConflictRetention entries, none older than ConflictMaxAge (by
// the entries' At). It drops a bounded number of the oldest entries per
// append, so the log shrinks back under its bounds as it grows.
func (s *Store) pruneConflicts(st *batchState, e ConflictEntry) error {
	maxAge := s.opts.ConflictMaxAge.Milliseconds()
	for range 16 {
		if s.cfirst >= e.Seq {
			return nil
		}
		old, err := s.oldestConflict(st.txn.raw)
		if err != nil {
			return err
		}
		overCount := e.Seq-s.cfirst >= uint64(s.opts.ConflictRetention)
		tooOld := old.present && maxAge > 0 && old.at < e.At-maxAge
		if old.present && !overCount && !tooOld {
			return nil
		}
		if old.present {
			if err := st.txn.Delete(seqKey(prefixConflict, s.cfirst)); err != nil {
				return err
			}
			if err := st.txn.Delete(conflictIndexKey(old.key, s.cfirst)); err != nil {
				return err
			}
		}
		s.cfirst++
	}
	return nil
}

// oldestConflict returns the head of the conflict log (the entry at
// cfirst), from the cache when it holds that entry. Only the key and time
// are decoded, not the entry's versions.
func (s *Store) oldestConflict(txn *badger.Txn) (conflictHead, error) {
	if s.chead != nil && s.chead.seq == s.cfirst {
		return *s.chead, nil
	}
	h := conflictHead{seq: s.cfirst}
	item, err := txn.Get(seqKey(prefixConflict, s.cfirst))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return h, fmt.Errorf("read conflict %d: %w", s.cfirst, err)
	default:
		var head struct {
			Key string `json:"key"`
			At  int64  `json:"at"`
		}
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &head) }); err != nil {
			return h, fmt.Errorf("decode conflict %d: %w", s.cfirst, err)
		}
		h.present, h.key, h.at = true, head.Key, head.At
	}
	s.chead = &h
	return h, nil
}

func (s *Store) readConflict(txn *badger.Txn, seq uint64) (ConflictEntry, bool, error) {
	var e ConflictEntry
	item, err := txn.Get(seqKey(prefixConflict, seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return e, false, nil
	}
	if err != nil {
		return e, false, err
	}
	err = item.Value(func(v []byte) error { return json.Unmarshal(v, &e) })
	return e, err == nil, err
}

// Conflicts returns up to limit conflict-log entries, newest first, for one
// key or (key == "") for all keys. The log reflects every change committed
// before the call: Conflicts first waits for the observer to take them
// (observe.go), and fails with ErrObserving if they still wait after
// ObserveWait.
func (s *Store) Conflicts(key string, limit int) ([]ConflictEntry, error) {
	if err := s.WaitObserved(); err != nil {
		return nil, fmt.Errorf("read conflicts: %w", err)
	}
	out := []ConflictEntry{}
	err := s.view(func(txn *badger.Txn) error {
		read := func(seq uint64) error {
			e, ok, err := s.readConflict(txn, seq)
			if ok {
				out = append(out, e)
			}
			return err
		}
		if key == "" {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixConflict, Reverse: true})
			defer it.Close()
			for it.Seek(seqKey(prefixConflict, math.MaxUint64)); it.Valid() && len(out) < limit; it.Next() {
				if err := read(seqFromKey(prefixConflict, it.Item().Key())); err != nil {
					return err
				}
			}
			return nil
		}
		p := conflictIndexPrefix(key)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p, Reverse: true})
		defer it.Close()
		for it.Seek(conflictIndexKey(key, math.MaxUint64)); it.Valid() && len(out) < limit; it.Next() {
			if err := read(seqFromKey(p, it.Item().Key())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read conflicts: %w", err)
	}
	return out, nil
}
