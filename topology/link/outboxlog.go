package link

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// outboxLog is ModeOutbox's side of the Publisher: an acknowledged entry
// stays in the outbox until every downstream consumer finished it (or
// MaxHold passed), and a stream that holds less than the publisher had
// acknowledged (an unsynced tail lost to a power cut, a deleted stream) is
// noticed and republished from the outbox.
//
// How a lost tail is noticed. JetStream loses a suffix (by sequence) of an
// unsynced stream, and new messages then reuse the lost sequences. The
// publisher notices (1) when a new message is acknowledged at or below the
// highest sequence it had seen (acceptLocked), (2) when a release check
// finds the stream's last sequence below that (releaseOnce), (3) when, after
// a reconnect or a failed round, the newest message it had acknowledged is
// no longer at its sequence (verifyNewest). Until then it releases nothing
// whose proof could be stale: a release check is discarded if the
// connection reconnected meanwhile.
//
// Its state is guarded by the Publisher's mutex.
type outboxLog struct {
	// held maps the acknowledged, untrimmed entries to stream sequences.
	held *heldLog
	// releasedThrough is the outbox position every downstream consumer
	// finished (or MaxHold expired): the outbox may be trimmed up to it.
	releasedThrough uint64
	// resync asks the next round to resynchronise with the stream's
	// content; epoch counts resynchronisations, so that a release check
	// begun before one is discarded.
	resync bool
	epoch  uint64
	// verifiedAt is the connection's reconnect count when the stream was
	// last verified to hold the newest acknowledged message.
	verifiedAt uint64
	// started is set after the first resynchronisation (at start).
	started          bool
	resyncs, expired uint64
}

func newOutboxLog(reconnects uint64) *outboxLog {
	// The first round resynchronises: the stream's content says where to
	// resume, instead of republishing every untrimmed entry.
	return &outboxLog{held: newHeldLog(maxHeldMarks), resync: true, verifiedAt: reconnects}
}

var _ logMode = (*outboxLog)(nil)

func (o *outboxLog) statsLocked(s *PublisherStats) { s.Resyncs, s.Expired = o.resyncs, o.expired }

func (o *outboxLog) ackedLocked(seq, stream uint64, at time.Time) { o.held.add(seq, stream, at) }

func (o *outboxLog) trimGoalLocked(p *Publisher) uint64 {
	return min(p.ackedThrough, o.releasedThrough)
}

func (o *outboxLog) trimmedLocked(seq uint64) { o.held.release(seq) }

// acceptLocked refuses a run of acks, and asks for a resynchronisation, if
// one reveals that the stream lost messages it had acknowledged: a new
// message stored at or below the highest sequence seen before.
func (o *outboxLog) acceptLocked(p *Publisher, acks []*jetstream.PubAck) bool {
	if o.resync {
		return false
	}
	top := p.streamTop
	for _, a := range acks {
		if !a.Duplicate && a.Sequence <= top {
			p.log.Warn("stream stored a new message at an old sequence: it lost its tail, republishing from the outbox",
				"stream_seq", a.Sequence, "acked_stream_seq", p.streamTop)
			o.resync = true
			return false
		}
		top = max(top, a.Sequence)
	}
	return true
}

// prepare runs before a publish round. After a failed round it makes sure
// the stream exists (creating it again if it was deleted) and still holds
// what was acknowledged; at the first round, and whenever the stream was
// found behind, it resynchronises.
func (o *outboxLog) prepare(ctx context.Context, p *Publisher) error {
	p.mu.Lock()
	check, resync := p.checkStream, o.resync
	p.mu.Unlock()
	if !check && !resync {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	reconnects := p.cfg.Conn.Stats().Reconnects
	st, err := p.ensureStream(cctx)
	if err != nil {
		return fmt.Errorf("check stream: %w", err)
	}
	info := st.CachedInfo()
	if !resync {
		p.mu.Lock()
		known := p.streamTop
		p.mu.Unlock()
		intact := info.State.LastSeq >= known
		if intact {
			if intact, err = o.verifyNewest(cctx, p, st); err != nil {
				return fmt.Errorf("check stream: %w", err)
			}
		}
		p.mu.Lock()
		if intact {
			o.verifiedAt = reconnects
			p.checkStream = false
		} else {
			p.log.Warn("stream is behind the publisher (lost its unsynced tail, or was deleted); republishing from the outbox",
				"stream_last_seq", info.State.LastSeq, "acked_stream_seq", known)
			o.resync = true
		}
		resync = o.resync
		p.mu.Unlock()
		if !resync {
			return nil
		}
	}
	return o.resynchronise(cctx, p, st, info, reconnects)
}

// verifyNewest reports whether the stream still holds, at its sequence, the
// newest message the publisher saw acknowledged (true if there is none).
func (o *outboxLog) verifyNewest(ctx context.Context, p *Publisher, st jetstream.Stream) (bool, error) {
	p.mu.Lock()
	newest := p.newest
	p.mu.Unlock()
	if newest.stream == 0 {
		return true, nil
	}
	raw, err := st.GetMsg(ctx, newest.stream)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read message %d of %s: %w", newest.stream, p.stream, err)
	}
	m, ok := decodeResume(raw.Header)
	return ok && m.seq == newest.entry && m.id == newest.id, nil
}

