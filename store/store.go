package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
)

// ErrClosed is returned for requests made after Close began.
var ErrClosed = errors.New("store closed")

// Options configures a Store.
type Options struct {
	// Dir is the Badger directory; it is created if missing.
	Dir string
	// Region is this region's name; the actor is Region~<epoch>.
	Region string
	// Sync makes every commit fsync before its requests are answered. With
	// Sync off an acknowledged write survives a process crash (the OS has
	// it) but not power loss.
	Sync bool
	// MaxBatch bounds how many requests one group commit takes (default 512).
	MaxBatch int
	// Clock stamps local writes and observes replicated ones. Required.
	Clock *conflict.Clock
	// Observer, if set, finds the conflicts of the records requests
	// change, for the conflict log (see Observer for when it runs and
	// what the store guarantees). The store calls it only after
	// StartObserving, so its owner can finish building what Observe
	// uses; the changes committed before wait, durably, until then.
	Observer Observer
	// ConflictRetention bounds the conflict log (entries; default 100000).
	ConflictRetention int
	// ConflictMaxAge drops conflict-log entries older than this (by their
	// At, against the newest entry's); 0 keeps them until the count bound.
	ConflictMaxAge time.Duration
	// FeedRetention bounds the change log (changes.go) in entries;
	// default DefaultFeedRetention.
	FeedRetention int
	// OnOutbox, if set, is called after each commit that added outbox
	// entries, once they are readable with ReadOutbox (the publisher's
	// wake-up). It runs on the writer: it must be quick, must not block
	// and must not call the Store.
	OnOutbox func()
	// OnConflicts, if set, receives the conflict-log entries of each commit
	// once that commit is durable, in log order, each entry once. It runs
	// on the writer (the goroutine holding the writer role): it must be
	// quick and must not call the Store.
	OnConflicts func([]ConflictEntry)
	// Logger receives Badger's and the writer's logs.
	Logger *slog.Logger
	// SmallFootprint shrinks Badger's caches and tables, for tests and
	// testbeds running many regions in one process.
	SmallFootprint bool
	// Clustered opens the store of one node of a region of several: it
	// starts as a follower (Following) and never draws an actor of its
	// own; the region's actor comes from the region log (the first leader
	// draws it, see Lead) or a copy of the leader's store (LoadCopy).
	Clustered bool

	// MaxEventBytes, if positive, bounds the encoded size of a local
	// write's event (what is published to the replication stream): a write
	// whose event would be larger is refused with ErrTooLarge, with
	// nothing written, instead of being acknowledged and then never
	// publishable.
	MaxEventBytes int
	// MinFreeBytes is the free space below which the store refuses writes
	// and applies (see storage.go); 0 means DefaultMinFreeBytes, or
	// SmallFootprintMinFreeBytes with SmallFootprint; negative turns the
	// free-space guard off (a failed commit still fails the storage).
	MinFreeBytes int64
}

// Observer finds the conflicts a record change makes, for the conflict log.
// The store asks it in two steps (observe.go):
//
//   - Notable runs in the writer, inside the transaction of the change, for
//     every record a local write, a replicated event or a merge changed
//     (a replicated event only when it added a version or its clock was
//     skewed). It must be pure and quick: no rule evaluation, logging,
//     metrics, locks others hold long, or I/O. Every other write of the
//     region waits while it runs.
//   - Observe runs for each change Notable accepted, on the store's
//     observer goroutine, after the change committed: one change at a time,
//     in the order the changes committed, never concurrently with itself.
//     It may evaluate rules, log and count. The entries it returns are
//     appended to the conflict log, in that order, in one transaction with
//     the removal of the change from the pending observations: each
//     change's entries are appended exactly once. A change is stored with
//     its commit, so a crash cannot lose it: after a restart (or in the
//     region's next leader) Observe is called for the changes whose entries
//     were not appended yet, so its side effects (logs, metrics) may repeat
//     for those. Only a store that takes requests (Solo or Leading)
//     observes; a follower holds the pending changes until it leads.
type Observer interface {
	Notable(change Change) bool
	Observe(change Change) []ConflictEntry
}

