package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// feedOf reads every change after `after` with the prefix.
func feedOf(t testing.TB, s *Store, after uint64, prefix string) []FeedEntry {
	t.Helper()
	var out []FeedEntry
	for {
		page, err := s.ReadFeed(after, prefix, 7) // small pages: paging is exercised too
		if err != nil {
			t.Fatalf("read feed after %d: %v", after, err)
		}
		out = append(out, page.Entries...)
		if page.Next == after {
			return out
		}
		after = page.Next
	}
}

type feedWant struct {
	key, origin string
	oseq        uint64
}

func checkFeed(t testing.TB, got []FeedEntry, first uint64, want []feedWant) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("feed has %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		w := want[i]
		if e.Pos != first+uint64(i) || e.Key != w.key || e.Origin != w.origin || e.OSeq != w.oseq {
			t.Fatalf("entry %d = pos %d %s %s:%d, want pos %d %s %s:%d", i, e.Pos, e.Key, e.Origin, e.OSeq, first+uint64(i), w.key, w.origin, w.oseq)
		}
	}
}

// TestFeedLogsEveryChange: local writes and replicated events that change a
// record get one entry each, at consecutive positions in commit order;
// duplicates and events waiting for a gap get none; each entry carries the
// key's record as committed.
func TestFeedLogsEveryChange(t *testing.T) {
	evs, eu := threeEvents(t)
	s := openTest(t, "us", "", nil)
	mustWrite(t, s, Mutation{Key: "k1", Value: doc(`"us1"`)})
	res := mustApply(t, s, evs[0].incoming(), evs[2].incoming()) // evs[2] waits: a gap
	if !res[0].Changed || res[1].Done {
		t.Fatalf("apply: %+v", res)
	}
	mustApply(t, s, evs[0].incoming()) // a duplicate
	mustWrite(t, s, Mutation{Key: "other/1", Value: doc(`1`)})
	mustApply(t, s, evs[1].incoming(), evs[2].incoming())
	mustWrite(t, s, Mutation{Key: "k1", Deleted: true, Supersede: true})

	us := s.Actor()
	want := []feedWant{{"k1", us, 1}, {"k1", eu, 1}, {"other/1", us, 2}, {"k2", eu, 2}, {"k3", eu, 3}, {"k1", us, 3}}
	got := feedOf(t, s, 0, "")
	checkFeed(t, got, 1, want)
	if s.FeedHead() != 6 {
		t.Fatalf("FeedHead = %d, want 6", s.FeedHead())
	}
	for _, e := range got {
		if !e.Found || !e.Record.Equal(mustGet(t, s, e.Key)) {
			t.Fatalf("entry %d: record %+v, want the committed one %+v", e.Pos, e.Record, mustGet(t, s, e.Key))
		}
	}
	// A prefix keeps the positions of the entries it selects.
	sel := feedOf(t, s, 0, "k")
	if len(sel) != 5 || sel[0].Pos != 1 || sel[2].Pos != 4 || sel[4].Pos != 6 {
		t.Fatalf("prefix k: %+v", sel)
	}
	if got := feedOf(t, s, 4, "other/"); len(got) != 0 {
		t.Fatalf("prefix other/ after 4: %+v", got)
	}
	// A read looks at no more than max changes.
	if page, err := s.ReadFeed(1, "", 3); err != nil || len(page.Entries) != 3 || page.Next != 4 || page.Entries[2].Pos != 4 {
		t.Fatalf("read of 3 after 1: %+v %v", page, err)
	}
	// A read that found no match still moves past what it looked at.
	page, err := s.ReadFeed(0, "none/", 100)
	if err != nil || page.Next != 6 || len(page.Entries) != 0 {
		t.Fatalf("read with no match: %+v %v", page, err)
	}
}

// checkRetained: the log holds from FeedOldest to FeedHead, at least the
// retention (when that many were made) and at most an eighth more plus one
// commit; a read right before the oldest works, one before that is gone.
func checkRetained(t *testing.T, s *Store, retention, groupMax uint64) {
	t.Helper()
	head, oldest := s.FeedHead(), s.FeedOldest()
	held := head - oldest + 1
	if held < min(retention, head) || held > retention+max(retention/8, 1)+groupMax {
		t.Fatalf("log holds %d..%d (%d changes), retention %d", oldest, head, held, retention)
	}
	if got := feedOf(t, s, oldest-1, ""); uint64(len(got)) != held || got[0].Pos != oldest {
		t.Fatalf("read after %d: %d entries, want %d from %d", oldest-1, len(got), held, oldest)
	}
	if oldest < 2 {
		return
	}
	var gone *PositionGoneError
	_, err := s.ReadFeed(oldest-2, "", 100)
	if !errors.As(err, &gone) || !errors.Is(err, ErrPositionGone) || gone.After != oldest-2 || gone.Oldest != oldest {
		t.Fatalf("read after %d: %v, want position gone with oldest %d", oldest-2, err, oldest)
	}
}

