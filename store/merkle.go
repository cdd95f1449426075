package store

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
)

// The digest tree (anti-entropy). Every key falls into one of MerkleLeaves
// buckets by a hash of the key that is the same in every region
// (MerkleLeaf), and a record contributes RecordHash(key, record) to its
// bucket's digest by XOR; a node of the tree above the buckets is the XOR
// of the buckets beneath it. Two regions holding equal records have equal
// trees, and a node whose digests differ holds a key on which they differ
// (up to 64-bit collisions). XOR makes the tree cheap to keep up to date:
// the writer XORs out a record's old hash and XORs in its new one at every
// commit (no rebuild, no scan), and the tree's size is fixed whatever the
// number of keys: (1 + 16 + 256 + 4096 + 65536) 8-byte digests, 559 KiB.
//
// Because the tree follows the writer, a record changed behind the
// store's back (a bit flip on disk, a bug) leaves it untouched; a periodic
// scrub (Store.Scrub) rebuilds it from the data on one snapshot, reports
// the buckets that moved and the records whose checksum fails, and keeps
// the commits made during the scan.

// Tree shape: MerkleLevels levels below the root, MerkleFanout children per
// node, MerkleLeaves buckets.
const (
	MerkleFanout = 16
	MerkleLevels = 4
	MerkleLeaves = 1 << (4 * MerkleLevels)
)

// merkleBits is log2(MerkleFanout).
const merkleBits = 4

// MerkleLeaf returns the bucket of key: the top bits of its xxhash, the
// same in every region and every build.
func MerkleLeaf(key string) uint32 { return leafOf(xxhash.Sum64String(key)) }

// leafOf is MerkleLeaf of a key whose xxhash is kh.
func leafOf(kh uint64) uint32 { return uint32(kh >> (64 - 4*MerkleLevels)) }

// RecordHash is the 64-bit digest of one stored record under key: body is
// the record's encoding without its format byte and checksum (recordBody),
// which is the same for equal records in every region.
func RecordHash(key string, body []byte) uint64 { return recordHash(xxhash.Sum64String(key), body) }

// recordHash is RecordHash of a key whose xxhash is kh.
func recordHash(kh uint64, body []byte) uint64 {
	return xxhash.Sum64(body) ^ bits.RotateLeft64(kh*0x9E3779B97F4A7C15, 31)
}

// storedHash is the digest a stored value contributes to the tree: 0 for
// no record and for one that is not a well-formed record (it contributes
// nothing until repaired).
func storedHash(key string, v []byte) uint64 {
	if v == nil || checkRecordSum(v) != nil {
		return 0
	}
	body := recordBody(v)
	if body == nil {
		return 0
	}
	return RecordHash(key, body)
}

// merkleTree is the in-memory digest tree. mu guards levels and ready; the
// writer holds it while it applies a commit's changes and exposes that
// commit, so that the tree and the newest exposed read timestamp always
// describe the same commits (see Store.commit).
type merkleTree struct {
	mu sync.Mutex
	// levels[0] is the root, levels[MerkleLevels] the buckets.
	levels [MerkleLevels + 1][]uint64
	// ready is false until the first scan built the tree from the data.
	ready bool
	// pending are the changes of the commit the writer is making: staged
	// by flush, applied by commit once the commit succeeded (the writer's;
	// not guarded by mu).
	pending []merkleChange
	// oseq is this region's own log position as of the newest exposed
	// commit (set with it, under mu), so that a snapshot's read timestamp
	// and its own position agree.
	oseq uint64
	// stats of scrubs.
	scrubs, moved uint64
	lastScrub     time.Time
}

type merkleChange struct {
	leaf  uint32
	delta uint64
}

func newMerkleTree() *merkleTree {
	t := &merkleTree{}
	for l := range t.levels {
		t.levels[l] = make([]uint64, 1<<(merkleBits*l))
	}
	return t
}

// xorLocked folds delta into a bucket and every node above it. Callers hold mu.
func (t *merkleTree) xorLocked(leaf uint32, delta uint64) {
	for l := MerkleLevels; l >= 0; l-- {
		t.levels[l][leaf>>(merkleBits*(MerkleLevels-l))] ^= delta
	}
}

// applyPendingLocked folds the staged changes in and clears them. Callers
// hold mu.
func (t *merkleTree) applyPendingLocked() {
	for _, c := range t.pending {
		t.xorLocked(c.leaf, c.delta)
	}
	t.pending = t.pending[:0]
}

