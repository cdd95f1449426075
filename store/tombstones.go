package store

import (
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
)

// TombstoneScan reports one pass of tombstone collection.
type TombstoneScan struct {
	// Held counts tombstone versions stored after the pass.
	Held int
	// Collected counts records the pass removed.
	Collected int
	// Records counts records scanned.
	Records int
}

// collectChunk is how many candidate keys a collection pass hands the
// writer at once.
const collectChunk = 1024

// CollectTombstones scans every record on one snapshot and removes, through
// the writer, those collectable under (safe, cutoff): every version a
// tombstone whose HLC wall time is before cutoff, and the whole context
// covered by safe (conflict.Collectable; safe comes from
// conflict.Stability). The writer checks each candidate again on the
// newest state, so a record written since the scan is never removed by
// mistake. The bound is also kept for merges (SetCollectionBound). The
// key filter keeps the removed keys (a false positive costs one lookup).
func (s *Store) CollectTombstones(ctx context.Context, safe conflict.VV, cutoff int64) (TombstoneScan, error) {
	s.SetCollectionBound(safe, cutoff)
	var scan TombstoneScan
	var candidates []string
	flush := func() error {
		if len(candidates) == 0 {
			return nil
		}
		n, err := s.CollectKeys(ctx, candidates, safe, cutoff)
		scan.Collected += n
		candidates = candidates[:0]
		return err
	}
	held := 0
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRecord, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec, err := itemRecord(it.Item())
			if err != nil {
				continue // a corrupt record: the scrub reports it, a repair replaces it
			}
			scan.Records++
			for _, v := range rec.Versions {
				if v.Deleted {
					held++
				}
			}
			if conflict.Collectable(rec, safe, cutoff) {
				candidates = append(candidates, string(it.Item().Key()[len(prefixRecord):]))
				if len(candidates) == collectChunk {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	scan.Held = held - scan.Collected // a collected record held only tombstones, at least one
	if scan.Held < 0 {
		scan.Held = 0
	}
	if err != nil {
		return scan, fmt.Errorf("collect tombstones: %w", err)
	}
	return scan, nil
}
