package link

import (
	"sort"
	"time"
)

// maxHeldMarks bounds the marks a heldLog keeps. Past it the log drops every
// other mark, which only makes releases coarser, never unsafe.
const maxHeldMarks = 1 << 16

// heldMark says that every outbox entry with position <= seq is stored in
// the stream at a sequence <= stream, the newest of them acknowledged at
// at (the entries' age for MaxHold).
type heldMark struct {
	seq    uint64
	stream uint64
	at     time.Time
}

// heldLog is ModeOutbox's map from outbox positions to stream sequences for
// the entries published but not yet trimmed. It is pure bookkeeping (times
// are passed in) and not safe for concurrent use.
//
// Stream sequences are not monotone in outbox order: after a failed publish
// a republished entry can be stored after later ones, and a duplicate's ack
// names the original's sequence. The log therefore stores, per mark, the
// highest stream sequence of any entry up to it, so that "every consumer
// finished stream sequence f" releases exactly the marks with stream <= f.
type heldLog struct {
	marks     []heldMark // ascending seq and stream
	streamMax uint64     // highest stream sequence added since the last reset
	limit     int
}

func newHeldLog(limit int) *heldLog { return &heldLog{limit: max(limit, 2)} }

// add records that the entries up to seq are acknowledged, the last run of
// them at stream sequences up to stream. Calls come in ascending seq; a
// call for a position already marked raises the last mark's stream instead.
func (h *heldLog) add(seq, stream uint64, at time.Time) {
	h.streamMax = max(h.streamMax, stream)
	if n := len(h.marks); n > 0 && seq <= h.marks[n-1].seq {
		h.marks[n-1].stream = h.streamMax
		if at.After(h.marks[n-1].at) {
			h.marks[n-1].at = at
		}
		return
	}
	h.marks = append(h.marks, heldMark{seq: seq, stream: h.streamMax, at: at})
	if len(h.marks) > h.limit {
		h.thin()
	}
}

// thin keeps every second mark and the last one. A dropped mark's entries
// are covered by the next kept mark, whose stream and at are no lower, so
// they are released later, never earlier.
func (h *heldLog) thin() {
	n := len(h.marks)
	kept := h.marks[:0]
	for i := 1; i < n; i += 2 {
		kept = append(kept, h.marks[i])
	}
	if n%2 == 1 {
		kept = append(kept, h.marks[n-1])
	}
	clear(h.marks[len(kept):n])
	h.marks = kept
}

// releasable returns the highest marked position whose entries are all
// stored at stream sequences <= finished, or 0 if there is none.
func (h *heldLog) releasable(finished uint64) uint64 {
	i := sort.Search(len(h.marks), func(i int) bool { return h.marks[i].stream > finished })
	if i == 0 {
		return 0
	}
	return h.marks[i-1].seq
}

// expired returns the highest mark whose entries were all acknowledged at
// or before cutoff (the zero mark if none).
func (h *heldLog) expired(cutoff time.Time) heldMark {
	var out heldMark
	for _, m := range h.marks {
		if m.at.After(cutoff) {
			break
		}
		out = m
	}
	return out
}

// release forgets the marks at or below upTo (trimmed entries).
func (h *heldLog) release(upTo uint64) {
	i := sort.Search(len(h.marks), func(i int) bool { return h.marks[i].seq > upTo })
	if i == 0 {
		return
	}
	n := copy(h.marks, h.marks[i:])
	clear(h.marks[n:])
	h.marks = h.marks[:n]
}

// reset forgets everything (the stream was found behind the publisher).
func (h *heldLog) reset() {
	clear(h.marks)
	h.marks = h.marks[:0]
	h.streamMax = 0
}

// len returns the number of marks.
func (h *heldLog) len() int { return len(h.marks) }
