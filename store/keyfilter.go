package store

import (
	"fmt"
	"hash/maphash"
	"math"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/dgraph-io/badger/v4"
)

// keyFilter is an in-memory Bloom filter of every key that has a record,
// so a write to a new key skips Badger's lookup of its (absent) record. It
// has no false negatives: every key is added before its record can be
// read back (by whatever writes it: a local write, an apply, a merge), and
// keys are never removed. A record tombstone collection deletes keeps its
// key in the filter, as a false positive; a false positive only costs the
// lookup it would have saved.
//
// It grows without rescanning the store (a scalable Bloom filter, Almeida
// et al. 2007): when the newest layer is full, a layer twice its size with
// half its false-positive rate is added, so the rate over all layers stays
// below 2*keyFilterFP and a write never waits for a rebuild. It is owned by
// the writer (not safe for concurrent use).
type keyFilter struct {
	// layers, oldest first; keys are added to the newest, whose k is the
	// largest (its rate is the lowest).
	layers []*bloom.BloomFilter
	n      uint // keys added to the newest layer
	limit  uint // keys the newest layer was sized for
	// seed1 and seed2 seed the two hashes; locs is scratch for them.
	seed1, seed2 maphash.Seed
	locs         []uint64
}

// keyFilterFP is the false-positive rate of the first layer; the rate of
// the whole filter stays below twice this.
const keyFilterFP = 0.005

// keyFilterMin is the fewest keys the first layer is sized for.
const keyFilterMin = 1 << 16

// newKeyFilter builds the filter from every record key view shows (a
// Store.view), its first layer sized for twice that many keys (at least min).
func newKeyFilter(view func(func(*badger.Txn) error) error, min uint) (*keyFilter, error) {
	// Two key-only passes (count, then add) rather than holding every key
	// in memory: a large store would need hundreds of MB for that.
	each := func(fn func(key []byte)) error {
		return view(func(txn *badger.Txn) error {
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
	k := newEmptyKeyFilter(max(2*count, min))
	if err := each(func(key []byte) { k.testOrAddLocs(k.locationsBytes(key)) }); err != nil {
		return nil, fmt.Errorf("scan record keys: %w", err)
	}
	return k, nil
}

// newEmptyKeyFilter returns a filter with no keys, its first layer sized
// for capacity keys.
func newEmptyKeyFilter(capacity uint) *keyFilter {
	k := &keyFilter{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
	k.grow(capacity)
	return k
}

// grow adds a layer sized for capacity keys, at half the previous layer's
// false-positive rate.
func (k *keyFilter) grow(capacity uint) {
	fp := math.Ldexp(keyFilterFP, -len(k.layers))
	k.layers = append(k.layers, bloom.NewWithEstimates(capacity, fp))
	k.n, k.limit = 0, capacity
}

// locations hashes key once for every layer (each uses a prefix of the
// result): two 64-bit hashes combined as h1 + i*h2 (Kirsch and
// Mitzenmacher), each layer taking them modulo its size. The hash is
// seeded per process, which is enough: the filter is rebuilt at every Open.
func (k *keyFilter) locations(key string) []uint64 {
	return k.combine(maphash.String(k.seed1, key), maphash.String(k.seed2, key))
}

// locationsBytes is locations for a key held as bytes (no copy).
func (k *keyFilter) locationsBytes(key []byte) []uint64 {
	return k.combine(maphash.Bytes(k.seed1, key), maphash.Bytes(k.seed2, key))
}

func (k *keyFilter) combine(h1, h2 uint64) []uint64 {
	n := k.layers[len(k.layers)-1].K()
	h2 |= 1
	k.locs = k.locs[:0]
	for i := range uint64(n) {
		k.locs = append(k.locs, h1+i*h2)
	}
	return k.locs
}

// test reports whether any layer may hold the key hashed to locs.
func (k *keyFilter) test(locs []uint64) bool {
	for i := len(k.layers) - 1; i >= 0; i-- {
		if l := k.layers[i]; l.TestLocations(locs[:l.K()]) {
			return true
		}
	}
	return false
}

// mayHave reports whether key may have a record.
func (k *keyFilter) mayHave(key string) bool { return k.test(k.locations(key)) }

// testOrAdd reports whether key may have a record and, if not, adds it
// (a layer is added when the newest is full): the caller is about to give
// it one. Hashing once serves both.
func (k *keyFilter) testOrAdd(key string) (mayHave bool) {
	return k.testOrAddLocs(k.locations(key))
}

// testOrAddLocs is testOrAdd for a key hashed to locs (from locations).
func (k *keyFilter) testOrAddLocs(locs []uint64) (mayHave bool) {
	if k.test(locs) {
		return true
	}
	if k.n >= k.limit {
		k.grow(2 * k.limit)
		// The new layer may use more hashes: extend the sequence.
		h1, h2 := locs[0], locs[1]-locs[0]
		locs = k.combine(h1, h2)
	}
	l := k.layers[len(k.layers)-1]
	bits, m := l.BitSet(), uint64(l.Cap())
	for _, loc := range locs[:l.K()] {
		bits.Set(uint(loc % m))
	}
	k.n++
	return false
}