// TestFeedRetention: the log keeps at least FeedRetention changes and not
// many more, deleting whole commits' entries from the oldest; a read after
// a pruned position fails with ErrPositionGone naming the oldest retained,
// one after the newest with ErrPositionAhead; positions go on after a
// reopen, and a position is never reused.
func TestFeedRetention(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, "us", dir, func(o *testOpts) { o.FeedRetention = 10 })
	for i := range 25 {
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("k%02d", i), Value: doc(`%d`, i)})
		checkRetained(t, s, 10, 1)
	}
	// One commit per write: at 24 the log held 12 (more than 10 + 10/8)
	// and was pruned to 15..24; 25 is one more.
	if s.FeedOldest() != 15 {
		t.Fatalf("FeedOldest = %d, want 15", s.FeedOldest())
	}
	if _, err := s.ReadFeed(26, "", 100); !errors.Is(err, ErrPositionAhead) {
		t.Fatalf("read after 26: %v, want ErrPositionAhead", err)
	}
	if page, err := s.ReadFeed(25, "", 100); err != nil || len(page.Entries) != 0 || page.Next != 25 {
		t.Fatalf("read after the newest: %+v %v", page, err)
	}
	s.Close()

	s = openTest(t, "us", dir, func(o *testOpts) { o.FeedRetention = 10 })
	if s.FeedHead() != 25 || s.FeedOldest() != 15 {
		t.Fatalf("after reopen: head %d oldest %d, want 25 and 15", s.FeedHead(), s.FeedOldest())
	}
	mustWrite(t, s, Mutation{Key: "after", Value: doc(`1`)})
	if got := feedOf(t, s, 25, ""); len(got) != 1 || got[0].Pos != 26 || got[0].Key != "after" {
		t.Fatalf("after reopen: %+v, want position 26 for the new write", got)
	}

	// Replicated batches commit several changes in one entry, deleted
	// whole.
	eu := openTest(t, "eu", "", nil)
	for b := range 10 {
		var muts []Mutation
		for i := range 4 {
			muts = append(muts, Mutation{Key: fmt.Sprintf("eu/%d/%d", b, i), Value: doc(`1`)})
		}
		var batch []Incoming
		for _, p := range writeEvents(t, eu, muts...) {
			batch = append(batch, p.incoming())
		}
		mustApply(t, s, batch...)
		checkRetained(t, s, 10, 4)
	}
	if (s.FeedOldest()-27)%4 != 0 {
		t.Fatalf("FeedOldest = %d: not the first change of a batch (27 + 4k)", s.FeedOldest())
	}
}

// TestFeedWait: FeedWait hands out a channel only when nothing is past the
// position, and a commit closes it.
func TestFeedWait(t *testing.T) {
	s := openTest(t, "us", "", nil)
	head, ch := s.FeedWait(0)
	if head != 0 || ch == nil {
		t.Fatalf("FeedWait(0) on an empty log = %d, %v", head, ch)
	}
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`1`)})
	select {
	case <-ch:
	default:
		t.Fatal("a commit did not close the FeedWait channel")
	}
	if head, ch := s.FeedWait(0); head != 1 || ch != nil {
		t.Fatalf("FeedWait(0) after a write = %d, %v; want 1 and no channel", head, ch)
	}
}

