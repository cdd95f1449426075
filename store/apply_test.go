package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/geogate/geogate/conflict"
)

// threeEvents returns three events written by a fresh "eu" store, one per
// key k1..k3.
func threeEvents(t *testing.T) ([]produced, string) {
	t.Helper()
	eu := openTest(t, "eu", "", nil)
	var muts []Mutation
	for i := 1; i <= 3; i++ {
		muts = append(muts, Mutation{Key: fmt.Sprintf("k%d", i), Value: doc(`{"n":%d}`, i)})
	}
	return writeEvents(t, eu, muts...), eu.Actor()
}

func TestApplyInOrder(t *testing.T) {
	evs, origin := threeEvents(t)
	s := openTest(t, "us", "", nil)
	for i, ev := range evs {
		res := mustApply(t, s, ev.incoming())[0]
		if !res.Done || res.Duplicate || !res.Changed || !res.Outcome.Added {
			t.Fatalf("event %d: %+v, want done, changed, added", i+1, res)
		}
		if got := s.Applied()[origin]; got != uint64(i+1) {
			t.Fatalf("after event %d: watermark %d, want %d", i+1, got, i+1)
		}
	}
	for i, ev := range evs {
		rec := mustGet(t, s, ev.Event.Key)
		if len(rec.Versions) != 1 || !rec.Versions[0].Equal(ev.Event.Version) {
			t.Errorf("k%d = %+v, want the event's version", i+1, rec.Versions)
		}
	}
	if st := s.Stats(); st.Applied != 3 || st.Duplicates != 0 || st.Gaps != 0 {
		t.Errorf("stats = %+v, want 3 applied", st)
	}
	if out := mustOutbox(t, s, 0); len(out) != 0 {
		t.Errorf("outbox = %+v, want empty without Forward", out)
	}
}

func TestApplyDuplicateChangesNothing(t *testing.T) {
	evs, origin := threeEvents(t)
	s := openTest(t, "us", "", nil)
	mustApply(t, s, evs[0].incoming(), evs[1].incoming())
	before, _ := digest(t, s)

	// A redelivery, and a forged event reusing OSeq 1 with another value:
	// the watermark alone must make both no-ops.
	forged := evs[0].Event
	forged.Version.Value = jsonDoc(`"forged"`)
	for _, in := range []Incoming{evs[0].incoming(), evs[1].incoming(), {Event: forged}} {
		res := mustApply(t, s, in)[0]
		if !res.Done || !res.Duplicate || res.Changed || res.Outcome.Added {
			t.Errorf("redelivered OSeq %d: %+v, want done duplicate without change", in.Event.OSeq, res)
		}
	}
	if after, _ := digest(t, s); after != before {
		t.Errorf("digest changed by duplicates")
	}
	if got := s.Applied()[origin]; got != 2 {
		t.Errorf("watermark = %d, want 2", got)
	}
	if st := s.Stats(); st.Applied != 2 || st.Duplicates != 3 {
		t.Errorf("stats = %+v, want 2 applied, 3 duplicates", st)
	}
}

func TestApplyWaitsForGap(t *testing.T) {
	evs, origin := threeEvents(t)
	s := openTest(t, "us", "", nil)
	mustApply(t, s, evs[0].incoming())

	res := mustApply(t, s, evs[2].incoming())[0]
	if res.Done || res.Duplicate || res.Changed {
		t.Fatalf("event after a gap: %+v, want not done", res)
	}
	if _, ok, _ := s.Get("k3"); ok {
		t.Fatalf("k3 applied across a gap")
	}
	if got := s.Applied()[origin]; got != 1 {
		t.Fatalf("watermark = %d after a gap, want 1", got)
	}
	if s.Stats().Gaps != 1 {
		t.Errorf("Stats().Gaps = %d, want 1", s.Stats().Gaps)
	}

	// Out of order inside one batch: the later event still waits, the
	// missing one applies.
	got := mustApply(t, s, evs[2].incoming(), evs[1].incoming())
	if got[0].Done || !got[1].Done || got[1].Duplicate {
		t.Fatalf("batch [3,2]: %+v, want [not done, done]", got)
	}
	// Redelivered in order, both are done: 2 as a duplicate, 3 applied.
	got = mustApply(t, s, evs[1].incoming(), evs[2].incoming())
	if !got[0].Done || !got[0].Duplicate || !got[1].Done || got[1].Duplicate || !got[1].Changed {
		t.Fatalf("batch [2,3]: %+v, want [duplicate, applied]", got)
	}
	if got := s.Applied()[origin]; got != 3 {
		t.Fatalf("watermark = %d, want 3", got)
	}
	for _, ev := range evs {
		mustGet(t, s, ev.Event.Key)
	}
}

func TestApplyIgnoresOwnEvents(t *testing.T) {
	s := openTest(t, "us", "", nil)
	own := writeEvents(t, s, Mutation{Key: "k", Value: doc(`1`)})[0]
	before, _ := digest(t, s)
	applied := s.Applied()

	echo := own.Event
	echo.OSeq = 2 // would be "next" if own events were tracked like others
	echo.Version.Dot.Counter = 2
	echo.Version.Value = jsonDoc(`"echo"`)
	for _, in := range []Incoming{own.incoming(), {Event: echo, Forward: true}} {
		res := mustApply(t, s, in)[0]
		if !res.Done || !res.Duplicate || res.Changed {
			t.Errorf("event %+v: %+v, want ignored as duplicate", in.Event, res)
		}
	}
	if after, _ := digest(t, s); after != before {
		t.Errorf("own event changed the records")
	}
	if got := s.Applied(); !got.Equal(applied) {
		t.Errorf("applied = %v, want %v", got, applied)
	}
	if out := mustOutbox(t, s, 0); len(out) != 1 {
		t.Errorf("outbox has %d entries, want only the original write", len(out))
	}
}

