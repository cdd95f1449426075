package link

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// This file is ModeOutbox's side of the Publisher: releasing held entries
// once every downstream consumer finished them, and resynchronising with a
// stream that holds less than the publisher had acknowledged.
//
// How a lost tail is noticed. JetStream loses a suffix (by sequence) of an
// unsynced stream, and new messages then reuse the lost sequences. The
// publisher notices (1) when a new message is acknowledged at or below the
// highest sequence it had seen (recordAcks), (2) when a release check finds
// the stream's last sequence below that (releaseOnce), (3) when, after a
// reconnect or a failed round, the newest message it had acknowledged is no
// longer at its sequence (verifyTop). Until then it releases nothing whose
// proof could be stale: a release check is discarded if the connection
// reconnected meanwhile.

// checkStream runs before a publish round. After a failed round it makes
// sure the stream exists (creating it again if it was deleted); in
// ModeOutbox it also resynchronises at the first round and whenever the
// stream is found behind the acknowledged position.
func (p *Publisher) checkStream(ctx context.Context) error {
	p.mu.Lock()
	recheck, resync := p.recheck, p.resync
	p.mu.Unlock()
	if !recheck && !resync {
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
	if p.cfg.Mode == ModeOutbox && !resync {
		p.mu.Lock()
		known := p.lastStreamSeq
		p.mu.Unlock()
		intact := info.State.LastSeq >= known
		if intact {
			if intact, err = p.verifyTop(cctx, st); err != nil {
				return fmt.Errorf("check stream: %w", err)
			}
		}
		p.mu.Lock()
		if intact {
			p.checked = reconnects
		} else {
			p.log.Warn("stream is behind the publisher (lost its unsynced tail, or was deleted); republishing from the outbox",
				"stream_last_seq", info.State.LastSeq, "acked_stream_seq", known)
			p.resync = true
		}
		resync = p.resync
		p.mu.Unlock()
	}
	if !resync {
		p.mu.Lock()
		p.recheck = false
		p.mu.Unlock()
		return nil
	}
	return p.resynchronise(cctx, st, info, reconnects)
}

// verifyTop reports whether the stream still holds, at its sequence, the
// newest message the publisher saw acknowledged (true if there is none).
func (p *Publisher) verifyTop(ctx context.Context, st jetstream.Stream) (bool, error) {
	p.mu.Lock()
	top := p.top
	p.mu.Unlock()
	if top.stream == 0 {
		return true, nil
	}
	raw, err := st.GetMsg(ctx, top.stream)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read message %d of %s: %w", top.stream, p.stream, err)
	}
	m, ok := decodeResume(raw.Header)
	return ok && m.seq == top.entry && m.id == top.id, nil
}

// resynchronise sets the publishing position from the stream's content
// (ModeOutbox). The stream's last message M names the prefix A of the
// outbox that was acknowledged when M was sent, and the highest stream
// sequence S holding an entry of that prefix (HeaderAcked,
// HeaderAckedSeq). Publishing resumes after A if
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
func (p *Publisher) resynchronise(ctx context.Context, st jetstream.Stream, info *jetstream.StreamInfo, reconnects uint64) error {
	last := info.State.LastSeq
	var mark resumeMark
	var markOK bool
	var top storedMsg
	at := time.Now()
	if info.State.Msgs > 0 {
		raw, err := st.GetLastMsgForSubject(ctx, StreamSubjects(p.cfg.Region))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return fmt.Errorf("read last message of %s: %w", p.stream, err)
		default:
			if mark, markOK = decodeResume(raw.Header); markOK {
				top = storedMsg{stream: raw.Sequence, entry: mark.seq, id: mark.id}
			}
			at = raw.Time
		}
	}
	first, err := p.cfg.Outbox.ReadOutbox(0, 1)
	if err != nil {
		return fmt.Errorf("read outbox start: %w", err)
	}
	p.mu.Lock()
	base := p.trimmed
	p.mu.Unlock()
	if len(first) > 0 {
		base = max(base, first[0].Seq-1)
	}
	from := ackedPrefix{seq: base}
	if markOK && mark.acked.seq > base && mark.acked.stream <= last {
		ok, err := p.resumable(ctx, st, mark, base)
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
	p.trimmed = max(p.trimmed, base)
	p.acked, p.prefixTop = from.seq, from.stream
	p.maxSeen = max(p.maxSeen, p.acked)
	p.lastStreamSeq, p.top, p.checked = last, top, reconnects
	p.held.reset()
	if p.acked > p.trimmed {
		p.held.add(p.acked, from.stream, at)
	}
	p.target = p.trimmed
	p.epoch++
	p.resync, p.recheck = false, false
	if p.started {
		p.resyncs++
	}
	p.started = true
	acked, trimmed := p.acked, p.trimmed
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
func (p *Publisher) resumable(ctx context.Context, st jetstream.Stream, m resumeMark, base uint64) (bool, error) {
	if ok, err := p.outboxHas(m.seq, m.id); err != nil || !ok {
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
	return p.outboxHas(at.seq, at.id)
}

// outboxHas reports whether the outbox holds entry seq with message ID id.
func (p *Publisher) outboxHas(seq uint64, id string) (bool, error) {
	es, err := p.cfg.Outbox.ReadOutbox(seq-1, 1)
	if err != nil {
		return false, fmt.Errorf("read outbox entry %d: %w", seq, err)
	}
	return len(es) == 1 && es[0].Seq == seq && MsgID(es[0].Origin, es[0].OSeq) == id, nil
}

// releaseLoop checks the downstream consumers every ReleaseInterval while
// entries are held, until ctx is done.
func (p *Publisher) releaseLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.ReleaseInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !p.holding() {
			continue
		}
		if err := p.releaseOnce(ctx); err != nil && ctx.Err() == nil {
			p.log.Debug("downstream progress check failed", "err", err)
		}
	}
}

