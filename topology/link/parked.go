package link

import (
	"cmp"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Parking bounds: a link keeps at most parkLimit messages, of at most
// parkBytes bytes of data in all, parked behind gaps; past either it naks the
// rest with GapDelay. The count leaves most of gapRoom for delivering the
// message that fills a gap.
const (
	parkLimit = 1024
	parkBytes = 64 << 20
)

// parkedMsg is a message Apply left waiting behind a gap in its origin's
// events, held by the link still unacked.
type parkedMsg struct {
	msg    jetstream.Msg
	origin string
	oseq   uint64
	size   int
}

// parking holds the messages Apply left waiting (Verdict Wait), so that they
// are offered again the moment an earlier event of their origin is applied
// instead of after a redelivery delay. Under steady load a nak with a delay
// would let each newer event wait behind the one before it, so that events
// stayed a delay behind for as long as the load lasts; parked ones follow
// the gap's filler at once.
//
// A parked message stays unacked: the link extends its ack deadline
// (InProgress) when it parks it and at least every AckWait/3 while it holds
// it, and naks it when it lets it go, so a crash
// or a lost connection only brings it again. It is owned by the consume
// loop (not safe for concurrent use).
type parking struct {
	msgs        []parkedMsg
	bytes       int
	limit       int // messages; parkBytes bounds their bytes
	lastTouched time.Time
}

func newParking(limit int) *parking { return &parking{limit: limit} }

// park holds the messages of w while the bounds allow and naks the rest with
// delay (they are delivered again after it).
func (p *parking) park(w []parkedMsg, delay time.Duration) {
	for _, m := range w {
		if len(p.msgs) >= p.limit || p.bytes+m.size > parkBytes {
			_ = m.msg.NakWithDelay(delay)
			continue
		}
		// Its deadline ran from its delivery; from here touch keeps it.
		_ = m.msg.InProgress()
		p.msgs = append(p.msgs, m)
		p.bytes += m.size
	}
}

// take removes and returns the parked messages of the given origins, in
// their origins' order (oseq), so that one Apply can take a whole run.
func (p *parking) take(origins []string) []parkedMsg {
	return p.remove(func(m parkedMsg) bool { return slices.Contains(origins, m.origin) })
}

// firsts removes and returns, for each origin, its parked message with the
// lowest oseq: the one an earlier apply by another path (a re-seed, another
// link) would let through first. If it applies, the rest of its origin
// follows (take).
func (p *parking) firsts() []parkedMsg {
	first := map[string]uint64{}
	for _, m := range p.msgs {
		if o, ok := first[m.origin]; !ok || m.oseq < o {
			first[m.origin] = m.oseq
		}
	}
	return p.remove(func(m parkedMsg) bool {
		o, ok := first[m.origin]
		if ok && m.oseq == o {
			delete(first, m.origin) // one per origin, even with duplicates
			return true
		}
		return false
	})
}

// remove takes out the parked messages for which out holds, sorted by
// origin and oseq.
func (p *parking) remove(out func(parkedMsg) bool) []parkedMsg {
	var got []parkedMsg
	kept := p.msgs[:0]
	for _, m := range p.msgs {
		if out(m) {
			got = append(got, m)
			p.bytes -= m.size
		} else {
			kept = append(kept, m)
		}
	}
	clear(p.msgs[len(kept):])
	p.msgs = kept
	slices.SortStableFunc(got, func(a, b parkedMsg) int {
		if c := cmp.Compare(a.origin, b.origin); c != 0 {
			return c
		}
		return cmp.Compare(a.oseq, b.oseq)
	})
	return got
}

// touch extends the ack deadline of every parked message when every has
// passed since the last time, so that the server does not deliver them again
// while the link holds them.
func (p *parking) touch(now time.Time, every time.Duration) {
	if len(p.msgs) == 0 || now.Sub(p.lastTouched) < every {
		return
	}
	p.lastTouched = now
	for _, m := range p.msgs {
		_ = m.msg.InProgress()
	}
}

// release naks every parked message (they come again at once, to the next
// pull) and forgets them.
func (p *parking) release() {
	for _, m := range p.msgs {
		_ = m.msg.Nak()
	}
	clear(p.msgs)
	p.msgs, p.bytes = p.msgs[:0], 0
}