// Change describes one record change: the record before and after, and
// what made it. Observe receives it as Notable saw it, even after a
// restart (it is stored with the commit), whatever happened to the record
// since.
type Change struct {
	Key    string
	Before conflict.Record
	After  conflict.Record
	Event  conflict.Event
	// Local is true for a local write, false for a replicated event.
	Local bool
	// Merged is true for a local write a resolver made (Mutation.Merged).
	Merged bool
	// Skewed is true for a replicated event whose HLC is further ahead of
	// the local clock than the clock's skew bound (not folded into it).
	Skewed  bool
	Outcome conflict.Outcome
}

// Store is one region's durable state. All methods are safe for concurrent
// use. Mutations are serialised through one writer at a time (see
// writer.go); reads run on Badger snapshots and see only committed state.
type Store struct {
	db *badger.DB
	// snaps picks Badger's commit and read timestamps (managed mode).
	snaps *snapshots
	opts  Options
	hooks hooks
	actor string
	log   *slog.Logger

	// The writer role and its queue (see submit and writeBatch).
	qmu     sync.Mutex
	queue   []*request
	writing bool // some goroutine holds the writer role
	// trimArmed is set while a delayed trim-only commit is scheduled.
	trimArmed bool
	closed    bool
	slots     chan struct{} // bounds queued requests: back-pressure
	stop      chan struct{} // closed when Close begins
	idle      chan struct{} // closed when the writer role ends after Close
	gcDone    chan struct{} // closed when collectValueLog has returned
	spaceDone chan struct{} // closed when watchSpace has returned
	health    *storageHealth

	closeOnce sync.Once
	closing   atomic.Bool

	// State owned by the writer; exposed copies (for readers) below.
	seq, oseq, cseq, trimmed uint64
	cfirst                   uint64 // oldest conflict-log seq that may exist
	keys                     *keyFilter
	batch                    batchState // the writer's, reused per commit
	batchReqs                []*request // the writer's, reused per turn
	// chead caches the conflict log's oldest entry (the writer's).
	chead *conflictHead
	// lastTs is the newest timestamp a commit used, exposed or not.
	lastTs uint64
	// selfPath is the path of a local write's outbox entry (read-only).
	selfPath []string
	wm       map[string]uint64
	// fseq is the change log's newest position, ffirst its oldest
	// (changes.go; the writer's); feedHead and feedOldest expose them as
	// of the last commit, for readers.
	fseq, ffirst         uint64
	feedHead, feedOldest atomic.Uint64

	mu       sync.Mutex
	applied  conflict.VV // exposed watermarks incl. own actor
	changed  chan struct{}
	waiters  bool // someone waits on changed (under mu)
	trimWant atomic.Uint64
	stats    Stats
	// pendingHead is the newest pending observation committed,
	// observedThrough the newest whose entries are appended (observe.go).
	pendingHead, observedThrough uint64
	// outboxHead is the newest outbox seq committed (OutboxHead).
	outboxHead atomic.Uint64
	// batchBytes bounds the estimated size of one group commit, well under
	// Badger's transaction limit.
	batchBytes int

	// Pending observations (observe.go): the newest stored and the oldest
	// still pending (the writer's), and the observer goroutine's wake-up
	// and end.
	nseq, nfirst uint64
	observeCh    chan struct{}
	observeDone  chan struct{}
	observeStart chan struct{} // closed by StartObserving
	startOnce    sync.Once

	// The region lifecycle (merkle.go, merge.go, tombstones.go): the
	// digest tree, its scrubs, the keys whose stored record failed its
	// checksum, and the collection bound merges are filtered by.
	merkle      *merkleTree
	scrubMu     sync.Mutex
	treeDone    chan struct{} // closed when the first build has returned
	suspectMu   sync.Mutex
	suspects    map[string]bool
	corruptSeen uint64
	collection  atomic.Pointer[collectionBound]
	lifeStats   lifecycleCounters

	// A region of several nodes (replica.go): the store's role, the
	// region log's position and term of its last entry held here (the
	// writer's; logPos exposes them), the Replicator a leading store
	// appends with, and whether a copy is being loaded or was cut off.
	role         atomic.Int32
	actorShown   atomic.Pointer[string] // the actor, for readers (Actor)
	logSeq, term uint64
	logPos       atomic.Pointer[[2]uint64]
	rep          Replicator
	copying      atomic.Bool
}

// valueThreshold is Badger's value threshold here: larger values live in
// the value log and weigh little against the transaction size limit.
const valueThreshold = 64 << 10

