package store

import (
	"context"
	"testing"
	"time"

	"github.com/geogate/geogate/conflict"
)

// TestCollectTombstones: a stable, old tombstone-only record is removed
// (Get finds nothing, the key is gone from lists and the digest), a record
// with a live version or a young or unstable tombstone stays; afterwards a
// duplicate of any event is dropped by its watermark, a repair merge of a
// peer's uncollected copy does not bring it back, and a new write of the
// key starts a fresh record.
func TestCollectTombstones(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock(baseWall)
	eu := openTest(t, "eu", "", func(o *testOpts) { o.Clock = conflict.NewClock(clock.now, 0) })
	var evs []produced
	for _, m := range []Mutation{
		{Key: "gone", Value: doc(`{"v":1}`)},
		{Key: "gone", Deleted: true, Supersede: true},
		{Key: "young", Deleted: true},
		{Key: "live", Value: doc(`{"v":2}`)},
	} {
		clock.advance(time.Second)
		evs = append(evs, writeEvents(t, eu, m)...)
	}
	us := openTest(t, "us", "", nil)
	for _, ev := range evs {
		mustApply(t, us, ev.incoming())
	}
	mustWrite(t, us, Mutation{Key: "mixed", Deleted: true})
	mustWrite(t, us, Mutation{Key: "mixed", Value: doc(`{"v":3}`)}) // a sibling beside the tombstone
	before := digestOf(t, us)

	// Only what safe covers and cutoff passes goes: "young" has a newer
	// HLC than the cutoff.
	youngHLC := mustGet(t, us, "young").Versions[0].HLC.Wall
	goneHLC := mustGet(t, us, "gone").Versions[0].HLC.Wall
	if goneHLC >= youngHLC {
		t.Fatalf("clock went backwards: gone %d young %d", goneHLC, youngHLC)
	}
	notStable := conflict.VV{eu.Actor(): 1, us.Actor(): us.Seq()}
	scan, err := us.CollectTombstones(ctx, notStable, youngHLC+1)
	if err != nil || scan.Collected != 0 {
		t.Fatalf("collection with gone's delete not stable: %+v, %v; want nothing collected", scan, err)
	}
	safe := us.Applied()
	scan, err = us.CollectTombstones(ctx, safe, youngHLC)
	if err != nil {
		t.Fatal(err)
	}
	if scan.Collected != 1 || scan.Held != 2 {
		t.Fatalf("collection = %+v, want gone collected and 2 tombstones held (young, mixed's)", scan)
	}
	if _, ok, _ := us.Get("gone"); ok {
		t.Fatal("gone still has a record")
	}
	for _, k := range []string{"young", "live", "mixed"} {
		if _, ok, _ := us.Get(k); !ok {
			t.Fatalf("%s was collected", k)
		}
	}
	if digestOf(t, us) == before {
		t.Fatal("the digest did not change")
	}
	if keys, _ := us.List("", "", 10, false); len(keys) != 3 {
		t.Fatalf("keys after collection %q, want 3", keys)
	}
	// Duplicates of every event are dropped by the watermarks.
	for _, ev := range evs {
		if res := mustApply(t, us, ev.incoming())[0]; !res.Duplicate {
			t.Fatalf("redelivered %s:%d = %+v, want a duplicate", ev.Event.Origin(), ev.Event.OSeq, res)
		}
	}
	if _, ok, _ := us.Get("gone"); ok {
		t.Fatal("a duplicate brought gone back")
	}
	// A peer that has not collected it yet: a repair merge does not bring
	// the tombstone back (the bound filters it).
	peer, _ := eu.Records([]string{"gone"})
	changed, _, err := us.MergeRecords(ctx, peer, true)
	if err != nil || changed != 0 {
		t.Fatalf("repair merge of the peer's tombstone: changed %d, %v", changed, err)
	}
	if _, ok, _ := us.Get("gone"); ok {
		t.Fatal("a repair merge brought gone back")
	}
	// A new write of the key (the key filter still names it) starts over.
	w := mustWrite(t, us, Mutation{Key: "gone", Value: doc(`{"v":"new"}`), Supersede: true})
	if len(w.Record.Versions) != 1 || string(w.Record.Versions[0].Value) != `{"v":"new"}` {
		t.Fatalf("write after collection: %+v", w.Record)
	}
	if st := us.LifecycleStats(); st.Collected != 1 {
		t.Fatalf("stats %+v, want 1 collected", st)
	}
}

// TestRaiseWatermarks: positions raise watermarks, never lower them, and
// this store's own actor beyond its log is refused.
func TestRaiseWatermarks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "us", "", nil)
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`1`)})
	if err := s.RaiseWatermarks(ctx, conflict.VV{"eu~1": 7, "ap~2": 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.RaiseWatermarks(ctx, conflict.VV{"eu~1": 5}); err != nil {
		t.Fatal(err)
	}
	if a := s.Applied(); a["eu~1"] != 7 || a["ap~2"] != 3 || a[s.Actor()] != 1 {
		t.Fatalf("applied = %s", a)
	}
	if err := s.RaiseWatermarks(ctx, conflict.VV{s.Actor(): 2}); err == nil {
		t.Fatal("raising this store's own actor beyond its log was accepted")
	}
	// They are durable.
	dir := s.opts.Dir
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, "us", dir, nil)
	if a := s.Applied(); a["eu~1"] != 7 || a["ap~2"] != 3 {
		t.Fatalf("applied after reopen = %s", a)
	}
}
