package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
)

// populated returns a store "us" that wrote, deleted and applied events
// from an "eu" store, so that it has records of two actors, tombstones and
// watermarks of both, and the events eu wrote.
func populated(t *testing.T, dir string) (*Store, []produced) {
	t.Helper()
	us := openTest(t, "us", dir, nil)
	eu := openTest(t, "eu", "", nil)
	var muts []Mutation
	for i := range 40 {
		muts = append(muts, Mutation{Key: fmt.Sprintf("e/%02d", i), Value: doc(`{"eu":%d}`, i)})
	}
	evs := writeEvents(t, eu, muts...)
	for _, ev := range evs {
		mustApply(t, us, ev.incoming())
	}
	for i := range 30 {
		mustWrite(t, us, Mutation{Key: fmt.Sprintf("u/%02d", i), Value: doc(`{"us":%d,"s":"<&>"}`, i)})
	}
	for i := range 5 {
		mustWrite(t, us, Mutation{Key: fmt.Sprintf("u/%02d", i), Deleted: true, Supersede: true})
	}
	// A sibling: a blind write over eu's version.
	mustWrite(t, us, Mutation{Key: "e/00", Value: doc(`{"us":"sibling"}`)})
	return us, evs
}

func snapshotOf(t *testing.T, s *Store) ([]byte, SnapshotInfo) {
	t.Helper()
	var buf bytes.Buffer
	info, err := s.WriteSnapshot(context.Background(), &buf)
	if err != nil {
		t.Fatalf("write snapshot: %v", err)
	}
	return buf.Bytes(), info
}

// TestSnapshotRoundTrip: a snapshot merged into an empty store gives the
// same records (digest) and the snapshot's positions as watermarks; the
// events the snapshot reflects are then duplicates.
func TestSnapshotRoundTrip(t *testing.T) {
	us, evs := populated(t, "")
	snap, info := snapshotOf(t, us)
	if info.Records != 70 || info.Header.Region != "us" || info.Header.Actor != us.Actor() {
		t.Fatalf("snapshot info = %+v, want 70 records of us", info)
	}
	want := us.Applied()
	if !info.Header.Positions.Equal(want) {
		t.Fatalf("positions = %s, want the store's applied %s", info.Header.Positions, want)
	}
	fresh := openTest(t, "ap", "", nil)
	got, err := fresh.MergeSnapshot(context.Background(), bytes.NewReader(snap), nil)
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	if got.Records != 70 || got.Unchanged != 0 {
		t.Fatalf("merge info = %+v, want 70 records, all new", got)
	}
	if a, b := digestOf(t, us), digestOf(t, fresh); a != b {
		t.Fatalf("digest after merge %s, want %s", b, a)
	}
	applied := fresh.Applied()
	for actor, p := range want {
		if applied[actor] != p {
			t.Errorf("watermark of %s = %d, want %d", actor, applied[actor], p)
		}
	}
	for _, ev := range evs {
		if res := mustApply(t, fresh, ev.incoming())[0]; !res.Duplicate {
			t.Fatalf("event %s:%d after the merge: %+v, want a duplicate", ev.Event.Origin(), ev.Event.OSeq, res)
		}
	}
	// Merging it again changes nothing.
	again, err := fresh.MergeSnapshot(context.Background(), bytes.NewReader(snap), nil)
	if err != nil || again.Unchanged != 70 {
		t.Fatalf("second merge = %+v, %v; want 70 unchanged", again, err)
	}
	if a, b := digestOf(t, us), digestOf(t, fresh); a != b {
		t.Fatalf("digest after a second merge %s, want %s", b, a)
	}
}

func digestOf(t *testing.T, s *Store) string {
	t.Helper()
	d, _ := digest(t, s)
	return d
}

