package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
)

// waitTree waits until the store's first tree build has finished.
func waitTree(t testing.TB, s *Store) {
	t.Helper()
	eventually(t, 10*time.Second, "the digest tree", s.TreeReady)
}

func treeLevel(t testing.TB, s *Store, level int) []uint64 {
	t.Helper()
	ids := make([]uint32, 1<<(4*level))
	for i := range ids {
		ids[i] = uint32(i)
	}
	d, err := s.TreeNodes(level, ids)
	if err != nil {
		t.Fatalf("tree level %d: %v", level, err)
	}
	return d
}

// TestTreeFollowsTheWriter: after random writes, deletes, applies, merges
// and collections, the tree the writer kept up to date equals the one a
// scan builds from the data (a scrub moves no bucket), and the root is the
// XOR of every record's hash.
func TestTreeFollowsTheWriter(t *testing.T) {
	// One pair of stores for every run: their state carries over, which
	// only makes the histories longer.
	s := openTest(t, "us", "", func(o *testOpts) { o.Sync = false })
	eu := openTest(t, "eu", "", func(o *testOpts) { o.Sync = false })
	waitTree(t, s)
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		keys := []string{"a", "b", "c", "d/1", "d/2"}
		var euEvents []produced
		for i := range rapid.IntRange(1, 40).Draw(rt, "steps") {
			k := rapid.SampledFrom(keys).Draw(rt, "key")
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0:
				mustWrite(t, s, Mutation{Key: k, Value: doc(`{"i":%d}`, i), Supersede: rapid.Bool().Draw(rt, "lww")})
			case 1:
				mustWrite(t, s, Mutation{Key: k, Deleted: true, Supersede: true})
			case 2:
				euEvents = append(euEvents, writeEvents(t, eu, Mutation{Key: k, Value: doc(`{"eu":%d}`, i)})...)
				mustApply(t, s, euEvents[len(euEvents)-1].incoming())
			case 3:
				rec, ok, _ := eu.Get(k)
				if ok {
					if _, _, err := s.MergeRecords(ctx, []KeyRecord{{Key: k, Record: rec}}, false); err != nil {
						t.Fatal(err)
					}
				}
			case 4:
				if _, err := s.CollectTombstones(ctx, s.Applied(), baseWall+1<<40); err != nil {
					t.Fatal(err)
				}
			}
		}
		before := treeLevel(t, s, 0)
		var want uint64
		if err := s.Scan(func(key string, rec conflict.Record) bool {
			want ^= RecordHash(key, recordBody(AppendRecord(nil, rec)))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if before[0] != want {
			t.Fatalf("root %x, want the XOR of every record's hash %x", before[0], want)
		}
		res, err := s.Scrub()
		if err != nil {
			t.Fatal(err)
		}
		if res.Moved != 0 || len(res.Corrupt) != 0 {
			t.Fatalf("scrub after writer-made changes: %+v, want nothing moved", res)
		}
		if after := treeLevel(t, s, 0); after[0] != before[0] {
			t.Fatalf("root %x after the scrub, %x before", after[0], before[0])
		}
	})
}

// TestTreesOfEqualStoresAgree: two regions holding the same records have
// the same tree, and one key that differs makes exactly its bucket (and
// the nodes above it) differ.
func TestTreesOfEqualStoresAgree(t *testing.T) {
	us, _ := populated(t, "")
	snap, _ := snapshotOf(t, us)
	ap := openTest(t, "ap", "", nil)
	if _, err := ap.MergeSnapshot(context.Background(), bytesReader(snap), nil); err != nil {
		t.Fatal(err)
	}
	waitTree(t, us)
	waitTree(t, ap)
	if a, b := treeLevel(t, us, MerkleLevels), treeLevel(t, ap, MerkleLevels); !slices.Equal(a, b) {
		t.Fatal("equal stores, different buckets")
	}
	mustWrite(t, ap, Mutation{Key: "e/07", Value: doc(`{"ap":1}`)})
	a, b := treeLevel(t, us, MerkleLevels), treeLevel(t, ap, MerkleLevels)
	var differ []int
	for i := range a {
		if a[i] != b[i] {
			differ = append(differ, i)
		}
	}
	if want := int(MerkleLeaf("e/07")); len(differ) != 1 || differ[0] != want {
		t.Fatalf("buckets that differ: %v, want [%d] (the bucket of e/07)", differ, want)
	}
	for level := range MerkleLevels {
		x, y := treeLevel(t, us, level), treeLevel(t, ap, level)
		n := 0
		for i := range x {
			if x[i] != y[i] {
				n++
			}
		}
		if n != 1 {
			t.Errorf("level %d: %d nodes differ, want 1", level, n)
		}
	}
	mine, _ := us.KeysInLeaves([]uint32{MerkleLeaf("e/07")})
	theirs, _ := ap.KeysInLeaves([]uint32{MerkleLeaf("e/07")})
	if got := DiffKeys(mine, theirs); !slices.Equal(got, []string{"e/07"}) {
		t.Fatalf("DiffKeys = %q, want [e/07]", got)
	}
}