// Stats are cumulative counters since Open.
type Stats struct {
	Writes, Applied, Duplicates, Gaps, Forwarded, Conflicts, Commits uint64
	// LostObservations counts pending conflict observations that no
	// longer decoded (altered on disk) and were dropped, each logged.
	LostObservations uint64
}

// Open opens or creates the store at opts.Dir. A new store draws a fresh
// random actor epoch, so a region restarted from empty never reuses a dot or
// an origin sequence its peers have seen (Riak KV679).
func Open(opts Options) (*Store, error) { return open(opts, hooks{}) }

// open is Open with the tests' hooks (hooks.go).
func open(opts Options, h hooks) (*Store, error) {
	h = h.withDefaults()
	if opts.Region == "" || opts.Clock == nil {
		return nil, errors.New("store: region and clock are required")
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.ConflictRetention <= 0 {
		opts.ConflictRetention = 100_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MinFreeBytes == 0 {
		opts.MinFreeBytes = DefaultMinFreeBytes
		if opts.SmallFootprint {
			opts.MinFreeBytes = SmallFootprintMinFreeBytes
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	health := newStorageHealth(opts.Dir, uint64(max(opts.MinFreeBytes, 0)), time.Now())
	if st := health.check(time.Now()); st.State == StorageFailed {
		return nil, fmt.Errorf("open store %s: %s", opts.Dir, st.Reason)
	}
	db, err := badger.OpenManaged(badgerOptions(opts, h))
	if err != nil {
		return nil, fmt.Errorf("open badger %s: %w", opts.Dir, err)
	}
	// Timestamps go on from the newest version stored; no read is open
	// yet, so every version shadowed so far may be discarded.
	newest := db.MaxVersion()
	db.SetDiscardTs(newest)
	s := &Store{
		db: db, snaps: newSnapshots(newest), opts: opts, hooks: h, log: opts.Logger.With("component", "store"),
		slots: make(chan struct{}, 4*opts.MaxBatch), stop: make(chan struct{}), idle: make(chan struct{}),
		wm: map[string]uint64{}, changed: make(chan struct{}),
		batchBytes: int(db.MaxBatchSize() / 4), selfPath: []string{opts.Region}, health: health,
		merkle: newMerkleTree(), treeDone: make(chan struct{}),
		observeCh: make(chan struct{}, 1), observeDone: make(chan struct{}), observeStart: make(chan struct{}),
	}
	if opts.Clustered {
		s.role.Store(int32(Following))
	}
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	if s.copying.Load() {
		// A copy was cut off: nothing here is usable until the next
		// LoadCopy, which builds the filter.
		s.keys = newEmptyKeyFilter(s.keyFilterMin())
		s.log.Warn("this node's store holds a copy of its leader's that was cut off; it serves nothing until it loads another")
	} else if s.keys, err = newKeyFilter(s.view, s.keyFilterMin()); err != nil {
		db.Close()
		return nil, err
	}
	s.gcDone = make(chan struct{})
	if h.valueLogGC > 0 {
		go s.collectValueLog(h.valueLogGC)
	} else {
		close(s.gcDone)
	}
	s.spaceDone = make(chan struct{})
	go s.watchSpace(h.spaceCheck)
	go s.observeLoop()
	if s.nfirst <= s.nseq {
		s.signalObserver() // changes a crash left unobserved
	}
	go func() { // the digest tree's first build (merkle.go)
		defer close(s.treeDone)
		if _, err := s.Scrub(); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("build the digest tree", "err", err)
		}
	}()
	if st := health.get(); st.State != StorageOK {
		s.log.Error("storage: refusing writes and applies; serving reads", "state", st.State, "reason", st.Reason)
	}
	return s, nil
}

// BadgerOptions returns the Badger options a store opened with opts uses,
// for benchmarks whose raw-Badger baseline must match them.
func BadgerOptions(opts Options) badger.Options {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return badgerOptions(opts, hooks{})
}

// badgerOptions maps Options (defaults applied) to Badger's options.
func badgerOptions(opts Options, h hooks) badger.Options {
	bo := badger.DefaultOptions(opts.Dir).
		WithSyncWrites(opts.Sync).
		WithLogger(badgerLogger{opts.Logger.With("component", "badger")}).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false). // one writer: no conflicting transactions
		WithValueThreshold(valueThreshold).
		WithMetricsEnabled(false)
	if opts.SmallFootprint {
		bo = bo.WithMemTableSize(16 << 20).WithValueLogFileSize(32 << 20).
			WithBlockCacheSize(8 << 20).WithIndexCacheSize(4 << 20).WithNumCompactors(2).
			WithNumMemtables(2).WithNumLevelZeroTables(2).WithNumLevelZeroTablesStall(8)
	}
	if h.tuneBadger != nil {
		bo = h.tuneBadger(bo)
	}
	return bo
}

func (s *Store) load() error {
	txn := s.beginCommit()
	defer txn.Discard()
	if err := s.loadIn(txn); err != nil {
		return err
	}
	return s.commit(txn)
}

func (s *Store) loadIn(txn *badger.Txn) error {
	item, err := txn.Get(keyActor)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound) && s.opts.Clustered:
		s.setActor("") // the region's comes from its log or leader
	case errors.Is(err, badger.ErrKeyNotFound):
		actor, err := newActor(s.opts.Region)
		if err != nil {
			return err
		}
		s.setActor(actor)
		if err := txn.Set(keyActor, []byte(s.actor)); err != nil {
			return err
		}
		s.log.Info("new store: drew actor epoch", "actor", s.actor)
	case err != nil:
		return fmt.Errorf("read actor: %w", err)
	default:
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		s.setActor(string(v))
		if conflict.RegionOf(s.actor) != s.opts.Region {
			return fmt.Errorf("store %s belongs to region %q, not %q", s.opts.Dir, conflict.RegionOf(s.actor), s.opts.Region)
		}
	}
	switch item, err := txn.Get(keyLogPos); {
	case errors.Is(err, badger.ErrKeyNotFound):
		s.logSeq, s.term = 0, 0
	case err != nil:
		return fmt.Errorf("read log position: %w", err)
	default:
		err := item.Value(func(v []byte) error {
			if len(v) != 16 {
				return fmt.Errorf("corrupt log position: %d bytes", len(v))
			}
			s.logSeq, s.term = decodeLogPos(v)
			return nil
		})
		if err != nil {
			return err
		}
	}
	s.logPos.Store(&[2]uint64{s.logSeq, s.term})
	switch _, err := txn.Get(keyCopying); {
	case err == nil:
		s.copying.Store(true)
	case !errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("read copy marker: %w", err)
	}
	if err := getU64(txn, keyTrimmed, &s.trimmed); err != nil {
		return err
	}
	switch item, err := txn.Get(keySeqs); {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("read sequences: %w", err)
	default:
		err := item.Value(func(v []byte) error {
			var err error
			s.seq, s.oseq, s.cseq, err = decodeSeqs(v)
			return err
		})
		if err != nil {
			return err
		}
	}
	if err := s.deriveSeqs(txn); err != nil {
		return err
	}
	if err := s.loadFeed(txn); err != nil {
		return err
	}
	if err := s.loadObservations(txn); err != nil {
		return err
	}
	// The oldest conflict-log entry still stored (retention drops
	// from the front).
	s.cfirst = s.cseq + 1
	cit := txn.NewIterator(badger.IteratorOptions{Prefix: prefixConflict})
	if cit.Rewind(); cit.Valid() {
		s.cfirst = seqFromKey(prefixConflict, cit.Item().Key())
	}
	cit.Close()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixWatermark, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		n, err := decodeU64(v)
		if err != nil {
			return fmt.Errorf("watermark %s: %w", it.Item().Key(), err)
		}
		s.wm[string(it.Item().Key()[len(prefixWatermark):])] = n
	}
	s.exposeApplied(nil)
	s.outboxHead.Store(s.seq)
	s.trimWant.Store(s.trimmed)
	return nil
}

