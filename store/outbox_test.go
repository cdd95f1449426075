package store

import (
	"bytes"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func seqs(entries []OutboxEntry) []uint64 {
	out := make([]uint64, len(entries))
	for i, e := range entries {
		out[i] = e.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestReadOutboxAfter(t *testing.T) {
	s := openTest(t, "us", "", nil)
	for i := range 10 {
		mustWrite(t, s, Mutation{Key: "k", Value: doc(`%d`, i)})
	}
	cases := []struct {
		after uint64
		max   int
		want  []uint64
	}{
		{0, 100, seqRange(1, 10)},
		{4, 100, seqRange(5, 10)},
		{4, 3, seqRange(5, 7)},
		{9, 100, seqRange(10, 10)},
		{10, 100, nil},
		{50, 100, nil},
		{0, 0, nil},
	}
	for _, c := range cases {
		got, err := s.ReadOutbox(c.after, c.max)
		if err != nil {
			t.Fatalf("ReadOutbox(%d, %d): %v", c.after, c.max, err)
		}
		if !slices.Equal(seqs(got), c.want) {
			t.Errorf("ReadOutbox(%d, %d) = %v, want %v", c.after, c.max, seqs(got), c.want)
		}
		for _, e := range got {
			if e.OSeq != e.Seq { // only local writes here: OSeq follows Seq
				t.Errorf("entry %d has OSeq %d", e.Seq, e.OSeq)
			}
		}
	}
}

func TestTrimOutbox(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, "us", dir, nil)
	for i := range 10 {
		mustWrite(t, s, Mutation{Key: "k", Value: doc(`%d`, i)})
	}
	if err := s.TrimOutbox(6); err != nil {
		t.Fatalf("trim: %v", err)
	}
	if s.OutboxLen() != 4 {
		t.Errorf("OutboxLen = %d after trim to 6 of 10, want 4", s.OutboxLen())
	}
	trimmedTo := func(first uint64) func() bool {
		return func() bool {
			out := mustOutbox(t, s, 0)
			return len(out) > 0 && out[0].Seq == first
		}
	}
	eventually(t, 5*time.Second, "trim to 6 applied", trimmedTo(7))
	if got := seqs(mustOutbox(t, s, 0)); !slices.Equal(got, seqRange(7, 10)) {
		t.Fatalf("outbox after trim = %v, want 7..10", got)
	}

	// Idempotent, and a lower value is ignored: a later write proves the
	// writer ran a commit after these calls.
	for _, upTo := range []uint64{6, 3, 0} {
		if err := s.TrimOutbox(upTo); err != nil {
			t.Fatalf("trim %d: %v", upTo, err)
		}
	}
	w := mustWrite(t, s, Mutation{Key: "k", Value: doc(`"after"`)})
	if w.Event.OSeq != 11 {
		t.Errorf("OSeq after trim = %d, want 11 (sequences are not reused)", w.Event.OSeq)
	}
	if got := seqs(mustOutbox(t, s, 0)); !slices.Equal(got, seqRange(7, 11)) {
		t.Fatalf("outbox after redundant trims = %v, want 7..11", got)
	}

	// A trim survives a restart.
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = openTest(t, "us", dir, nil)
	if got := seqs(mustOutbox(t, s, 0)); !slices.Equal(got, seqRange(7, 11)) {
		t.Fatalf("outbox after reopen = %v, want 7..11", got)
	}
	if s.OutboxLen() != 5 {
		t.Errorf("OutboxLen after reopen = %d, want 5", s.OutboxLen())
	}
}

// TestTrimOutboxBeyondCommitted checks that a trim past the last committed
// entry never deletes entries written later, before anyone read them.
func TestTrimOutboxBeyondCommitted(t *testing.T) {
	s := openTest(t, "us", "", nil)
	for i := range 3 {
		mustWrite(t, s, Mutation{Key: "k", Value: doc(`%d`, i)})
	}
	if err := s.TrimOutbox(100); err != nil {
		t.Fatalf("trim: %v", err)
	}
	eventually(t, 5*time.Second, "trim applied", func() bool { return len(mustOutbox(t, s, 0)) == 0 })
	for i := range 3 {
		mustWrite(t, s, Mutation{Key: "k", Value: doc(`"new %d"`, i)})
	}
	if got := seqs(mustOutbox(t, s, 0)); !slices.Equal(got, seqRange(4, 6)) {
		t.Fatalf("outbox = %v, want the new entries 4..6", got)
	}
	if s.OutboxLen() != 3 {
		t.Errorf("OutboxLen = %d, want 3", s.OutboxLen())
	}
}

func TestTrimOutboxManyEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 5000 entries")
	}
	s := openTest(t, "us", "", func(o *testOpts) { o.Sync = false })
	muts := make([]Mutation, 5000)
	for i := range muts {
		muts[i] = Mutation{Key: keyOf(i%7, i), Value: doc(`%d`, i)}
	}
	writeConcurrently(t, s, muts, 8)
	if err := s.TrimOutbox(4999); err != nil {
		t.Fatalf("trim: %v", err)
	}
	// More than one commit's worth of deletes: the writer must come back
	// for the rest on its own.
	eventually(t, 10*time.Second, "large trim applied", func() bool {
		out := mustOutbox(t, s, 0)
		return len(out) == 1 && out[0].Seq == 5000
	})
}