// ErrTreeNotReady is returned by the digest reads before the store's first
// scan has built the tree.
var ErrTreeNotReady = errors.New("digest tree not built yet")

// TreeNodes returns the digests of the nodes ids at level (0 the root, 1
// to MerkleLevels; node i of level l covers the buckets i*16^(4-l) up to
// (i+1)*16^(4-l) - 1), and the read timestamp's commits they reflect are
// every commit exposed before the call.
func (s *Store) TreeNodes(level int, ids []uint32) ([]uint64, error) {
	if level < 0 || level > MerkleLevels {
		return nil, fmt.Errorf("tree level %d: want 0 to %d", level, MerkleLevels)
	}
	t := s.merkle
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ready {
		return nil, ErrTreeNotReady
	}
	out := make([]uint64, len(ids))
	for i, id := range ids {
		if int(id) >= len(t.levels[level]) {
			return nil, fmt.Errorf("tree node %d of level %d: the level has %d", id, level, len(t.levels[level]))
		}
		out[i] = t.levels[level][id]
	}
	return out, nil
}

// TreeReady reports whether the digest tree has been built.
func (s *Store) TreeReady() bool {
	s.merkle.mu.Lock()
	defer s.merkle.mu.Unlock()
	return s.merkle.ready
}

// ScrubResult reports one rebuild of the digest tree from the data.
type ScrubResult struct {
	// Records is the number of records scanned.
	Records int
	// Moved counts buckets whose digest the scan found different from the
	// tree's: records changed behind the writer's back (zero for the first
	// build).
	Moved int
	// Corrupt lists the keys whose stored record fails its checksum; they
	// are not served until repaired (see Store.Suspects).
	Corrupt []string
	// Took is the scan's duration.
	Took time.Duration
}

// Scrub rebuilds the digest tree from every stored record on one snapshot,
// verifying each record's checksum, and swaps it in keeping the commits
// made during the scan. Keys whose record fails its checksum are reported
// (and remembered as suspects, see Suspects). Open runs the first build in
// the background; the tree is not ready (TreeNodes fails) until it ends.
// Safe to call concurrently with everything; concurrent Scrubs serialise.
func (s *Store) Scrub() (ScrubResult, error) {
	s.scrubMu.Lock()
	defer s.scrubMu.Unlock()
	start := time.Now()
	t := s.merkle
	t.mu.Lock()
	base := append([]uint64(nil), t.levels[MerkleLevels]...)
	wasReady := t.ready
	ts, ok := s.snaps.acquire()
	t.mu.Unlock()
	if !ok {
		return ScrubResult{}, ErrClosed
	}
	fresh := make([]uint64, MerkleLeaves)
	var res ScrubResult
	err := func() error {
		defer s.snaps.release(ts)
		if st := s.health.get(); st.State == StorageFailed {
			return st.refusal()
		}
		txn := s.db.NewTransactionAt(ts, false)
		defer txn.Discard()
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRecord, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if s.closing.Load() {
				return ErrClosed
			}
			key := string(it.Item().Key()[len(prefixRecord):])
			err := it.Item().Value(func(v []byte) error {
				if checkRecordSum(v) != nil || recordBody(v) == nil {
					res.Corrupt = append(res.Corrupt, key)
					return nil
				}
				fresh[MerkleLeaf(key)] ^= RecordHash(key, recordBody(v))
				return nil
			})
			if err != nil {
				return fmt.Errorf("scrub %q: %w", key, err)
			}
			res.Records++
		}
		return nil
	}()
	if err != nil {
		return res, err
	}
	// Suspects are known before the tree is reported ready, so a reader
	// that waited for TreeReady sees them.
	s.addSuspects(res.Corrupt)
	t.mu.Lock()
	leaves := t.levels[MerkleLevels]
	for i := range leaves {
		if wasReady && fresh[i] != base[i] {
			res.Moved++
		}
		// The scan saw the data as of ts; the tree has moved since by the
		// commits after ts: base ^ leaves.
		leaves[i] = fresh[i] ^ base[i] ^ leaves[i]
	}
	for l := MerkleLevels - 1; l >= 0; l-- {
		clear(t.levels[l])
		for i, d := range t.levels[l+1] {
			t.levels[l][i>>merkleBits] ^= d
		}
	}
	t.ready = true
	t.scrubs++
	t.moved += uint64(res.Moved)
	t.lastScrub = time.Now()
	t.mu.Unlock()
	res.Took = time.Since(start)
	if res.Moved > 0 || len(res.Corrupt) > 0 {
		s.log.Warn("scrub: stored records changed behind the store's back; anti-entropy repairs them from a peer",
			"buckets_moved", res.Moved, "corrupt_records", len(res.Corrupt), "records", res.Records)
	}
	return res, nil
}