// holding reports whether acknowledged entries wait for a release.
func (p *Publisher) holding() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.resync && p.acked > max(p.target, p.trimmed)
}

// downstream is one consumer's progress as read by releaseOnce.
type downstream struct {
	name    string
	missing bool
	done    uint64 // stream sequence it has finished
}

// releaseOnce reads the stream's last sequence and every downstream
// consumer's progress and moves the release target to the highest held
// position whose entries all consumers finished: for each, the stream's
// last sequence (read before the consumer info) when it has nothing
// pending or awaiting an ack, else its ack floor; a missing consumer has
// finished nothing. Entries held longer than MaxHold are released anyway.
// After a reconnect it first verifies that the stream still holds the
// newest acknowledged message. The result is discarded if the connection
// reconnected during the check (the server may have restarted with less)
// or a resynchronisation happened; a stream found behind triggers one.
func (p *Publisher) releaseOnce(ctx context.Context) error {
	p.mu.Lock()
	epoch, known, checked := p.epoch, p.lastStreamSeq, p.checked
	p.mu.Unlock()
	reconnects := p.cfg.Conn.Stats().Reconnects
	ictx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	st, err := p.js.Stream(ictx, p.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		p.markBehind(epoch, 0, known)
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream info %s: %w", p.stream, err)
	}
	last := st.CachedInfo().State.LastSeq
	if last < known {
		p.markBehind(epoch, last, known)
		return nil
	}
	if reconnects != checked {
		intact, err := p.verifyTop(ictx, st)
		if err != nil {
			return err
		}
		if !intact {
			p.markBehind(epoch, last, known)
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
	now := time.Now()
	p.mu.Lock()
	if p.epoch != epoch || p.resync {
		p.mu.Unlock()
		return nil
	}
	p.checked = reconnects
	prev := max(p.target, p.trimmed)
	goal := max(prev, p.held.releasable(finished))
	var forced heldMark
	if p.cfg.MaxHold > 0 {
		if m := p.held.expired(now.Add(-p.cfg.MaxHold)); m.seq > goal {
			forced = m
		}
	}
	target := min(max(goal, forced.seq), p.acked)
	var expired uint64
	if forced.seq > goal {
		expired = forced.seq - goal
		p.expired += expired
	}
	moved := target > p.target
	p.target = max(p.target, target)
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
		select {
		case p.released <- struct{}{}:
		default:
		}
	}
	return nil
}

// markBehind flags the stream as behind the publisher's acknowledged
// position, unless a resynchronisation already happened since epoch, and
// ends the current publish round.
func (p *Publisher) markBehind(epoch, last, known uint64) {
	p.mu.Lock()
	if p.epoch != epoch || p.resync {
		p.mu.Unlock()
		return
	}
	p.resync = true
	p.mu.Unlock()
	p.log.Warn("stream is behind the publisher (lost its unsynced tail, or was deleted); republishing from the outbox",
		"stream_last_seq", last, "acked_stream_seq", known)
	select {
	case p.behind <- struct{}{}:
	default:
	}
}