// TestFeedMatchesChanges: for random interleavings of local writes and
// replicated events (in order, redelivered, or ahead of a gap), the log
// holds exactly one entry per record change, in the order of the changes,
// at consecutive positions; per origin, counters grow.
func TestFeedMatchesChanges(t *testing.T) {
	s := openTest(t, "us", "", nil)
	eu := openTest(t, "eu", "", nil)
	keys := []string{"a", "b", "c"}
	var euEvents []produced
	applied := 0 // euEvents[:applied] are applied at s
	rapid.Check(t, func(rt *rapid.T) {
		start := s.FeedHead()
		var want []feedWant
		for range rapid.IntRange(1, 12).Draw(rt, "ops") {
			key := rapid.SampledFrom(keys).Draw(rt, "key")
			switch rapid.IntRange(0, 3).Draw(rt, "op") {
			case 0: // local write
				res := mustWrite(t, s, Mutation{Key: key, Value: doc(`"us"`), Supersede: rapid.Bool().Draw(rt, "supersede")})
				want = append(want, feedWant{key, s.Actor(), res.Event.OSeq})
			case 1: // eu writes; s applies the next event (in order)
				euEvents = append(euEvents, writeEvents(t, eu, Mutation{Key: key, Value: doc(`"eu"`), Supersede: true})...)
				fallthrough
			case 2: // s applies the next eu event, if any
				if applied == len(euEvents) {
					continue
				}
				ev := euEvents[applied]
				r := mustApply(t, s, ev.incoming())[0]
				applied++
				if r.Changed {
					want = append(want, feedWant{ev.Event.Key, ev.Event.Origin(), ev.Event.OSeq})
				}
			case 3: // a redelivery, and an event beyond a gap: no change
				if applied > 0 {
					mustApply(t, s, euEvents[applied-1].incoming())
				}
				if applied+1 < len(euEvents) {
					mustApply(t, s, euEvents[applied+1].incoming())
				}
			}
		}
		checkFeed(t, feedOf(t, s, start, ""), start+1, want)
		last := map[string]uint64{}
		for _, e := range feedOf(t, s, 0, "") {
			if e.OSeq <= last[e.Origin] {
				rt.Fatalf("origin %s: counter %d after %d", e.Origin, e.OSeq, last[e.Origin])
			}
			last[e.Origin] = e.OSeq
		}
	})
}

// TestFeedEntryCodec: entries round-trip and corrupt ones are refused.
func TestFeedEntryCodec(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		key, origin := rapid.String().Draw(rt, "key"), rapid.String().Draw(rt, "origin")
		oseq := rapid.Uint64().Draw(rt, "oseq")
		b := appendChangeEntry(nil, key, origin, oseq)
		k, o, n, size, err := decodeChangeEntry(1, b)
		if err != nil || k != key || o != origin || n != oseq || size != len(b) {
			rt.Fatalf("round trip: %q %q %d %d %v", k, o, n, size, err)
		}
		cut := rapid.IntRange(0, len(b)-1).Draw(rt, "cut")
		if _, _, _, _, err := decodeChangeEntry(1, b[:cut]); !errors.Is(err, errCorruptChange) {
			rt.Fatalf("truncated to %d of %d bytes: %v", cut, len(b), err)
		}
		// A group: two changes, then a truncated third.
		group := appendChangeEntry(slices.Clip(b), "k2", "o2", 7)
		var got []uint64
		err = decodeChangeGroup(5, group, func(pos uint64, key, origin string, oseq uint64) error {
			got = append(got, pos, oseq)
			return nil
		})
		if err != nil || !slices.Equal(got, []uint64{5, oseq, 6, 7}) {
			rt.Fatalf("group: %v %v", got, err)
		}
		if err := decodeChangeGroup(5, append(group, 1), func(uint64, string, string, uint64) error { return nil }); !errors.Is(err, errCorruptChange) {
			rt.Fatalf("group with a truncated change: %v", err)
		}
	})
}

// TestMergeShowsInFeed: a record that changes by a merge (a snapshot or an
// anti-entropy repair) gets a change-log entry for every version the merge
// brought, and a merge that leaves siblings is shown to the Observer, as
// applying the events would have.
func TestMergeShowsInFeed(t *testing.T) {
	obs := &recordingObserver{}
	us := openTest(t, "us", "", func(o *testOpts) { o.Observer = obs })
	eu := openTest(t, "eu", "", nil)
	mustWrite(t, us, Mutation{Key: "k", Value: doc(`"us"`)})
	mustWrite(t, eu, Mutation{Key: "k", Value: doc(`"eu"`)})
	mustWrite(t, eu, Mutation{Key: "only-eu", Value: doc(`1`)})
	recs, err := eu.Records([]string{"k", "only-eu"})
	if err != nil {
		t.Fatal(err)
	}
	head := us.FeedHead()
	if changed, _, err := us.MergeRecords(t.Context(), recs, false); err != nil || changed != 2 {
		t.Fatalf("merge: %d changed, %v", changed, err)
	}
	checkFeed(t, feedOf(t, us, head, ""), head+1, []feedWant{{"k", eu.Actor(), 1}, {"only-eu", eu.Actor(), 2}})
	settle(t, us)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	var merged []Change
	for _, c := range obs.changes {
		if !c.Local {
			merged = append(merged, c)
		}
	}
	if len(merged) != 1 || merged[0].Key != "k" || len(merged[0].After.Versions) != 2 {
		t.Fatalf("observer saw %+v, want k with two siblings", merged)
	}
	// Merging the same again changes nothing and logs nothing.
	if changed, _, err := us.MergeRecords(t.Context(), recs, false); err != nil || changed != 0 || us.FeedHead() != head+2 {
		t.Fatalf("merge again: %d changed, head %d, %v", changed, us.FeedHead(), err)
	}
}
