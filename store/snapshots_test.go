package store

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
)

// TestSnapshotsDiscardNeverPassesOpenRead drives the timestamp bookkeeping
// with random reads and commits against a plain model: a read runs at the
// newest published commit, and the discard timestamp never moves back,
// never passes a read still open (Badger could otherwise drop a version
// that read needs) and reaches the newest commit when no read is open.
func TestSnapshotsDiscardNeverPassesOpenRead(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		start := rapid.Uint64Range(0, 1000).Draw(t, "start")
		s := newSnapshots(start)
		committed, lastDiscard := start, start
		var open []uint64 // the model: timestamps of reads in progress
		for i := range rapid.IntRange(1, 200).Draw(t, "steps") {
			switch op := rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("op %d", i)); {
			case op == 0:
				ts, ok := s.acquire()
				if !ok || ts != committed {
					t.Fatalf("read at %d, newest commit %d", ts, committed)
				}
				open = append(open, ts)
			case op == 1 && len(open) > 0:
				j := rapid.IntRange(0, len(open)-1).Draw(t, "read to end")
				s.release(open[j])
				open = slices.Delete(open, j, j+1)
			default:
				committed++
				discard, moved := s.expose(committed)
				want := committed
				for _, ts := range open {
					want = min(want, ts)
				}
				switch {
				case discard != max(want, lastDiscard):
					t.Fatalf("discard %d; oldest open read or newest commit %d, last discard %d", discard, want, lastDiscard)
				case moved != (discard > lastDiscard):
					t.Fatalf("moved = %v going from %d to %d", moved, lastDiscard, discard)
				}
				for _, ts := range open {
					if discard > ts {
						t.Fatalf("discard %d passes the read open at %d", discard, ts)
					}
				}
				if len(open) == 0 && discard != committed {
					t.Fatalf("discard %d with no read open, newest commit %d", discard, committed)
				}
				lastDiscard = discard
			}
			if got, want := s.latest(), committed; got != want {
				t.Fatalf("latest = %d, want %d", got, want)
			}
		}
		for _, ts := range open {
			s.release(ts)
		}
		if len(s.open) != 0 {
			t.Fatalf("reads still counted after all ended: %v", s.open)
		}
	})
}

// TestReadIsASnapshot writes while a Scan is in progress: the scan sees the
// records as they were when it began, neither the new values of the keys it
// has yet to reach nor keys added meanwhile, and a read begun after the
// writes sees them all.
func TestReadIsASnapshot(t *testing.T) {
	s := openTest(t, "us", "", nil)
	for i := range 5 {
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("k%d", i), Value: doc(`"old"`), Supersede: true})
	}
	var seen []string
	err := s.Scan(func(key string, rec conflict.Record) bool {
		if key == "k0" {
			for i := range 5 {
				mustWrite(t, s, Mutation{Key: fmt.Sprintf("k%d", i), Value: doc(`"new"`), Supersede: true})
			}
			mustWrite(t, s, Mutation{Key: "k9", Value: doc(`"new"`)})
		}
		seen = append(seen, key+"="+liveValues(rec))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`k0="old"`, `k1="old"`, `k2="old"`, `k3="old"`, `k4="old"`}
	if !slices.Equal(seen, want) {
		t.Errorf("scan during writes saw %v, want %v", seen, want)
	}
	seen = seen[:0]
	if err := s.Scan(func(key string, rec conflict.Record) bool { seen = append(seen, key+"="+liveValues(rec)); return true }); err != nil {
		t.Fatal(err)
	}
	want = []string{`k0="new"`, `k1="new"`, `k2="new"`, `k3="new"`, `k4="new"`, `k9="new"`}
	if !slices.Equal(seen, want) {
		t.Errorf("scan after the writes saw %v, want %v", seen, want)
	}
}