// TestOnOutbox: OnOutbox is called after a commit that added outbox
// entries, which are then readable, and not for one that added none.
func TestOnOutbox(t *testing.T) {
	var (
		s     *Store
		calls atomic.Int32
		seen  atomic.Uint64
	)
	s = openTest(t, "us", "", func(o *testOpts) {
		o.OnOutbox = func() {
			calls.Add(1)
			seen.Store(s.OutboxHead())
		}
	})
	if calls.Load() != 0 {
		t.Fatalf("OnOutbox called %d times before any write", calls.Load())
	}
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`1`)})
	if calls.Load() != 1 || seen.Load() != 1 {
		t.Fatalf("after a write: %d calls, head %d at the call; want 1 call with entry 1 readable", calls.Load(), seen.Load())
	}
	if err := s.TrimOutbox(1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the trim", func() bool { return s.OutboxLen() == 0 && s.trimmedCommitted() == 1 })
	if calls.Load() != 1 {
		t.Fatalf("a trim-only commit called OnOutbox (%d calls)", calls.Load())
	}
}

func TestOutboxEncodingRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e := OutboxEntry{
			Seq:    rapid.Uint64().Draw(t, "seq"),
			Origin: rapid.String().Draw(t, "origin"),
			OSeq:   rapid.Uint64().Draw(t, "oseq"),
			Path:   rapid.SliceOfN(rapid.String(), 0, 64).Draw(t, "path"),
			Data:   rapid.SliceOf(rapid.Byte()).Draw(t, "data"),
		}
		got, err := decodeOutbox(e.Seq, encodeOutbox(e))
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if got.Seq != e.Seq || got.Origin != e.Origin || got.OSeq != e.OSeq ||
			!slices.Equal(got.Path, e.Path) || !bytes.Equal(got.Data, e.Data) {
			t.Fatalf("round trip = %+v, want %+v", got, e)
		}
	})
}

func TestOutboxDecodeCorruptNeverPanics(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := rapid.SliceOf(rapid.Byte()).Draw(t, "bytes")
		_, _ = decodeOutbox(1, b) // an error is fine; a panic is not
		// Every strict prefix of a valid entry with a path and no data
		// is rejected.
		e := OutboxEntry{Origin: rapid.StringN(1, 8, 8).Draw(t, "origin"), OSeq: 300, Path: []string{"a", "bb"}}
		enc := encodeOutbox(e)
		cut := rapid.IntRange(0, len(enc)-1).Draw(t, "cut")
		if _, err := decodeOutbox(1, enc[:cut]); err == nil {
			t.Fatalf("prefix of %d/%d bytes decoded without error", cut, len(enc))
		}
	})
}