func getU64(txn *badger.Txn, key []byte, dst *uint64) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	return item.Value(func(v []byte) error {
		n, err := decodeU64(v)
		*dst = n
		return err
	})
}

// deriveSeqs raises the sequences read from m/seqs to what the newest
// entries show: commits do not rewrite m/seqs (a write would cost one more
// key per commit); the newest outbox entry carries seq, the newest entry of
// this actor carries oseq, the newest conflict-log entry cseq. Trims, which
// delete outbox entries, record m/seqs first.
func (s *Store) deriveSeqs(txn *badger.Txn) error {
	last := func(prefix []byte) *badger.Iterator {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		it.Seek(seqKey(prefix, math.MaxUint64))
		return it
	}
	it := last(prefixOutbox)
	defer it.Close()
	first := true
	for ; it.Valid(); it.Next() {
		seq := seqFromKey(prefixOutbox, it.Item().Key())
		if first {
			s.seq, first = max(s.seq, seq), false
		}
		var e OutboxEntry
		err := it.Item().Value(func(v []byte) error {
			var err error
			e, _, err = decodeOutboxHeader(seq, v) // the origin is enough
			return err
		})
		if err != nil {
			return err
		}
		if e.Origin == s.actor {
			s.oseq = max(s.oseq, e.OSeq)
			break
		}
	}
	cit := last(prefixConflict)
	defer cit.Close()
	if cit.Valid() {
		s.cseq = max(s.cseq, seqFromKey(prefixConflict, cit.Item().Key()))
	}
	return nil
}

