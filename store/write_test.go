package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/geogate/geogate/conflict"
)

func TestWriteThenGet(t *testing.T) {
	s := openTest(t, "us", "", nil)
	if _, ok, err := s.Get("k"); err != nil || ok {
		t.Fatalf("get before write: ok=%v err=%v, want no record", ok, err)
	}
	res := mustWrite(t, s, Mutation{Key: "k", Value: doc(`{"a":1}`)})

	if got := res.Event.Version.Dot; got != (conflict.Dot{Actor: s.Actor(), Counter: 1}) {
		t.Errorf("dot = %v, want %s:1", got, s.Actor())
	}
	if res.Event.Key != "k" || res.Event.Version.Origin != "us" || res.Event.Version.HLC.Wall != baseWall {
		t.Errorf("event = %+v, want key k, origin us, wall %d", res.Event, baseWall)
	}
	if !res.Outcome.Added || len(res.Outcome.Superseded) != 0 {
		t.Errorf("outcome = %+v, want added, nothing superseded", res.Outcome)
	}
	rec := mustGet(t, s, "k")
	if !rec.Equal(res.Record) {
		t.Fatalf("get = %+v, want the write's record %+v", rec, res.Record)
	}
	live := rec.Live()
	if len(live) != 1 || string(live[0].Value) != `{"a":1}` {
		t.Fatalf("live = %+v, want one version {\"a\":1}", live)
	}
}

func TestDeleteWritesTombstone(t *testing.T) {
	s := openTest(t, "us", "", nil)
	w := mustWrite(t, s, Mutation{Key: "k", Value: doc(`{"a":1}`)})
	d := mustWrite(t, s, Mutation{Key: "k", Value: doc(`{"ignored":true}`), Deleted: true, Context: w.Record.Context()})

	rec := mustGet(t, s, "k")
	if len(rec.Versions) != 1 {
		t.Fatalf("versions = %+v, want only the tombstone", rec.Versions)
	}
	v := rec.Versions[0]
	if !v.Deleted || v.Value != nil || v.Dot != d.Event.Version.Dot {
		t.Errorf("version = %+v, want tombstone %v without value", v, d.Event.Version.Dot)
	}
	if len(rec.Live()) != 0 {
		t.Errorf("live = %+v, want none", rec.Live())
	}
	if len(d.Outcome.Superseded) != 1 || d.Outcome.Superseded[0].Dot != w.Event.Version.Dot {
		t.Errorf("superseded = %+v, want the first write", d.Outcome.Superseded)
	}
	if !d.Event.Version.Deleted || d.Event.Version.Value != nil {
		t.Errorf("event = %+v, want a tombstone without value", d.Event.Version)
	}
}

func TestNilContextKeepsSiblings(t *testing.T) {
	s := openTest(t, "us", "", nil)
	a := mustWrite(t, s, Mutation{Key: "k", Value: doc(`1`)})
	b := mustWrite(t, s, Mutation{Key: "k", Value: doc(`2`)})
	if len(b.Outcome.Superseded) != 0 {
		t.Errorf("nil-context write superseded %+v", b.Outcome.Superseded)
	}
	rec := mustGet(t, s, "k")
	if len(rec.Versions) != 2 {
		t.Fatalf("versions = %+v, want both writes as siblings", rec.Versions)
	}
	dots := []conflict.Dot{rec.Versions[0].Dot, rec.Versions[1].Dot}
	if !slices.Contains(dots, a.Event.Version.Dot) || !slices.Contains(dots, b.Event.Version.Dot) {
		t.Fatalf("versions = %+v, want both writes as siblings", rec.Versions)
	}

	// A write with the context of the first write only supersedes that one.
	c := mustWrite(t, s, Mutation{Key: "k", Value: doc(`3`), Context: a.Record.Context()})
	rec = mustGet(t, s, "k")
	if len(rec.Versions) != 2 || len(c.Outcome.Superseded) != 1 || c.Outcome.Superseded[0].Dot != a.Event.Version.Dot {
		t.Fatalf("after write with first context: versions %+v superseded %+v, want first replaced", rec.Versions, c.Outcome.Superseded)
	}
}

func TestSupersedeReplacesAllSiblings(t *testing.T) {
	s := openTest(t, "us", "", nil)
	eu := openTest(t, "eu", "", nil)
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`1`)})
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`2`)})
	remote := writeEvents(t, eu, Mutation{Key: "k", Value: doc(`"eu"`)})
	mustApply(t, s, remote[0].incoming())
	if n := len(mustGet(t, s, "k").Versions); n != 3 {
		t.Fatalf("setup: %d versions, want 3 siblings", n)
	}

	res := mustWrite(t, s, Mutation{Key: "k", Value: doc(`"last"`), Supersede: true})
	rec := mustGet(t, s, "k")
	if len(rec.Versions) != 1 || string(rec.Versions[0].Value) != `"last"` {
		t.Fatalf("versions = %+v, want only the superseding write", rec.Versions)
	}
	if len(res.Outcome.Superseded) != 3 {
		t.Errorf("superseded %d versions, want 3", len(res.Outcome.Superseded))
	}
	// The event carries the context it superseded, so other regions drop
	// the same siblings.
	if !res.Event.Context.Covers(remote[0].Event.Version.Dot) || res.Event.Context[s.Actor()] != 2 {
		t.Errorf("event context = %v, want it to cover eu's dot and %s:2", res.Event.Context, s.Actor())
	}
}

