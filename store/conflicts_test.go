package store

import (
	"bytes"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
)

// siblingObserver logs every change that leaves more than one version,
// keeping the event's version and discarding the others.
type siblingObserver struct{}

func (siblingObserver) Notable(c Change) bool { return len(c.After.Versions) > 1 }

func (siblingObserver) Observe(c Change) []ConflictEntry {
	if len(c.After.Versions) < 2 {
		return nil
	}
	kept := c.Event.Version
	var discarded = c.After.Versions[:0:0]
	for _, v := range c.After.Versions {
		if v.Dot != kept.Dot {
			discarded = append(discarded, v)
		}
	}
	note := "remote"
	if c.Local {
		note = "local"
	}
	return []ConflictEntry{{Key: c.Key, Rule: "test", Kept: &kept, Discarded: discarded, At: kept.HLC.Wall, Note: note}}
}

func withObserver(retention int) func(*testOpts) {
	return func(o *testOpts) {
		o.Observer = siblingObserver{}
		o.ConflictRetention = retention
	}
}

func conflictSeqs(es []ConflictEntry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func mustConflicts(t *testing.T, s *Store, key string, limit int) []ConflictEntry {
	t.Helper()
	es, err := s.Conflicts(key, limit)
	if err != nil {
		t.Fatalf("conflicts %q: %v", key, err)
	}
	return es
}

func TestConflictsNewestFirst(t *testing.T) {
	s := openTest(t, "us", "", withObserver(0))
	eu := openTest(t, "eu", "", nil)
	// Keys a and ab share a prefix: the per-key index must keep them apart.
	for _, key := range []string{"a", "a", "ab", "a", "ab"} {
		mustWrite(t, s, Mutation{Key: key, Value: doc(`%q`, key)})
	}
	// Entries so far: 1 (a, 2 versions), 2 (a, 3), 3 (ab, 2).
	remote := writeEvents(t, eu, Mutation{Key: "ab", Value: doc(`"eu"`)})
	mustApply(t, s, remote[0].incoming()) // entry 4 (ab, 3), from a replicated event

	if got := conflictSeqs(mustConflicts(t, s, "a", 10)); !slices.Equal(got, []uint64{2, 1}) {
		t.Errorf("Conflicts(a) = %v, want [2 1]", got)
	}
	ab := mustConflicts(t, s, "ab", 10)
	if got := conflictSeqs(ab); !slices.Equal(got, []uint64{4, 3}) {
		t.Fatalf("Conflicts(ab) = %v, want [4 3]", got)
	}
	if ab[0].Note != "remote" || ab[1].Note != "local" || ab[0].Region != "us" || ab[0].Rule != "test" {
		t.Errorf("entries = %+v, want region us filled in, remote then local", ab)
	}
	if ab[0].Kept == nil || !ab[0].Kept.Equal(remote[0].Event.Version) || len(ab[0].Discarded) != 2 {
		t.Errorf("entry 4 = %+v, want eu's version kept, two discarded", ab[0])
	}
	if got := conflictSeqs(mustConflicts(t, s, "", 10)); !slices.Equal(got, []uint64{4, 3, 2, 1}) {
		t.Errorf("Conflicts(\"\") = %v, want [4 3 2 1]", got)
	}
	if got := conflictSeqs(mustConflicts(t, s, "", 2)); !slices.Equal(got, []uint64{4, 3}) {
		t.Errorf("Conflicts(\"\", 2) = %v, want [4 3]", got)
	}
	if got := mustConflicts(t, s, "zzz", 10); len(got) != 0 {
		t.Errorf("Conflicts(zzz) = %+v, want none", got)
	}
	if s.Stats().Conflicts != 4 {
		t.Errorf("Stats().Conflicts = %d, want 4", s.Stats().Conflicts)
	}
}

func TestConflictRetention(t *testing.T) {
	const retention = 5
	dir := t.TempDir()
	s := openTest(t, "us", dir, withObserver(retention))
	// Alternate two keys, nil context: each write after a key's first
	// makes one more sibling, so one conflict entry.
	byKey := map[string][]uint64{}
	var seq uint64
	for i := range 14 {
		key := []string{"x", "y"}[i%2]
		mustWrite(t, s, Mutation{Key: key, Value: doc(`%d`, i)})
		if i >= 2 {
			seq++
			byKey[key] = append(byKey[key], seq)
		}
	}
	if seq != 12 {
		t.Fatalf("setup made %d entries, want 12", seq)
	}
	kept := func(seqs []uint64) []uint64 { // newest first, inside the window
		var out []uint64
		for _, q := range slices.Backward(seqs) {
			if q > seq-retention {
				out = append(out, q)
			}
		}
		return out
	}
	check := func(s *Store) {
		t.Helper()
		if got := conflictSeqs(mustConflicts(t, s, "", 100)); !slices.Equal(got, []uint64{12, 11, 10, 9, 8}) {
			t.Errorf("Conflicts(\"\") = %v, want the newest 5", got)
		}
		for _, key := range []string{"x", "y"} {
			if got, want := conflictSeqs(mustConflicts(t, s, key, 100)), kept(byKey[key]); !slices.Equal(got, want) {
				t.Errorf("Conflicts(%s) = %v, want %v", key, got, want)
			}
		}
		if n := countKeys(t, s, prefixConfIndex); n != retention {
			t.Errorf("%d index keys, want %d", n, retention)
		}
		if n := countKeys(t, s, prefixConflict); n != retention {
			t.Errorf("%d conflict entries stored, want %d", n, retention)
		}
	}
	check(s)

	// The sequence survives a restart: the next entry is 13 and pushes 8 out.
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = openTest(t, "us", dir, withObserver(retention))
	check(s)
	mustWrite(t, s, Mutation{Key: "x", Value: doc(`"again"`)})
	if got := conflictSeqs(mustConflicts(t, s, "", 100)); !slices.Equal(got, []uint64{13, 12, 11, 10, 9}) {
		t.Errorf("after reopen and one more: %v, want 13..9", got)
	}
}

func countKeys(t *testing.T, s *Store, prefix []byte) int {
	t.Helper()
	n := 0
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if !bytes.HasPrefix(it.Item().Key(), prefix) {
				t.Errorf("iterator left prefix %q", prefix)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("count %q: %v", prefix, err)
	}
	return n
}

// recordingObserver keeps every change it is shown (all are notable).
type recordingObserver struct {
	mu      sync.Mutex
	changes []Change
}

func (o *recordingObserver) Notable(Change) bool { return true }

func (o *recordingObserver) Observe(c Change) []ConflictEntry {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.changes = append(o.changes, c)
	return nil
}

func (o *recordingObserver) last() Change {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changes[len(o.changes)-1]
}

func TestOnConflictsAfterCommit(t *testing.T) {
	var (
		mu  sync.Mutex
		got []ConflictEntry
	)
	s := openTest(t, "us", "", func(o *testOpts) {
		withObserver(0)(o)
		o.OnConflicts = func(es []ConflictEntry) {
			mu.Lock()
			got = append(got, es...)
			mu.Unlock()
		}
	})
	for _, key := range []string{"a", "a", "b", "b", "a"} {
		mustWrite(t, s, Mutation{Key: key, Value: doc(`%q`, key)})
	}
	eventually(t, 5*time.Second, "three conflict entries published", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 3
	})
	logged := mustConflicts(t, s, "", 10)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || len(logged) != 3 {
		t.Fatalf("published %d entries, logged %d; want 3 each", len(got), len(logged))
	}
	for i, e := range got { // published in log order; Conflicts is newest first
		if l := logged[len(logged)-1-i]; e.Seq != l.Seq || e.Key != l.Key || e.Region != "us" {
			t.Errorf("published entry %d = {%d %s %s}, logged {%d %s}", i, e.Seq, e.Key, e.Region, l.Seq, l.Key)
		}
	}
}

