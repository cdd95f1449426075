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
	// A read that found no match still moves past what it looked at.
	page, err := s.ReadFeed(0, "none/", 100)
	if err != nil || page.Next != 6 || len(page.Entries) != 0 {
		t.Fatalf("read with no match: %+v %v", page, err)
	}
}

// TestFeedRetention: the log keeps FeedRetention entries; a read after a
// pruned position fails with ErrPositionGone naming the oldest retained,
// one after the newest with ErrPositionAhead; positions go on after a
// reopen, and an entry's position is never reused.
func TestFeedRetention(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, "us", dir, func(o *Options) { o.FeedRetention = 10 })
	for i := range 25 {
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("k%02d", i), Value: doc(`%d`, i)})
	}
	var gone *PositionGoneError
	_, err := s.ReadFeed(3, "", 100)
	if !errors.As(err, &gone) || !errors.Is(err, ErrPositionGone) || gone.After != 3 || gone.Oldest != 16 {
		t.Fatalf("read after 3: %v, want position gone with oldest 16", err)
	}
	if _, err := s.ReadFeed(14, "", 100); !errors.As(err, &gone) || gone.Oldest != 16 {
		t.Fatalf("read after 14: %v, want position gone", err)
	}
	got := feedOf(t, s, 15, "")
	if len(got) != 10 || got[0].Pos != 16 || got[9].Pos != 25 || got[9].Key != "k24" {
		t.Fatalf("read after 15: %+v", got)
	}
	if _, err := s.ReadFeed(26, "", 100); !errors.Is(err, ErrPositionAhead) {
		t.Fatalf("read after 26: %v, want ErrPositionAhead", err)
	}
	if o := s.FeedOldest(); o != 16 {
		t.Fatalf("FeedOldest = %d, want 16", o)
	}
	s.Close()

	s = openTest(t, "us", dir, func(o *Options) { o.FeedRetention = 10 })
	if s.FeedHead() != 25 || s.FeedOldest() != 16 {
		t.Fatalf("after reopen: head %d oldest %d, want 25 and 16", s.FeedHead(), s.FeedOldest())
	}
	mustWrite(t, s, Mutation{Key: "after", Value: doc(`1`)})
	got = feedOf(t, s, 24, "")
	if len(got) != 2 || got[1].Pos != 26 || got[1].Key != "after" {
		t.Fatalf("after reopen: %+v, want position 26 for the new write", got)
	}
	if o := s.FeedOldest(); o != 17 {
		t.Fatalf("FeedOldest = %d, want 17 (retention 10)", o)
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
		k, o, n, err := decodeChangeEntry(1, b)
		if err != nil || k != key || o != origin || n != oseq {
			rt.Fatalf("round trip: %q %q %d %v", k, o, n, err)
		}
		cut := rapid.IntRange(0, len(b)-1).Draw(rt, "cut")
		if _, _, _, err := decodeChangeEntry(1, b[:cut]); !errors.Is(err, errCorruptChange) {
			rt.Fatalf("truncated to %d of %d bytes: %v", cut, len(b), err)
		}
		if _, _, _, err := decodeChangeEntry(1, append(slices.Clip(b), 0)); !errors.Is(err, errCorruptChange) {
			rt.Fatalf("trailing byte: %v", err)
		}
	})
}