// resynchronise sets the publishing position from the stream's content.
// The stream's last message M names the prefix A of the outbox that was
// acknowledged when M was sent, and the highest stream sequence S holding
// an entry of that prefix (HeaderAcked, HeaderAckedSeq). Publishing resumes
// after A if
//   - M is this outbox's entry (same position, same message ID): the
//     outbox is the one that wrote the stream; and
//   - the message now at S is an entry <= A, also this outbox's: it is
//     from the history M's sender saw, not a message appended after a
//     loss (those are entries beyond A), so nothing at or below S was
//     lost, and every entry <= A survived.
//
// Otherwise (empty stream, messages without the headers, a lost tail with
// messages appended before the publisher noticed, a foreign outbox) every
// untrimmed entry is published again. Held marks from before are dropped:
// the stream they pointed into may be gone.
func (o *outboxLog) resynchronise(ctx context.Context, p *Publisher, st jetstream.Stream, info *jetstream.StreamInfo, reconnects uint64) error {
	last := info.State.LastSeq
	var mark resumeMark
	var markOK bool
	var newest storedMsg
	at := p.now()
	if info.State.Msgs > 0 {
		raw, err := st.GetLastMsgForSubject(ctx, StreamSubjects(p.cfg.Region))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return fmt.Errorf("read last message of %s: %w", p.stream, err)
		default:
			if mark, markOK = decodeResume(raw.Header); markOK {
				newest = storedMsg{stream: raw.Sequence, entry: mark.seq, id: mark.id}
			}
			at = raw.Time
		}
	}
	first, err := p.cfg.Outbox.ReadOutbox(0, 1)
	if err != nil {
		return fmt.Errorf("read outbox start: %w", err)
	}
	p.mu.Lock()
	base := p.trimmedThrough
	p.mu.Unlock()
	if len(first) > 0 {
		base = max(base, first[0].Seq-1)
	}
	from := ackedPrefix{seq: base}
	if markOK && mark.acked.seq > base && mark.acked.stream <= last {
		ok, err := o.resumable(ctx, p, st, mark, base)
		if err != nil {
			return err
		}
		if ok {
			from = mark.acked
		} else {
			p.log.Warn("the stream's last message does not prove what it holds; republishing every untrimmed entry",
				"geo_seq", mark.seq, "acked", mark.acked.seq, "acked_stream_seq", mark.acked.stream)
		}
	}

	p.mu.Lock()
	p.trimmedThrough = max(p.trimmedThrough, base)
	p.ackedThrough, p.ackedStreamTop = from.seq, from.stream
	p.readThrough = max(p.readThrough, p.ackedThrough)
	p.streamTop, p.newest = last, newest
	p.checkStream = false
	o.verifiedAt = reconnects
	o.held.reset()
	if p.ackedThrough > p.trimmedThrough {
		o.held.add(p.ackedThrough, from.stream, at)
	}
	o.releasedThrough = p.trimmedThrough
	o.epoch++
	o.resync = false
	if o.started {
		o.resyncs++
	}
	o.started = true
	acked, trimmed := p.ackedThrough, p.trimmedThrough
	p.mu.Unlock()
	select { // a stale signal must not end the next round
	case <-p.behind:
	default:
	}
	p.log.Info("publishing resumes from the stream's content", "after", acked, "trimmed", trimmed, "stream_last_seq", last)
	return nil
}

// resumable checks the two conditions of resynchronise for the stream's
// last message m: it is this outbox's entry m.seq, and the message at
// m.acked.stream is an entry <= m.acked.seq (this outbox's, if still in it).
func (o *outboxLog) resumable(ctx context.Context, p *Publisher, st jetstream.Stream, m resumeMark, base uint64) (bool, error) {
	if ok, err := outboxHas(p.cfg.Outbox, m.seq, m.id); err != nil || !ok {
		return false, err
	}
	raw, err := st.GetMsg(ctx, m.acked.stream)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read message %d of %s: %w", m.acked.stream, p.stream, err)
	}
	at, ok := decodeResume(raw.Header)
	if !ok || at.seq > m.acked.seq {
		return false, nil
	}
	if at.seq <= base {
		return true, nil // trimmed: every downstream region has it
	}
	return outboxHas(p.cfg.Outbox, at.seq, at.id)
}

// outboxHas reports whether the outbox holds entry seq with message ID id.
func outboxHas(ob Outbox, seq uint64, id string) (bool, error) {
	es, err := ob.ReadOutbox(seq-1, 1)
	if err != nil {
		return false, fmt.Errorf("read outbox entry %d: %w", seq, err)
	}
	return len(es) == 1 && es[0].Seq == seq && MsgID(es[0].Origin, es[0].OSeq) == id, nil
}