func TestWriteEventsAndOutbox(t *testing.T) {
	s := openTest(t, "us", "", nil)
	var results []WriteResult
	for i := range 5 {
		results = append(results, mustWrite(t, s, Mutation{Key: string(rune('a' + i%3)), Value: doc(`{"i":%d}`, i)}))
	}
	for i, r := range results {
		if r.Event.OSeq != uint64(i+1) {
			t.Errorf("write %d: OSeq = %d, want %d", i, r.Event.OSeq, i+1)
		}
	}
	if s.Seq() != 5 || s.Applied()[s.Actor()] != 5 || s.OutboxHead() != 5 {
		t.Errorf("Seq %d, Applied %v, Committed %d; want 5, own actor at 5, 5", s.Seq(), s.Applied(), s.OutboxHead())
	}
	out := mustOutbox(t, s, 0)
	if len(out) != len(results) {
		t.Fatalf("outbox has %d entries, want %d", len(out), len(results))
	}
	for i, e := range out {
		want := results[i].Event
		if e.Seq != uint64(i+1) || e.Origin != s.Actor() || e.OSeq != want.OSeq || !slices.Equal(e.Path, []string{"us"}) {
			t.Errorf("entry %d = {Seq %d Origin %s OSeq %d Path %v}, want {%d %s %d [us]}", i, e.Seq, e.Origin, e.OSeq, e.Path, i+1, s.Actor(), want.OSeq)
		}
		if got := decodeEvent(t, e.Data); !eventsEqual(got, want) {
			t.Errorf("entry %d data = %+v, want %+v", i, got, want)
		}
	}
	if st := s.Stats(); st.Writes != 5 {
		t.Errorf("Stats().Writes = %d, want 5", st.Writes)
	}
}

func TestWriteAfterApplyHasLaterHLC(t *testing.T) {
	s := openTest(t, "us", "", nil)
	fast := newFakeClock(baseWall)
	fast.advance(time.Hour)
	eu := openTest(t, "eu", "", func(o *testOpts) { o.Clock = conflict.NewClock(fast.now, 0) })
	ev := writeEvents(t, eu, Mutation{Key: "k", Value: doc(`1`)})
	mustApply(t, s, ev[0].incoming())
	w := mustWrite(t, s, Mutation{Key: "k", Value: doc(`2`), Supersede: true})
	if w.Event.Version.HLC.Compare(ev[0].Event.Version.HLC) <= 0 {
		t.Fatalf("local HLC %v not after applied HLC %v", w.Event.Version.HLC, ev[0].Event.Version.HLC)
	}
}

// TestGroupCommit checks that concurrent writers share commits and that
// every acknowledged write is readable with a unique OSeq.
func TestGroupCommit(t *testing.T) {
	s := openTest(t, "us", "", nil)
	const writers, each = 64, 20
	oseqs := make([][]uint64, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				res, err := s.Write(context.Background(), Mutation{Key: keyOf(w, i), Value: doc(`{"w":%d,"i":%d}`, w, i)})
				if err != nil {
					errs <- err
					return
				}
				oseqs[w] = append(oseqs[w], res.Event.OSeq)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("write: %v", err)
	}
	st := s.Stats()
	if st.Writes != writers*each {
		t.Fatalf("Stats().Writes = %d, want %d", st.Writes, writers*each)
	}
	if st.Commits >= st.Writes {
		t.Errorf("Commits = %d, Writes = %d: no batch formed", st.Commits, st.Writes)
	}
	t.Logf("%d writes in %d commits", st.Writes, st.Commits)
	all := slices.Concat(oseqs...)
	slices.Sort(all)
	for i, o := range all {
		if o != uint64(i+1) {
			t.Fatalf("OSeqs are not 1..%d: position %d holds %d", len(all), i, o)
		}
	}
	for w := range writers {
		for i := range each {
			rec := mustGet(t, s, keyOf(w, i))
			if live := rec.Live(); len(live) != 1 || string(live[0].Value) != string(jsonDoc(`{"w":%d,"i":%d}`, w, i)) {
				t.Fatalf("%s = %+v, want its value", keyOf(w, i), live)
			}
		}
	}
}

func keyOf(w, i int) string { return fmt.Sprintf("w%d/%d", w, i) }
