package store

import (
	"fmt"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/dgraph-io/badger/v4"
)

// keyFilter is an in-memory Bloom filter of every key that has a record,
// so a write to a new key skips Badger's lookup of its (absent) record. It
// has no false negatives: every key is added before its record can be
// read back, and keys are never removed (records are never deleted, only
// tombstoned). A false positive only costs the lookup it would have saved.
// It is owned by the writer (not safe for concurrent use).
type keyFilter struct {
	f     *bloom.BloomFilter
	n     uint // keys added
	limit uint // keys it was sized for; past it, rebuild larger
}

// keyFilterFP is the false-positive rate the filter is sized for.
const keyFilterFP = 0.01

// keyFilterMin is the fewest keys a filter is sized for.
const keyFilterMin = 1 << 16

// newKeyFilter builds the filter from every record key in the store,
// sized for twice that many keys (at least min).
func newKeyFilter(db *badger.DB, min uint) (*keyFilter, error) {
	// Two key-only passes (count, then add) rather than holding every key
	// in memory: a large store would need hundreds of MB for that.
	each := func(fn func(key []byte)) error {
		return db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRecord})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				fn(it.Item().Key()[len(prefixRecord):])
			}
			return nil
		})
	}
	var count uint
	if err := each(func([]byte) { count++ }); err != nil {
		return nil, fmt.Errorf("count record keys: %w", err)
	}
	k := &keyFilter{limit: max(2*count, min)}
	k.f = bloom.NewWithEstimates(k.limit, keyFilterFP)
	if err := each(func(key []byte) { k.f.Add(key); k.n++ }); err != nil {
		return nil, fmt.Errorf("scan record keys: %w", err)
	}
	return k, nil
}

// mayHave reports whether key may have a record.
func (k *keyFilter) mayHave(key string) bool { return k.f.TestString(key) }

// add records that key has a record. It reports true when the filter has
// outgrown its size and should be rebuilt.
func (k *keyFilter) add(key string) (full bool) {
	if !k.f.TestAndAddString(key) {
		k.n++
	}
	return k.n > k.limit
}