// background checks the downstream consumers every ReleaseInterval while
// entries are held, until ctx is done.
func (o *outboxLog) background(ctx context.Context, p *Publisher) {
	t := time.NewTicker(p.cfg.ReleaseInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		holding := !o.resync && p.ackedThrough > max(o.releasedThrough, p.trimmedThrough)
		p.mu.Unlock()
		if !holding {
			continue
		}
		if err := o.releaseOnce(ctx, p); err != nil && ctx.Err() == nil {
			p.log.Debug("downstream progress check failed", "err", err)
		}
	}
}

// downstream is one consumer's progress as read by releaseOnce.
type downstream struct {
	name    string
	missing bool
	done    uint64 // stream sequence it has finished
}

// releaseOnce reads the stream's last sequence and every downstream
// consumer's progress and moves releasedThrough to the highest held
// position whose entries all consumers finished: for each, the stream's
// last sequence (read before the consumer info) when it has nothing
// pending or awaiting an ack, else its ack floor; a missing consumer has
// finished nothing. Entries held longer than MaxHold are released anyway.
// After a reconnect it first verifies that the stream still holds the
// newest acknowledged message. The result is discarded if the connection
// reconnected during the check (the server may have restarted with less)
// or a resynchronisation happened; a stream found behind triggers one.
func (o *outboxLog) releaseOnce(ctx context.Context, p *Publisher) error {
	p.mu.Lock()
	epoch, known, verifiedAt := o.epoch, p.streamTop, o.verifiedAt
	p.mu.Unlock()
	reconnects := p.cfg.Conn.Stats().Reconnects
	ictx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	st, err := p.js.Stream(ictx, p.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		o.markBehind(p, epoch, 0, known)
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream info %s: %w", p.stream, err)
	}
	last := st.CachedInfo().State.LastSeq
	if last < known {
		o.markBehind(p, epoch, last, known)
		return nil
	}
	if reconnects != verifiedAt {
		intact, err := o.verifyNewest(ictx, p, st)
		if err != nil {
			return err
		}
		if !intact {
			o.markBehind(p, epoch, last, known)
			return nil
		}
	}
	finished := last
	names := p.downstreamNames()
	progress := make([]downstream, 0, len(names))
	for _, name := range names {
		d := downstream{name: name}
		c, err := st.Consumer(ictx, name)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			d.missing = true
		case err != nil:
			return fmt.Errorf("consumer info %s: %w", name, err)
		default:
			ci := c.CachedInfo()
			d.done = ci.AckFloor.Stream
			if ci.NumPending == 0 && ci.NumAckPending == 0 {
				d.done = last
			}
			d.done = min(d.done, last)
		}
		finished = min(finished, d.done)
		progress = append(progress, d)
	}
	if p.cfg.Conn.Stats().Reconnects != reconnects {
		return errors.New("reconnected during the check")
	}
	now := p.now()
	p.mu.Lock()
	if o.epoch != epoch || o.resync {
		p.mu.Unlock()
		return nil
	}
	o.verifiedAt = reconnects
	prev := max(o.releasedThrough, p.trimmedThrough)
	goal := max(prev, o.held.releasable(finished))
	var forced heldMark
	if p.cfg.MaxHold > 0 {
		if m := o.held.expired(now.Add(-p.cfg.MaxHold)); m.seq > goal {
			forced = m
		}
	}
	target := min(max(goal, forced.seq), p.ackedThrough)
	var expired uint64
	if forced.seq > goal {
		expired = forced.seq - goal
		o.expired += expired
	}
	moved := target > o.releasedThrough
	o.releasedThrough = max(o.releasedThrough, target)
	p.mu.Unlock()
	if expired > 0 {
		var behind []string
		for _, d := range progress {
			switch {
			case d.missing:
				behind = append(behind, d.name+" (missing)")
			case d.done < forced.stream:
				behind = append(behind, d.name)
			}
		}
		p.log.Warn("outbox entries held longer than max_hold trimmed before every downstream region applied them; those regions need re-seeding",
			"entries", expired, "up_to", forced.seq, "max_hold", p.cfg.MaxHold, "consumers_behind", behind)
	}
	if moved {
		signal(p.released)
	}
	return nil
}

// markBehind flags the stream as behind the publisher's acknowledged
// position, unless a resynchronisation already happened since epoch, and
// ends the current publish round.
func (o *outboxLog) markBehind(p *Publisher, epoch, last, known uint64) {
	p.mu.Lock()
	if o.epoch != epoch || o.resync {
		p.mu.Unlock()
		return
	}
	o.resync = true
	p.mu.Unlock()
	p.log.Warn("stream is behind the publisher (lost its unsynced tail, or was deleted); republishing from the outbox",
		"stream_last_seq", last, "acked_stream_seq", known)
	signal(p.behind)
}