func (s *Store) keyFilterMin() uint {
	if s.hooks.keyFilterMin > 0 {
		return s.hooks.keyFilterMin
	}
	return keyFilterMin
}

// newActor draws a fresh actor of region: region~<8 random hex digits>.
func newActor(region string) (string, error) {
	epoch := make([]byte, 4)
	if _, err := rand.Read(epoch); err != nil {
		return "", fmt.Errorf("draw epoch: %w", err)
	}
	return conflict.Actor(region, hex.EncodeToString(epoch)), nil
}

// Actor returns this store's actor name (region~epoch); "" for the store
// of a node that has not yet received its region's.
func (s *Store) Actor() string {
	if a := s.actorShown.Load(); a != nil {
		return *a
	}
	return ""
}

// setActor sets the writer's actor and exposes it to Actor.
func (s *Store) setActor(actor string) {
	s.actor = actor
	s.actorShown.Store(&actor)
}

// Close stops taking requests, finishes the ones queued and the reads in
// progress, and closes Badger; reads and writes after it fail with
// ErrClosed. It is idempotent.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		close(s.stop)
		s.qmu.Lock()
		s.closed = true
		busy := s.writing
		s.qmu.Unlock()
		if busy {
			<-s.idle // the writer drains the queue, then gives the role up
		}
		<-s.gcDone // a value-log rewrite under way ends first
		<-s.spaceDone
		<-s.observeDone // what it observed and did not append waits for the next start
		<-s.treeDone    // the first tree build stops at s.closing
		s.snaps.close() // and so do the reads in progress
		err = s.closeBadger()
	})
	return err
}

// closeBadger closes Badger, unless the storage failed: Badger's Close
// flushes its memtables into new tables and records them in its manifest,
// and on a failing disk that can leave a manifest naming a table whose
// blocks were never written (TestIOErrorFailsStorage met it: the reopened
// store panicked). A failed store leaves Badger as a crash would: every
// acknowledged write is in Badger's synced write-ahead log, which the next
// start on the repaired disk replays. The process is about to exit.
func (s *Store) closeBadger() error {
	if st := s.health.get(); st.State == StorageFailed {
		s.log.Warn("storage failed: Badger left unclosed, to be recovered from its log at the next start", "reason", st.Reason)
		return nil
	}
	return s.db.Close()
}

// Get returns the committed record of key; ok is false if the key was never
// written or replicated here.
//
// A record whose stored checksum fails is not returned: the error wraps
// ErrChecksum, and the key is remembered for repair (Suspects).
func (s *Store) Get(key string) (rec conflict.Record, ok bool, err error) {
	err = s.view(func(txn *badger.Txn) error {
		rec, ok, err = getRecord(txn, key)
		return err
	})
	if errors.Is(err, ErrChecksum) {
		s.addSuspects([]string{key})
	}
	return rec, ok, err
}

func getRecord(txn *badger.Txn, key string) (conflict.Record, bool, error) {
	var rec conflict.Record
	item, err := txn.Get(recordKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("get %q: %w", key, err)
	}
	if rec, err = itemRecord(item); err != nil {
		return rec, false, fmt.Errorf("record %q: %w", key, err)
	}
	return rec, true, nil
}

// itemRecord decodes the record an item of the d/ key space holds.
func itemRecord(item *badger.Item) (rec conflict.Record, err error) {
	err = item.Value(func(v []byte) error {
		rec, err = DecodeRecord(v)
		return err
	})
	return rec, err
}