// TestDamageIsFoundAndRepaired: records removed and altered behind the
// store's back (Tamper, store closed) are found by the tree build at the
// next Open: altered ones fail their checksum, are not served (Get) nor
// written over by a local write, and a repair merge from a healthy peer
// brings every record back, clearing the suspects.
func TestDamageIsFoundAndRepaired(t *testing.T) {
	dir := t.TempDir()
	us, _ := populated(t, dir)
	ref := openTest(t, "ap", "", nil)
	snap, _ := snapshotOf(t, us)
	if _, err := ref.MergeSnapshot(context.Background(), bytesReader(snap), nil); err != nil {
		t.Fatal(err)
	}
	want := digestOf(t, us)
	if err := us.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Tamper(dir, 10, 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 5 || len(rep.Altered) != 5 {
		t.Fatalf("tamper: %+v", rep)
	}
	us = openTest(t, "us", dir, nil)
	waitTree(t, us)
	suspects, found := us.Suspects()
	slices.Sort(suspects)
	altered := slices.Sorted(slices.Values(rep.Altered))
	if !slices.Equal(suspects, altered) || found != 5 {
		t.Fatalf("suspects = %q (%d found), want the altered keys %q", suspects, found, altered)
	}
	for _, k := range rep.Altered {
		if _, _, err := us.Get(k); !errors.Is(err, ErrChecksum) {
			t.Fatalf("Get of altered %s: %v, want ErrChecksum", k, err)
		}
		if _, err := us.Write(context.Background(), Mutation{Key: k, Value: doc(`1`)}); !errors.Is(err, ErrChecksum) {
			t.Fatalf("a write over altered %s: %v, want ErrChecksum", k, err)
		}
	}
	// The buckets of the damaged keys differ from the healthy peer's.
	waitTree(t, ref)
	a, b := treeLevel(t, us, MerkleLevels), treeLevel(t, ref, MerkleLevels)
	for _, k := range slices.Concat(rep.Removed, rep.Altered) {
		if l := MerkleLeaf(k); a[l] == b[l] {
			t.Errorf("bucket of damaged %s agrees with the peer's", k)
		}
	}
	// Repair: the peer's records of the buckets that differ.
	var leaves []uint32
	for i := range a {
		if a[i] != b[i] {
			leaves = append(leaves, uint32(i))
		}
	}
	mine, _ := us.KeysInLeaves(leaves)
	theirs, _ := ref.KeysInLeaves(leaves)
	keys := DiffKeys(mine, theirs)
	recs, err := ref.Records(keys)
	if err != nil {
		t.Fatal(err)
	}
	changed, skipped, err := us.MergeRecords(context.Background(), recs, true)
	if err != nil || changed != 10 || skipped != 0 {
		t.Fatalf("repair: changed %d, skipped %d, %v; want 10 changed", changed, skipped, err)
	}
	if got := digestOf(t, us); got != want {
		t.Fatalf("digest after repair %s, want %s", got, want)
	}
	if s, _ := us.Suspects(); len(s) != 0 {
		t.Fatalf("suspects after repair: %q", s)
	}
	if a, b := treeLevel(t, us, 0), treeLevel(t, ref, 0); a[0] != b[0] {
		t.Fatal("roots differ after the repair")
	}
}

// TestScrubFindsLiveDamage: a record changed behind the writer's back while
// the store runs leaves the writer's tree untouched; the scrub finds the
// bucket moved and keeps the tree right.
func TestScrubFindsLiveDamage(t *testing.T) {
	s := openTest(t, "us", "", nil)
	for i := range 20 {
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("k%d", i), Value: doc(`{"i":%d}`, i)})
	}
	waitTree(t, s)
	// Delete k3 directly in Badger, as the writer would commit, but
	// without telling the tree.
	s.qmu.Lock()
	for s.writing {
		s.qmu.Unlock()
		time.Sleep(time.Millisecond)
		s.qmu.Lock()
	}
	s.writing = true
	s.qmu.Unlock()
	txn := s.beginCommit()
	if err := txn.Delete(recordKey("k3")); err != nil {
		t.Fatal(err)
	}
	ts := max(txn.ReadTs(), s.lastTs) + 1
	s.lastTs = ts
	if err := txn.CommitAt(ts, nil); err != nil {
		t.Fatal(err)
	}
	s.snaps.expose(ts)
	s.qmu.Lock()
	s.writing = false
	s.qmu.Unlock()

	res, err := s.Scrub()
	if err != nil {
		t.Fatal(err)
	}
	if res.Moved != 1 || res.Records != 19 {
		t.Fatalf("scrub = %+v, want 1 bucket moved, 19 records", res)
	}
	again, err := s.Scrub()
	if err != nil || again.Moved != 0 {
		t.Fatalf("second scrub = %+v, %v; want nothing moved", again, err)
	}
}

