package link

import (
	"math"
	"time"
)

// maxTrackedHeartbeats bounds the heartbeats a lagTracker remembers while it
// is behind. Dropping the oldest can only make the reported lag larger.
const maxTrackedHeartbeats = 4096

// hbMark is a heartbeat as received: when, and which stream sequence it
// vouched for.
type hbMark struct {
	recv time.Time
	seq  uint64
}

// lagTracker measures how stale a link is from its peer's heartbeats. It is
// pure bookkeeping (times are passed in) and not safe for concurrent use.
//
// A link is caught up to a heartbeat (received at t, stream_seq s) once it
// has finished every message up to s: the highest stream sequence it acked
// or skipped is >= s with no message up to s left waiting for a redelivery
// (later ones may wait: under steady load after a gap, some newer message
// nearly always waits for a moment behind the one before it), or a
// consumer info requested after t reported nothing pending and nothing
// awaiting an ack (the subject filter may exclude the stream's last
// messages, so the first test alone could never pass).
//
// The lag is:
//   - behind (a heartbeat received that the link has not caught up to):
//     the age of the oldest such heartbeat, the least the link is behind;
//   - caught up while heartbeats keep coming at their usual spacing: 0;
//   - caught up but heartbeats overdue (more than 1.5 times the last spacing
//     since the latest one): the time since the latest heartbeat caught up
//     to, so it grows while the peer is unreachable and never shrinks on
//     mere silence.
type lagTracker struct {
	started     time.Time
	lastContact time.Time
	seenHB      bool
	hbs         []hbMark // received, not yet caught up to; ascending recv
	caught      time.Time
	caughtSet   bool
	processed   uint64              // highest stream seq acked or skipped
	waiting     map[uint64]struct{} // stream seqs waiting behind a gap (parked or nak'd)
	idleAt      time.Time           // send time of the latest info that showed nothing pending
	lastHB      time.Time           // receive time of the latest heartbeat
	spacing     time.Duration       // between the two latest heartbeats
}

// defaultSpacing is the assumed heartbeat spacing before two were seen.
const defaultSpacing = time.Second

func newLagTracker(now time.Time) *lagTracker {
	return &lagTracker{started: now, lastContact: now, waiting: make(map[uint64]struct{})}
}

// contact records a successful exchange with the peer (connect, fetch, info).
func (t *lagTracker) contact(now time.Time) {
	if now.After(t.lastContact) {
		t.lastContact = now
	}
}

// heartbeat records a heartbeat received at recv vouching for stream seq.
func (t *lagTracker) heartbeat(recv time.Time, seq uint64) {
	if t.seenHB && recv.After(t.lastHB) {
		t.spacing = recv.Sub(t.lastHB)
	}
	if recv.After(t.lastHB) {
		t.lastHB = recv
	}
	t.seenHB = true
	t.contact(recv)
	t.hbs = append(t.hbs, hbMark{recv: recv, seq: seq})
	if len(t.hbs) > maxTrackedHeartbeats {
		t.hbs = append(t.hbs[:0], t.hbs[len(t.hbs)-maxTrackedHeartbeats:]...)
	}
	t.advance()
}

// done records that the message at stream seq is finished (acked or skipped).
func (t *lagTracker) done(seq uint64) {
	delete(t.waiting, seq)
	if seq > t.processed {
		t.processed = seq
	}
}

// wait records that the message at stream seq waits behind a gap (parked,
// or nak'd to come again).
func (t *lagTracker) wait(seq uint64) { t.waiting[seq] = struct{}{} }

// settled re-evaluates after a batch of done/wait calls.
func (t *lagTracker) settled() { t.advance() }

// idle records a consumer info, requested at sent, that showed nothing
// pending and nothing awaiting an ack: every message stored before sent is
// finished.
func (t *lagTracker) idle(sent time.Time) {
	if sent.After(t.idleAt) {
		t.idleAt = sent
	}
	clear(t.waiting)
	t.advance()
}

// needsIdleCheck reports whether a heartbeat is known that the acked
// sequence alone does not cover, so that a consumer info could advance lag.
func (t *lagTracker) needsIdleCheck() bool { return len(t.hbs) > 0 }

// advance moves the caught-up mark to the newest heartbeat that qualifies
// and forgets the ones before it.
func (t *lagTracker) advance() {
	if len(t.hbs) == 0 {
		return // nothing to catch up to (and no need to scan waiting)
	}
	oldestWaiting := uint64(math.MaxUint64)
	for seq := range t.waiting {
		oldestWaiting = min(oldestWaiting, seq)
	}
	for i := len(t.hbs) - 1; i >= 0; i-- {
		h := t.hbs[i]
		if (h.seq <= t.processed && h.seq < oldestWaiting) || !h.recv.After(t.idleAt) {
			if !t.caughtSet || h.recv.After(t.caught) {
				t.caught, t.caughtSet = h.recv, true
			}
			t.hbs = append(t.hbs[:0], t.hbs[i+1:]...)
			return
		}
	}
}

// lag returns the link's staleness at now, in seconds (see lagTracker).
// Before any heartbeat it is the time since the last contact with the
// peer; with heartbeats but none caught up to yet, the time since the
// tracker started.
func (t *lagTracker) lag(now time.Time) float64 {
	var ref time.Time
	switch {
	case len(t.hbs) > 0:
		ref = t.hbs[0].recv
	case t.caughtSet:
		spacing := t.spacing
		if spacing <= 0 {
			spacing = defaultSpacing
		}
		if now.Sub(t.lastHB) <= spacing*3/2 {
			return 0
		}
		ref = t.caught
	case t.seenHB:
		ref = t.started
	default:
		ref = t.lastContact
	}
	d := now.Sub(ref).Seconds()
	if d < 0 {
		return 0
	}
	return d
}