// List returns up to limit keys with the prefix, in byte order, starting
// after the key `after` (exclusive; "" for the start). With live set, keys
// whose frontier is all tombstones are left out.
func (s *Store) List(prefix, after string, limit int, live bool) ([]string, error) {
	keys := []string{}
	err := s.view(func(txn *badger.Txn) error {
		p := recordKey(prefix)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: live, PrefetchSize: 64})
		defer it.Close()
		start := p
		if after != "" && after >= prefix {
			start = append(recordKey(after), 0)
		}
		for it.Seek(start); it.Valid() && len(keys) < limit; it.Next() {
			k := string(it.Item().Key()[len(prefixRecord):])
			if live {
				rec, err := itemRecord(it.Item())
				if err != nil {
					return fmt.Errorf("record %q: %w", k, err)
				}
				if len(rec.Live()) == 0 {
					continue
				}
			}
			keys = append(keys, k)
		}
		return nil
	})
	return keys, err
}

// Digest returns a SHA-256 over every record (key and canonical record, in
// key order) and the number of records. Two regions with equal digests hold
// identical data.
func (s *Store) Digest() (sum []byte, n int, err error) {
	h := sha256.New()
	err = s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRecord, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			// The stored encoding is canonical: equal records, equal
			// bodies, whatever the format version (recordBody).
			err := it.Item().Value(func(v []byte) error {
				h.Write(it.Item().Key())
				h.Write([]byte{0})
				h.Write(recordBody(v))
				h.Write([]byte{0})
				return nil
			})
			if err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return h.Sum(nil), n, err
}

// Scan calls fn for every record in key order on one snapshot, until fn
// returns false.
func (s *Store) Scan(fn func(key string, rec conflict.Record) bool) error {
	return s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRecord, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			rec, err := itemRecord(it.Item())
			if err != nil {
				return fmt.Errorf("record %q: %w", it.Item().Key()[len(prefixRecord):], err)
			}
			if !fn(string(it.Item().Key()[len(prefixRecord):]), rec) {
				return nil
			}
		}
		return nil
	})
}

// Applied returns, per origin actor, the highest OSeq applied here, with
// this region's own actor at its own last OSeq. Session tokens are checked
// against it.
func (s *Store) Applied() conflict.VV {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.applied)
}

// Seq returns this region's own last origin sequence (OSeq of its latest
// local write).
func (s *Store) Seq() uint64 {
	actor := s.Actor()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied[actor]
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// WaitApplied blocks until every origin in want is applied here at least up
// to its sequence, or ctx ends. It returns the origins still missing (nil
// when satisfied).
func (s *Store) WaitApplied(ctx context.Context, want conflict.VV) conflict.VV {
	for {
		s.mu.Lock()
		missing := conflict.VV{}
		for a, n := range want {
			if s.applied[a] < n {
				missing[a] = n
			}
		}
		if len(missing) == 0 {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.waiters = true
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return missing
		}
	}
}

// exposeApplied copies the writer's applied positions for readers
// (Applied, Seq, WaitApplied) and wakes the waiters: the watermarks of the
// origins in dirty (all of them when dirty is nil) and the own actor's
// sequence. The writer calls it after a commit succeeded. Callers hold no
// lock; it takes s.mu.
func (s *Store) exposeApplied(dirty map[string]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dirty == nil || s.applied == nil {
		s.applied = maps.Clone(s.wm)
	} else {
		for origin := range dirty {
			s.applied[origin] = s.wm[origin]
		}
	}
	if s.oseq > 0 {
		s.applied[s.actor] = s.oseq
	}
	if s.waiters { // wake them; a commit nobody waits for allocates nothing
		close(s.changed)
		s.changed = make(chan struct{})
		s.waiters = false
	}
}

// OutboxHead returns the newest outbox sequence committed (0 for none):
// entries up to it are readable with ReadOutbox until trimmed. It never
// decreases while the store is open.
func (s *Store) OutboxHead() uint64 { return s.outboxHead.Load() }

// badgerLogger adapts Badger's printf-style logger to slog. Badger logs at
// debug level several times per commit, so a message is formatted only when
// its level is enabled.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug, f, a) }

func (b badgerLogger) log(level slog.Level, f string, a []any) {
	if !b.l.Enabled(context.Background(), level) {
		return
	}
	b.l.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(f, a...)))
}
