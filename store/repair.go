package store

import (
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// KeyHash is one key of a bucket with the digest of its stored record (0
// for a record that fails its checksum).
type KeyHash struct {
	Key  string
	Hash uint64
}

// KeysInLeaves returns, in key order, every key whose bucket (MerkleLeaf)
// is among leaves, with its record's digest, on one snapshot. It scans the
// keys of the whole store (values are read only for the keys in leaves):
// anti-entropy calls it for the few buckets that differ.
func (s *Store) KeysInLeaves(leaves []uint32) ([]KeyHash, error) {
	want := make(map[uint32]bool, len(leaves))
	for _, l := range leaves {
		want[l] = true
	}
	var out []KeyHash
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRecord})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := string(it.Item().Key()[len(prefixRecord):])
			if !want[MerkleLeaf(key)] {
				continue
			}
			err := it.Item().Value(func(v []byte) error {
				out = append(out, KeyHash{Key: key, Hash: storedHash(key, v)})
				return nil
			})
			if err != nil {
				return fmt.Errorf("read %q: %w", key, err)
			}
		}
		return nil
	})
	return out, err
}

// Records returns the records of keys that have one, on one snapshot, in
// the order given; a key without a record, or whose record fails its
// checksum (it is then remembered as a suspect), is left out.
func (s *Store) Records(keys []string) ([]KeyRecord, error) {
	var out []KeyRecord
	var bad []string
	err := s.view(func(txn *badger.Txn) error {
		for _, k := range keys {
			rec, ok, err := getRecord(txn, k)
			if err != nil {
				bad = append(bad, k)
				continue
			}
			if ok {
				out = append(out, KeyRecord{Key: k, Record: rec})
			}
		}
		return nil
	})
	s.addSuspects(bad)
	return out, err
}

// DiffKeys compares this store's keys of some buckets (mine, from
// KeysInLeaves) with a peer's (theirs) and returns the keys on which they
// differ: a key one side lacks, or whose digests differ.
func DiffKeys(mine, theirs []KeyHash) []string {
	m := make(map[string]uint64, len(mine))
	for _, kh := range mine {
		m[kh.Key] = kh.Hash
	}
	var out []string
	for _, kh := range theirs {
		if h, ok := m[kh.Key]; !ok || h != kh.Hash || h == 0 {
			out = append(out, kh.Key)
		}
		delete(m, kh.Key)
	}
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