// TestRepairTakesOnlyWhatWasApplied: a repair merge skips a record that
// reflects events this region has not applied yet (they are on their way).
func TestRepairTakesOnlyWhatWasApplied(t *testing.T) {
	eu := openTest(t, "eu", "", nil)
	evs := writeEvents(t, eu, Mutation{Key: "k", Value: doc(`1`)}, Mutation{Key: "j", Value: doc(`2`)})
	us := openTest(t, "us", "", nil)
	mustApply(t, us, evs[0].incoming())
	recs, _ := eu.Records([]string{"k", "j"})
	changed, skipped, err := us.MergeRecords(context.Background(), recs, true)
	if err != nil || changed != 0 || skipped != 1 {
		t.Fatalf("repair = changed %d skipped %d %v; want k unchanged (held), j skipped (not applied)", changed, skipped, err)
	}
	if _, ok, _ := us.Get("j"); ok {
		t.Fatal("j merged before its event was applied")
	}
}

func TestCheckRecordRefuses(t *testing.T) {
	s := openTest(t, "us", "", nil)
	good := conflict.Version{Dot: conflict.Dot{Actor: "eu~1", Counter: 1}, Value: []byte(`{"a":1}`), Origin: "eu"}
	for _, c := range []struct {
		name string
		key  string
		rec  conflict.Record
		want string
	}{
		{"no versions", "k", conflict.Record{}, "no versions"},
		{"empty key", "", conflict.Record{Versions: []conflict.Version{good}}, "key"},
		{"bad origin", "k", conflict.Record{Versions: []conflict.Version{{Dot: good.Dot, Value: good.Value, Origin: "us"}}}, "origin"},
		{"bad JSON", "k", conflict.Record{Versions: []conflict.Version{{Dot: good.Dot, Value: []byte(`{`), Origin: "eu"}}}, "JSON"},
		{"not compact", "k", conflict.Record{Versions: []conflict.Version{{Dot: good.Dot, Value: []byte(`{ "a": 1 }`), Origin: "eu"}}}, "JSON"},
		{"covered", "k", conflict.Record{Versions: []conflict.Version{good}, Seen: conflict.VV{"eu~1": 1}}, "superseded"},
		{"own actor ahead", "k", conflict.Record{Versions: []conflict.Version{{Dot: conflict.Dot{Actor: s.Actor(), Counter: 3}, Value: good.Value, Origin: "us"}}}, "beyond its log"},
	} {
		err := s.CheckRecord(c.key, c.rec)
		if !errors.Is(err, ErrMalformed) || !containsFold(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrMalformed mentioning %q", c.name, err, c.want)
		}
	}
	if err := s.CheckRecord("k", conflict.Record{Versions: []conflict.Version{good}}); err != nil {
		t.Errorf("a good record: %v", err)
	}
}