// TestSnapshotMergesWithLocalState: merging adds what the snapshot has to
// what the region holds and keeps the region's own versions.
func TestSnapshotMergesWithLocalState(t *testing.T) {
	us, _ := populated(t, "")
	snap, _ := snapshotOf(t, us)
	ap := openTest(t, "ap", "", nil)
	mustWrite(t, ap, Mutation{Key: "e/01", Value: doc(`{"ap":1}`)})
	mustWrite(t, ap, Mutation{Key: "ap/only", Value: doc(`{"ap":2}`)})
	if _, err := ap.MergeSnapshot(context.Background(), bytes.NewReader(snap), nil); err != nil {
		t.Fatal(err)
	}
	if rec := mustGet(t, ap, "e/01"); len(rec.Versions) != 2 {
		t.Errorf("e/01 = %q, want eu's version and ap's as siblings", frontierOf(rec))
	}
	if rec := mustGet(t, ap, "ap/only"); len(rec.Versions) != 1 {
		t.Errorf("ap/only lost by the merge: %+v", rec)
	}
	if got := ap.Seq(); got != 2 {
		t.Errorf("own sequence %d after a merge, want 2", got)
	}
}

func frontierOf(r conflict.Record) []string {
	var out []string
	for _, v := range r.Versions {
		out = append(out, v.Dot.String())
	}
	return out
}

// TestSnapshotIsOneReadTimestamp: a snapshot taken while writes go on holds
// exactly the writes its own position names, whatever commits during the
// scan.
func TestSnapshotIsOneReadTimestamp(t *testing.T) {
	s := openTest(t, "us", "", func(o *testOpts) { o.Sync = false })
	for i := range 500 {
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("k/%04d", i), Value: doc(`{"i":%d}`, i)})
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 500; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Write(context.Background(), Mutation{Key: fmt.Sprintf("k/%04d", i), Value: doc(`{"i":%d}`, i)}); err != nil {
				return
			}
		}
	})
	var snaps [][]byte
	for range 5 {
		b, _ := snapshotOf(t, s)
		snaps = append(snaps, b)
	}
	close(stop)
	wg.Wait()
	for n, b := range snaps {
		sr, err := NewSnapshotReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		pos := sr.Header().Positions[s.Actor()]
		count := 0
		for {
			kr, err := sr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if c := kr.Record.Versions[0].Dot.Counter; c > pos {
				t.Fatalf("snapshot %d holds %s written at %d, beyond its position %d", n, kr.Key, c, pos)
			}
			count++
		}
		if uint64(count) != pos {
			t.Fatalf("snapshot %d holds %d records; its position says %d writes", n, count, pos)
		}
	}
}

// TestSnapshotDamageIsRefused: any flipped byte, a cut anywhere, a
// repeated or missing block is refused (ErrSnapshot or, for a record inside
// an intact block, ErrMalformed); a damaged merge raises no watermark.
func TestSnapshotDamageIsRefused(t *testing.T) {
	us, _ := populated(t, "")
	snap, _ := snapshotOf(t, us)
	if _, err := VerifySnapshot(bytes.NewReader(snap)); err != nil {
		t.Fatalf("the intact snapshot: %v", err)
	}
	rapid.Check(t, func(t *rapid.T) {
		b := bytes.Clone(snap)
		switch rapid.IntRange(0, 2).Draw(t, "damage") {
		case 0:
			i := rapid.IntRange(0, len(b)-1).Draw(t, "byte")
			b[i] ^= byte(rapid.IntRange(1, 255).Draw(t, "flip"))
		case 1:
			b = b[:rapid.IntRange(0, len(b)-1).Draw(t, "cut")]
		case 2:
			b = append(b, rapid.SliceOfN(rapid.Byte(), 1, 8).Draw(t, "extra")...)
		}
		_, err := VerifySnapshot(bytes.NewReader(b))
		if !errors.Is(err, ErrSnapshot) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("damaged snapshot accepted: %v", err)
		}
	})
	// A cut stream merges what it holds but moves no watermark.
	fresh := openTest(t, "ap", "", nil)
	_, err := fresh.MergeSnapshot(context.Background(), bytes.NewReader(snap[:len(snap)-20]), nil)
	if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("merge of a cut snapshot: %v, want ErrSnapshot (truncated)", err)
	}
	if a := fresh.Applied(); len(a) != 0 {
		t.Fatalf("watermarks after a cut merge = %s, want none", a)
	}
	// A missing record block (the last one removed, the end block kept).
	blocks := splitBlocks(t, snap)
	if len(blocks) < 3 {
		t.Fatalf("snapshot has %d blocks", len(blocks))
	}
	missing := append(bytes.Clone(snapshotMagic), bytes.Join(append(blocks[:1:1], blocks[len(blocks)-1]), nil)...)
	if _, err := VerifySnapshot(bytes.NewReader(missing)); !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("a snapshot without its record blocks: %v, want ErrSnapshot (missing)", err)
	}
}