func TestChangeFlags(t *testing.T) {
	rec := &recordingObserver{}
	local := newFakeClock(baseWall)
	s := openTest(t, "us", "", func(o *testOpts) {
		o.Observer = rec
		o.Clock = conflict.NewClock(local.now, 60_000) // a minute of skew allowed
	})
	mustWrite(t, s, Mutation{Key: "m", Value: doc(`1`), Merged: true})
	settle(t, s)
	if c := rec.last(); !c.Local || !c.Merged || c.Skewed || c.Key != "m" {
		t.Errorf("merged write: change %+v, want local and merged", c)
	}

	fast := newFakeClock(baseWall)
	eu := openTest(t, "eu", "", func(o *testOpts) { o.Clock = conflict.NewClock(fast.now, 0) })
	near := writeEvents(t, eu, Mutation{Key: "near", Value: doc(`1`)})
	fast.advance(time.Hour)
	far := writeEvents(t, eu, Mutation{Key: "far", Value: doc(`2`)})

	mustApply(t, s, near[0].incoming())
	settle(t, s)
	if c := rec.last(); c.Local || c.Merged || c.Skewed || c.Key != "near" {
		t.Errorf("event within the skew bound: change %+v, want remote, not skewed", c)
	}
	mustApply(t, s, far[0].incoming())
	settle(t, s)
	if c := rec.last(); !c.Skewed || c.Key != "far" {
		t.Errorf("event an hour ahead: change %+v, want skewed", c)
	}
	if w := mustWrite(t, s, Mutation{Key: "after", Value: doc(`3`)}); w.Event.Version.HLC.Wall >= far[0].Event.Version.HLC.Wall {
		t.Errorf("skewed HLC %v was folded into the local clock (%v)", far[0].Event.Version.HLC, w.Event.Version.HLC)
	}
}

// TestConflictMaxAge: entries older than ConflictMaxAge (relative to the
// newest entry) are pruned as the log grows, and stay pruned after reopen.
func TestConflictMaxAge(t *testing.T) {
	clock := newFakeClock(baseWall)
	dir := t.TempDir()
	edit := func(o *testOpts) {
		withObserver(1000)(o)
		o.ConflictMaxAge = time.Minute
		o.Clock = conflict.NewClock(clock.now, 0)
	}
	s := openTest(t, "us", dir, edit)
	for i := range 4 { // entries 1..3 at baseWall
		mustWrite(t, s, Mutation{Key: "old", Value: doc(`%d`, i)})
	}
	if got := len(mustConflicts(t, s, "", 100)); got != 3 {
		t.Fatalf("%d entries before aging, want 3", got)
	}
	clock.advance(2 * time.Minute)
	mustWrite(t, s, Mutation{Key: "new", Value: doc(`1`)})
	mustWrite(t, s, Mutation{Key: "new", Value: doc(`2`)}) // entry 4, two minutes later
	es := mustConflicts(t, s, "", 100)
	if !slices.Equal(conflictSeqs(es), []uint64{4}) {
		t.Fatalf("after aging: entries %v, want only [4]", conflictSeqs(es))
	}
	if got := mustConflicts(t, s, "old", 100); len(got) != 0 {
		t.Fatalf("key index still returns pruned entries: %v", conflictSeqs(got))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, "us", dir, edit)
	mustWrite(t, s, Mutation{Key: "new", Value: doc(`3`)}) // entry 5
	if es := mustConflicts(t, s, "", 100); !slices.Equal(conflictSeqs(es), []uint64{5, 4}) {
		t.Fatalf("after reopen: entries %v, want [5 4]", conflictSeqs(es))
	}
}
