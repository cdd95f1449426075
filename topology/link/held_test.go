package link

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestHeldLogReleasable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	h := newHeldLog(16)
	h.add(10, 100, t0)
	h.add(20, 90, t0.Add(time.Second)) // a republished entry stored earlier: the mark keeps 100
	h.add(30, 130, t0.Add(2*time.Second))
	cases := []struct {
		finished uint64
		want     uint64
	}{
		{0, 0}, {99, 0}, {100, 20}, {129, 20}, {130, 30}, {1 << 40, 30},
	}
	for _, c := range cases {
		if got := h.releasable(c.finished); got != c.want {
			t.Errorf("releasable(%d) = %d, want %d", c.finished, got, c.want)
		}
	}
	if m := h.expired(t0.Add(-time.Nanosecond)); m.seq != 0 {
		t.Errorf("expired before the first ack: %+v", m)
	}
	if m := h.expired(t0.Add(time.Second)); m.seq != 20 || m.stream != 100 {
		t.Errorf("expired(t0+1s) = %+v, want seq 20 stream 100", m)
	}
	h.release(20)
	if h.len() != 1 || h.releasable(1<<40) != 30 || h.releasable(129) != 0 {
		t.Errorf("after release(20): %d marks, releasable %d", h.len(), h.releasable(1<<40))
	}
	h.add(30, 140, t0) // same position again: raises the stream, keeps the later time
	if h.releasable(130) != 0 || h.releasable(140) != 30 {
		t.Errorf("re-add of 30 did not raise its stream seq: %+v", h.marks)
	}
	h.reset()
	if h.len() != 0 || h.releasable(1<<40) != 0 || h.streamMax != 0 {
		t.Errorf("reset left %+v", h)
	}
}

// releasable never releases an entry stored above the finished sequence,
// thinning never makes it release more, and without thinning it releases
// exactly the longest prefix of marks whose entries are all finished;
// expired never releases an entry acknowledged after the cutoff.
func TestHeldLogNeverReleasesUnfinished(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 200).Draw(t, "marks")
		limit := rapid.IntRange(2, 16).Draw(t, "limit")
		thin, full := newHeldLog(limit), newHeldLog(1<<20)
		t0 := time.Unix(0, 0)
		var seqs, streams []uint64 // per mark, as added
		var times []time.Time
		seq := uint64(0)
		for i := range n {
			seq += uint64(rapid.IntRange(1, 5).Draw(t, "step"))
			stream := uint64(rapid.IntRange(1, 1000).Draw(t, "stream"))
			at := t0.Add(time.Duration(i) * time.Second)
			thin.add(seq, stream, at)
			full.add(seq, stream, at)
			seqs, streams, times = append(seqs, seq), append(streams, stream), append(times, at)
		}
		if thin.len() > limit {
			t.Fatalf("%d marks kept, limit %d", thin.len(), limit)
		}
		finished := uint64(rapid.IntRange(0, 1100).Draw(t, "finished"))
		want := uint64(0) // reference: the longest prefix of marks all <= finished
		for i := range seqs {
			if streams[i] > finished {
				break
			}
			want = seqs[i]
		}
		if got := full.releasable(finished); got != want {
			t.Fatalf("releasable(%d) = %d, want %d", finished, got, want)
		}
		if got := thin.releasable(finished); got > want {
			t.Fatalf("thinned log releases %d beyond %d", got, want)
		}
		cutoff := t0.Add(time.Duration(rapid.IntRange(-1, n).Draw(t, "cutoff")) * time.Second)
		m := thin.expired(cutoff)
		for i := range seqs {
			if seqs[i] <= m.seq && times[i].After(cutoff) {
				t.Fatalf("expired(%v) released seq %d acked at %v", cutoff, seqs[i], times[i])
			}
		}
	})
}