// addSuspects remembers keys whose stored record is corrupt until a repair
// replaces it.
func (s *Store) addSuspects(keys []string) {
	if len(keys) == 0 {
		return
	}
	s.suspectMu.Lock()
	defer s.suspectMu.Unlock()
	if s.suspects == nil {
		s.suspects = map[string]bool{}
	}
	for _, k := range keys {
		if !s.suspects[k] {
			s.suspects[k] = true
			s.corruptSeen++
		}
	}
}

// clearSuspect forgets a key once a commit replaced its record.
func (s *Store) clearSuspects(keys []string) {
	s.suspectMu.Lock()
	defer s.suspectMu.Unlock()
	for _, k := range keys {
		delete(s.suspects, k)
	}
}

// Suspects returns the keys whose stored record failed its checksum and
// has not been replaced since (by a repair, or any write or apply), and
// how many such records were found since Open.
func (s *Store) Suspects() (keys []string, found uint64) {
	s.suspectMu.Lock()
	defer s.suspectMu.Unlock()
	for k := range s.suspects {
		keys = append(keys, k)
	}
	return keys, s.corruptSeen
}

// TreeStats reports the scrubs run since Open, the buckets they found
// moved, and when the last one ended.
func (s *Store) TreeStats() (scrubs, moved uint64, last time.Time) {
	s.merkle.mu.Lock()
	defer s.merkle.mu.Unlock()
	return s.merkle.scrubs, s.merkle.moved, s.merkle.lastScrub
}

// treeBatch is what one commit needs for the digest tree: the digest of
// each record the batch read before changing it, and the corrupt records it
// met. Owned by the writer.
type treeBatch struct {
	before   map[string]uint64
	corrupt  map[string]bool
	replaced []string
}

func (b *treeBatch) reset(t *merkleTree) {
	if b.before == nil {
		b.before, b.corrupt = map[string]uint64{}, map[string]bool{}
	}
	clear(b.before)
	clear(b.corrupt)
	b.replaced = b.replaced[:0]
	t.pending = t.pending[:0]
}

// read reads key's record in the writer's transaction, remembering its
// stored digest. A record that fails its checksum is remembered as corrupt
// and reported as ErrChecksum.
func (b *treeBatch) read(txn *badger.Txn, key string) (conflict.Record, error) {
	item, err := txn.Get(recordKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return conflict.Record{}, nil
	}
	if err != nil {
		return conflict.Record{}, fmt.Errorf("get %q: %w", key, err)
	}
	var rec conflict.Record
	err = item.Value(func(v []byte) error {
		if err := checkRecordSum(v); err != nil {
			return err
		}
		b.before[key] = storedHash(key, v)
		var err error
		rec, err = DecodeRecord(v)
		return err
	})
	if errors.Is(err, ErrChecksum) {
		b.corrupt[key] = true
		return conflict.Record{}, fmt.Errorf("record %q: %w", key, err)
	}
	if err != nil {
		return rec, fmt.Errorf("record %q: %w", key, err)
	}
	return rec, nil
}

func (b *treeBatch) isCorrupt(key string) bool { return b.corrupt[key] }

// wrote stages the change of key's stored record to stored (nil: deleted),
// which the writer has just encoded (so its checksum is not checked again,
// and the key is hashed once for its bucket and its digest).
func (b *treeBatch) wrote(t *merkleTree, key string, stored []byte) {
	kh := xxhash.Sum64String(key)
	var after uint64
	if stored != nil {
		after = recordHash(kh, recordBody(stored))
	}
	if before := b.before[key]; before != after {
		t.pending = append(t.pending, merkleChange{leaf: leafOf(kh), delta: before ^ after})
	}
	if len(b.corrupt) > 0 && b.corrupt[key] {
		b.replaced = append(b.replaced, key)
	}
}

// afterCommit runs after the batch's commit: corrupt records it replaced
// are no longer suspect.
func (b *treeBatch) afterCommit(s *Store) {
	if len(b.replaced) > 0 {
		s.clearSuspects(b.replaced)
	}
}