// TestShadowedVersionsDiscarded checks the store advances Badger's discard
// timestamp: once no read needs them, compaction drops the versions a
// newer one shadows (the store keeps one per key), while a read open
// across the compaction still finds the version it started with.
func TestShadowedVersionsDiscarded(t *testing.T) {
	// Small memtables: a MB of writes flushes one, and two
	// flushed tables start a compaction.
	s := openTest(t, "us", "", func(o *testOpts) {
		o.tuneBadger = func(bo badger.Options) badger.Options { return bo.WithMemTableSize(1 << 20) }
	})
	filler := strings.Repeat("x", 4<<10)
	fill := func(round string) {
		t.Helper()
		for i := range 300 {
			mustWrite(t, s, Mutation{Key: fmt.Sprintf("filler/%s/%d", round, i), Value: doc(`"%s"`, filler)})
		}
	}
	// versions compacts every table and counts the versions of k that
	// Badger still holds.
	versions := func() int {
		t.Helper()
		if err := s.db.Flatten(1); err != nil {
			t.Fatalf("flatten: %v", err)
		}
		txn := s.db.NewTransactionAt(math.MaxUint64, false)
		defer txn.Discard()
		it := txn.NewKeyIterator(recordKey("k"), badger.IteratorOptions{AllVersions: true})
		defer it.Close()
		count := 0
		for it.Rewind(); it.Valid(); it.Next() {
			count++
		}
		return count
	}
	const n = 50
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`"first"`), Supersede: true})
	pinned, _ := s.snaps.acquire() // a read open across what follows
	for i := range n {
		mustWrite(t, s, Mutation{Key: "k", Value: doc(`%d`, i), Supersede: true})
	}
	fill("a")
	fill("b")
	if got := versions(); got < n+1 {
		t.Fatalf("%d versions of k with a read open before the last %d writes; compaction dropped some it needs", got, n)
	}
	txn := s.db.NewTransactionAt(pinned, false)
	rec, ok, err := getRecord(txn, "k")
	txn.Discard()
	if err != nil || !ok || liveValues(rec) != `"first"` {
		t.Fatalf("the open read sees %s (ok %v, err %v), want its snapshot's \"first\"", liveValues(rec), ok, err)
	}
	s.snaps.release(pinned)
	// The next commit moves the discard timestamp past every version; more
	// writes flush it out of the memtable for compaction to see.
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`"last"`), Supersede: true})
	fill("c")
	fill("d")
	eventually(t, 10*time.Second, "shadowed versions of k discarded", func() bool { return versions() == 1 })
	if got := liveValues(mustGet(t, s, "k")); got != `"last"` {
		t.Fatalf("k = %s after compaction, want \"last\"", got)
	}
}

// liveValues renders a record's live values, comma-separated.
func liveValues(rec conflict.Record) string {
	var vs []string
	for _, v := range rec.Live() {
		vs = append(vs, string(v.Value))
	}
	return strings.Join(vs, ",")
}

// TestOpensStoreWrittenInBadgerTimestampMode opens a store whose newest
// commits Badger timestamped itself (stores written before the store
// managed timestamps, or any tool that opens the directory with
// badger.Open): they are visible, and later writes supersede them.
func TestOpensStoreWrittenInBadgerTimestampMode(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, "us", dir, nil)
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`"store"`), Supersede: true})
	before := mustGet(t, s, "k")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Badger in its own timestamp mode rewrites the record, as a store of
	// the earlier layout would have.
	opts := testOptions(dir, "us")
	db, err := badger.Open(badgerOptions(opts, hooks{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"k", "k", "k", "old"} { // versions past the store's newest
		err = db.Update(func(txn *badger.Txn) error { return txn.Set(recordKey(key), AppendRecord(nil, before)) })
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, "us", dir, nil)
	for _, key := range []string{"k", "old"} {
		if got := liveValues(mustGet(t, s, key)); got != `"store"` {
			t.Fatalf("%s, written in Badger's timestamp mode, reads %q", key, got)
		}
		mustWrite(t, s, Mutation{Key: key, Value: doc(`"new"`), Supersede: true})
		if got := liveValues(mustGet(t, s, key)); got != `"new"` {
			t.Fatalf("after a write, %s = %q, want \"new\"", key, got)
		}
	}
}

// TestCloseWaitsForReads closes the store while a Scan is in progress:
// reads that begin after Close has started fail with ErrClosed, Close
// waits for the scan (Badger is not closed under it), the scan sees every
// record, and Close then returns.
func TestCloseWaitsForReads(t *testing.T) {
	s := openTest(t, "us", "", nil)
	for i := range 3 {
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("k%d", i), Value: doc(`%d`, i)})
	}
	inside, resume := make(chan struct{}), make(chan struct{})
	scanned := make(chan error, 1)
	var keys []string
	go func() {
		scanned <- s.Scan(func(key string, _ conflict.Record) bool {
			if key == "k0" {
				close(inside)
				<-resume
			}
			keys = append(keys, key)
			return true
		})
	}()
	<-inside
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Once a new read is refused, Close is waiting for the open scan.
	eventually(t, 10*time.Second, "reads refused after Close began", func() bool {
		_, _, err := s.Get("k1")
		return errors.Is(err, ErrClosed)
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a scan was open", err)
	default:
	}
	close(resume)
	if err := <-scanned; err != nil || !slices.Equal(keys, []string{"k0", "k1", "k2"}) {
		t.Fatalf("scan across Close: keys %v, err %v", keys, err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	for name, read := range map[string]func() error{
		"Get":        func() error { _, _, err := s.Get("k0"); return err },
		"List":       func() error { _, err := s.List("", "", 10, true); return err },
		"Scan":       func() error { return s.Scan(func(string, conflict.Record) bool { return true }) },
		"Digest":     func() error { _, _, err := s.Digest(); return err },
		"Conflicts":  func() error { _, err := s.Conflicts("", 10); return err },
		"ReadOutbox": func() error { _, err := s.ReadOutbox(0, 10); return err },
	} {
		if err := read(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}