// splitBlocks cuts a snapshot (after its magic) into its framed blocks.
func splitBlocks(t *testing.T, snap []byte) [][]byte {
	t.Helper()
	var out [][]byte
	b := snap[len(snapshotMagic):]
	for len(b) > 0 {
		r := reader{b: b[1:]}
		n := r.uvarint("len")
		if r.err != nil {
			t.Fatal(r.err)
		}
		size := len(b) - len(r.b) + int(n) + 4
		out = append(out, b[:size])
		b = b[size:]
	}
	return out
}

// TestSnapshotOfOwnActorIsRefused: a snapshot that reflects more of this
// store's actor than it wrote (another store of the same actor) is refused.
func TestSnapshotOfOwnActorIsRefused(t *testing.T) {
	dir := t.TempDir()
	us, _ := populated(t, dir)
	snap, _ := snapshotOf(t, us)
	other := openTest(t, "ap", "", nil)
	hdr := SnapshotHeader{Format: SnapshotFormat, Region: "x", Actor: "x~1", Positions: conflict.VV{other.Actor(): 5}}
	var buf bytes.Buffer
	sw := newSnapshotWriter(&buf)
	if err := sw.header(hdr); err != nil {
		t.Fatal(err)
	}
	if err := sw.end(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.MergeSnapshot(context.Background(), &buf, nil); err == nil || !strings.Contains(err.Error(), "another store of this actor") {
		t.Fatalf("merge of a snapshot naming this actor beyond its log: %v", err)
	}
	_ = snap
}

// TestRestore: restore refuses a non-empty directory and a damaged file
// (leaving the directory empty), and fills an empty one: a new actor, the
// same records, the snapshot's positions.
func TestRestore(t *testing.T) {
	us, _ := populated(t, "")
	snap, _ := snapshotOf(t, us)
	file := filepath.Join(t.TempDir(), "us.snap")
	if err := os.WriteFile(file, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	busy := t.TempDir()
	if err := os.WriteFile(filepath.Join(busy, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(ctx, testOptions(busy, "us"), file); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a non-empty directory: %v, want ErrNotEmpty", err)
	}

	cut := filepath.Join(t.TempDir(), "cut.snap")
	if err := os.WriteFile(cut, snap[:len(snap)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "store")
	if _, err := Restore(ctx, testOptions(dir, "us"), cut); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("restore of a truncated file: %v, want ErrSnapshot", err)
	}
	if empty, _ := DirEmpty(dir); !empty {
		t.Fatalf("a refused restore left %s non-empty", dir)
	}

	res, err := Restore(ctx, testOptions(dir, "us"), file)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if res.Actor == us.Actor() || conflict.RegionOf(res.Actor) != "us" {
		t.Fatalf("restored actor %s; want a new epoch of us (was %s)", res.Actor, us.Actor())
	}
	restored := openTest(t, "us", dir, nil)
	if restored.Actor() != res.Actor {
		t.Fatalf("reopened actor %s, want %s", restored.Actor(), res.Actor)
	}
	if a, b := digestOf(t, us), digestOf(t, restored); a != b {
		t.Fatalf("restored digest %s, want %s", b, a)
	}
	applied := restored.Applied()
	for actor, p := range us.Applied() {
		if applied[actor] != p {
			t.Errorf("restored watermark of %s = %d, want %d", actor, applied[actor], p)
		}
	}
	if restored.Seq() != 0 {
		t.Errorf("restored own sequence %d, want 0 (a new actor)", restored.Seq())
	}
	// It writes under its new actor.
	w := mustWrite(t, restored, Mutation{Key: "u/10", Value: doc(`{"after":"restore"}`), Supersede: true})
	if w.Event.Version.Dot.Actor != res.Actor || len(w.Record.Versions) != 1 {
		t.Fatalf("write after restore: %+v", w)
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