// TestApplyRefusesImpossibleEvents: an event no correct region writes (no
// log position, a dot beyond its log position, a context covering its own
// dot, a counter beyond conflict.MaxCounter) is refused whole, before
// anything is written: it could supersede versions nobody saw.
func TestApplyRefusesImpossibleEvents(t *testing.T) {
	evs, _ := threeEvents(t)
	s := openTest(t, "us", "", nil)
	before, _ := digest(t, s)
	for name, mutate := range map[string]func(*conflict.Event){
		"no log position":             func(e *conflict.Event) { e.OSeq = 0 },
		"dot beyond its log position": func(e *conflict.Event) { e.Version.Dot.Counter = e.OSeq + 1 },
		"context covers its own dot":  func(e *conflict.Event) { e.Context = conflict.VV{e.Origin(): e.Version.Dot.Counter} },
		"wrapping counter":            func(e *conflict.Event) { e.Context = conflict.VV{"eu~x": 1<<64 - 1} },
	} {
		ev := evs[0].Event
		mutate(&ev)
		if _, err := s.Apply(t.Context(), []Incoming{{Event: ev}}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Apply = %v, want ErrMalformed", name, err)
		}
	}
	if after, _ := digest(t, s); after != before {
		t.Errorf("refused events changed the store")
	}
}

func TestApplyForward(t *testing.T) {
	evs, origin := threeEvents(t)
	s := openTest(t, "hub", "", nil)
	mine := mustWrite(t, s, Mutation{Key: "local", Value: doc(`0`)})

	in := evs[0].incoming()
	in.Forward = true
	in.Path = []string{"eu", "mid"}
	mustApply(t, s, in)
	// Without Raw the store encodes the event itself.
	noRaw := evs[1].incoming()
	noRaw.Raw, noRaw.Forward = nil, true
	mustApply(t, s, noRaw)
	// Not forwarded: no outbox entry.
	mustApply(t, s, evs[2].incoming())
	// A forwarded duplicate is not forwarded again.
	if res := mustApply(t, s, in)[0]; !res.Duplicate {
		t.Fatalf("redelivery: %+v, want duplicate", res)
	}

	out := mustOutbox(t, s, 0)
	if len(out) != 3 {
		t.Fatalf("outbox has %d entries, want own write + 2 forwarded", len(out))
	}
	if out[0].OSeq != mine.Event.OSeq || out[0].Origin != s.Actor() {
		t.Errorf("entry 1 = %+v, want the local write", out[0])
	}
	f := out[1]
	if f.Seq != 2 || f.Origin != origin || f.OSeq != 1 || !slices.Equal(f.Path, []string{"eu", "mid", "hub"}) {
		t.Errorf("forwarded entry = {Seq %d Origin %s OSeq %d Path %v}, want {2 %s 1 [eu mid hub]}", f.Seq, f.Origin, f.OSeq, f.Path, origin)
	}
	if !bytes.Equal(f.Data, evs[0].Raw) {
		t.Errorf("forwarded data = %q, want the received bytes %q", f.Data, evs[0].Raw)
	}
	if g := out[2]; g.OSeq != 2 || !eventsEqual(decodeEvent(t, g.Data), evs[1].Event) || !slices.Equal(g.Path, []string{"eu", "hub"}) {
		t.Errorf("forwarded without raw = %+v, want event 2 re-encoded, path [eu hub]", g)
	}
	if !slices.Equal(in.Path, []string{"eu", "mid"}) {
		t.Errorf("caller's path modified: %v", in.Path)
	}
	if st := s.Stats(); st.Forwarded != 2 {
		t.Errorf("Stats().Forwarded = %d, want 2", st.Forwarded)
	}
}

// TestApplyBatchAcrossOrigins applies one batch mixing two origins and a
// conflicting key, and checks both watermarks and the sibling frontier.
func TestApplyBatchAcrossOrigins(t *testing.T) {
	eu := openTest(t, "eu", "", nil)
	ap := openTest(t, "ap", "", nil)
	a := writeEvents(t, eu, Mutation{Key: "x", Value: doc(`"eu"`)}, Mutation{Key: "y", Value: doc(`1`)})
	b := writeEvents(t, ap, Mutation{Key: "x", Value: doc(`"ap"`)})
	s := openTest(t, "us", "", nil)
	res := mustApply(t, s, a[0].incoming(), b[0].incoming(), a[1].incoming())
	for i, r := range res {
		if !r.Done || r.Duplicate {
			t.Errorf("event %d: %+v, want applied", i, r)
		}
	}
	if got := s.Applied(); got[eu.Actor()] != 2 || got[ap.Actor()] != 1 {
		t.Errorf("applied = %v, want eu 2, ap 1", got)
	}
	if rec := mustGet(t, s, "x"); len(rec.Versions) != 2 {
		t.Errorf("x = %+v, want two concurrent siblings", rec.Versions)
	}
	if rec := mustGet(t, s, "y"); len(rec.Versions) != 1 || string(rec.Versions[0].Value) != "1" {
		t.Errorf("y = %+v, want value 1", rec.Versions)
	}
}
