package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Values of valueThreshold bytes or more live in Badger's value log, which
// reclaims the space of overwritten, deleted and trimmed values (a
// record's old versions, a published outbox entry, a pruned conflict-log
// entry) only when its user asks it to rewrite a log file. The store asks
// every defaultValueLogGCInterval, the first time one interval after Open.
// Badger picks the files by the discard statistics its compactions keep
// (garbage it has not compacted yet does not count) and never rewrites the
// file it is appending to.

// defaultValueLogGCInterval is how often the store asks.
const defaultValueLogGCInterval = 5 * time.Minute

// valueLogDiscardRatio is how much of a value-log file must be garbage
// (according to those statistics) before it is rewritten: with Badger's
// recommended 0.5 a rewrite frees at least half a file, and garbage the
// compactions have counted stays under about half of the older files.
const valueLogDiscardRatio = 0.5

// collectValueLog runs every interval until Close begins.
func (s *Store) collectValueLog(interval time.Duration) {
	defer close(s.gcDone)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if s.health.get().State != StorageOK {
				continue // a rewrite needs room, and a failed disk no writes
			}
			if n, err := s.rewriteValueLog(); err != nil {
				s.log.Warn("value log gc", "err", err, "rewritten", n)
			} else if n > 0 {
				s.log.Info("value log gc", "rewritten", n)
			}
		case <-s.stop:
			return
		}
	}
}

// rewriteValueLog rewrites value-log files, one at a time, while Badger
// finds one that is at least valueLogDiscardRatio garbage or until Close
// begins, and returns how many it rewrote. Reads and writes go on
// meanwhile; a rewrite moves live values, it never changes what a key
// holds.
func (s *Store) rewriteValueLog() (int, error) {
	for n := 0; ; n++ {
		if s.closing.Load() {
			return n, nil
		}
		switch err := s.db.RunValueLogGC(valueLogDiscardRatio); {
		case err == nil:
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			return n, nil // nothing worth rewriting, or a rewrite under way
		default:
			return n, fmt.Errorf("rewrite value log: %w", err)
		}
	}
}
