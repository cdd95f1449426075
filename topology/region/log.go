package region

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrFenced is returned by Log.Append when the log no longer ends where
// the appender believed: another leader appended since. The appender has
// been deposed and must stop acknowledging writes.
var ErrFenced = errors.New("the region log moved on: another node leads")

// HeaderTerm carries the term of the leader that appended an entry.
const HeaderTerm = "Geo-Term"

// HeaderPart marks a message that is one part of an entry too large for
// one message: "i/n" (1-based). An entry of one message has none.
const HeaderPart = "Geo-Part"

// DefaultMaxMessage is the largest message Append sends unless told
// otherwise (NATS's default max_payload is 1MiB).
const DefaultMaxMessage = 512 << 10

// Log is the region's log: a JetStream stream replicated on the region's
// nodes, through which the leader's commits reach the followers. Only the
// leader appends, and every append names the sequence the leader believes
// is last (JetStream's expected-last-sequence): an append by a deposed
// leader, which has not seen the entries its successor appended (at least
// the successor's term marker), is refused by the stream itself. With
// Replicas nodes the stream acknowledges an append once a majority of them
// stored it, which is what lets the leader acknowledge a write as durable
// in the region.
type Log struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	name    string
	subject string
	maxMsg  int
}

// LogStream is the name of region's log stream; LogSubject its subject.
func LogStream(region string) string  { return "GEOLOG_" + region }
func LogSubject(region string) string { return "geogate.log." + region }

// OpenLog creates (or binds to) region's log with replicas copies,
// keeping entries for maxAge (0: for ever) and at most maxBytes (<= 0:
// unbounded). A follower further behind than the log keeps needs a
// snapshot.
func OpenLog(ctx context.Context, js jetstream.JetStream, region string, replicas int, maxAge time.Duration, maxBytes int64) (*Log, error) {
	if maxBytes <= 0 {
		maxBytes = -1
	}
	want := jetstream.StreamConfig{
		Name:        LogStream(region),
		Description: "geogate region log of " + region,
		Subjects:    []string{LogSubject(region)},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      maxAge,
		MaxBytes:    maxBytes,
		Replicas:    max(replicas, 1),
	}
	st, err := js.Stream(ctx, want.Name)
	if err != nil || st.CachedInfo().Config.Replicas != want.Replicas || st.CachedInfo().Config.MaxAge != maxAge {
		if st, err = js.CreateOrUpdateStream(ctx, want); err != nil {
			return nil, fmt.Errorf("region log of %s: %w", region, err)
		}
	}
	return &Log{js: js, stream: st, name: want.Name, subject: want.Subjects[0], maxMsg: DefaultMaxMessage}, nil
}

// SetMaxMessage sets the largest message Append sends (at least 1KiB);
// a larger entry goes in several. It must be below the servers'
// max_payload less room for headers.
func (l *Log) SetMaxMessage(n int) { l.maxMsg = max(n, 1<<10) }

// Append appends one entry of term after sequence after (the last one the
// caller applied; 0 for an empty log) and returns the sequence of its last
// message, once the stream acknowledged it (a majority of the replicas
// hold it). An entry larger than the largest message goes in several
// consecutive messages (HeaderPart), each fenced like the first: Follow
// delivers the entry only once all its parts are in the log, so a leader
// deposed halfway through leaves nothing a follower applies. An append
// that may have failed for a while only (no stream leader, a timeout) is
// tried again until ctx ends: a message the stream took is acknowledged
// again as a duplicate (each carries an identity made of its term and its
// predecessor), never appended twice. It fails with ErrFenced when the
// log's last sequence is not after (or moved on between parts); once ctx
// ends the outcome is unknown: the entry, or its first parts, may be in
// the log, and the next append after the same sequence is fenced if so.
func (l *Log) Append(ctx context.Context, after, term uint64, data []byte) (uint64, error) {
	n := max(1, (len(data)+l.maxMsg-1)/l.maxMsg)
	for i := range n {
		part := data[i*l.maxMsg : min(len(data), (i+1)*l.maxMsg)]
		msg := &nats.Msg{Subject: l.subject, Data: part, Header: nats.Header{HeaderTerm: {strconv.FormatUint(term, 10)}}}
		if n > 1 {
			msg.Header.Set(HeaderPart, fmt.Sprintf("%d/%d", i+1, n))
		}
		// The message's identity: a retry of a message the stream took
		// (its acknowledgement lost, its leader moved) is acknowledged as
		// a duplicate with the sequence it got, not appended again.
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%d.%d.%08x", term, after, crc32.ChecksumIEEE(part)))
		seq, err := l.publish(ctx, msg, after)
		if err != nil {
			return 0, err
		}
		after = seq
	}
	return after, nil
}

// publish sends one message fenced on after, retrying what may be
// transient (a stream leader moving, a lost acknowledgement) until ctx
// ends.
func (l *Log) publish(ctx context.Context, msg *nats.Msg, after uint64) (uint64, error) {
	pause := 20 * time.Millisecond
	for {
		// Each attempt is bounded on its own: a message sent while the
		// stream's leader moves may never be acknowledged, and waiting for
		// that acknowledgement until ctx ends would spend the whole append
		// timeout on one lost message (the retry is a duplicate the
		// stream recognises by its identity).
		actx, cancel := context.WithTimeout(ctx, publishAttempt)
		ack, err := l.js.PublishMsg(actx, msg, jetstream.WithExpectLastSequence(after))
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, fmt.Errorf("%w: %v", ErrFenced, err)
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("append to %s after %d: %w (last attempt: %v)", l.name, after, ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// Last returns the log's last sequence and that entry's term (0, 0 for an
// empty log).
func (l *Log) Last(ctx context.Context) (seq, term uint64, err error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("region log info: %w", err)
	}
	seq = info.State.LastSeq
	if info.State.Msgs == 0 {
		return seq, 0, nil
	}
	m, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		return 0, 0, fmt.Errorf("region log entry %d: %w", seq, err)
	}
	term, _ = strconv.ParseUint(m.Header.Get(HeaderTerm), 10, 64)
	return seq, term, nil
}

// First returns the log's first sequence still kept (1 for a log never
// trimmed; past the last for an empty one).
func (l *Log) First(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("region log info: %w", err)
	}
	return info.State.FirstSeq, nil
}

// ErrFollowStalled is returned by Follow when the log holds entries past
// the follower's position and none arrived for a while: follow again.
var ErrFollowStalled = errors.New("following the region log stalled")

// Entry is one entry of the region log.
type Entry struct {
	Seq, Term uint64
	Data      []byte
}

// ErrTrimmed is returned by Follow when the entries after the follower's
// position are no longer in the log: it needs a snapshot.
var ErrTrimmed = errors.New("the region log no longer holds the entries this node needs: it must be seeded from a snapshot")

// publishAttempt bounds one attempt to append a message.
const publishAttempt = time.Second

// followHeartbeat is the idle heartbeat of a follower's log consumer;
// followStall is how long Follow waits for an entry the log holds before
// it starts over with a new consumer.
const (
	followHeartbeat = time.Second
	followStall     = 3 * time.Second
)

// Follow delivers the entries after sequence after, in order, to apply,
// until ctx ends or apply fails (its error is returned; the caller
// follows again from what it applied). Entries appended while it runs are
// delivered as they come. With each call, through is the sequence of the
// last message read, which is past the last entry when parts a deposed
// leader left were skipped (entries may be empty then): a node that has
// applied through the log's last sequence has every entry; pending is how
// many messages the log held past through when through was delivered (0
// when the follower had read to the log's end then), taken from the
// delivery itself, so a follower learns its lag without asking the
// stream. It fails with ErrTrimmed when the entry after after is gone from
// the log.
func (l *Log) Follow(ctx context.Context, after uint64, apply func(entries []Entry, through, pending uint64) error) error {
	first, err := l.First(ctx)
	if err != nil {
		return err
	}
	if first > after+1 {
		return fmt.Errorf("%w (first kept %d, wanted %d)", ErrTrimmed, first, after+1)
	}
	cons, err := l.js.OrderedConsumer(ctx, l.name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: after + 1,
	})
	if err != nil {
		return fmt.Errorf("follow region log from %d: %w", after+1, err)
	}
	// The ordered consumer lives on one of the region's servers; if that
	// server dies or stalls, the missing heartbeats make nats.go recreate
	// it (elsewhere, likely) after two of them: keep that to seconds, as
	// a follower that receives nothing cannot take over from the leader.
	it, err := cons.Messages(jetstream.PullMaxMessages(512), jetstream.PullHeartbeat(followHeartbeat))
	if err != nil {
		return fmt.Errorf("follow region log from %d: %w", after+1, err)
	}
	// Stopped in the background: while the ordered consumer is being
	// recreated (its server lost: every attempt waits up to 10 s for a
	// JetStream meta leader that may be the lost server) Stop waits for
	// that attempt, and a node promoting itself stops following first.
	defer func() { go it.Stop() }()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			it.Stop()
		case <-stopped:
		}
	}()
	defer close(stopped)
	next := after + 1
	batch := make([]Entry, 0, 64)
	msgs := make(chan jetstream.Msg, 512)
	errc := make(chan error, 1)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					errc <- err
				}
				return
			}
			select {
			case msgs <- m:
			case <-stopped:
				return
			}
		}
	}()
	var parts asm
	// A consumer whose server was lost may take nats.go long to recreate
	// (each attempt waits up to 10 s, with a growing backoff between
	// them): when nothing came for followStall while the log holds
	// entries past next, give it up and follow again with a new one.
	check := time.NewTicker(followStall / 2)
	defer check.Stop()
	heard := time.Now()
	for {
		var m jetstream.Msg
		var ok bool
		select {
		case m, ok = <-msgs:
			heard = time.Now()
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			if time.Since(heard) < followStall {
				continue
			}
			lctx, cancel := context.WithTimeout(ctx, followStall/2)
			last, _, err := l.Last(lctx)
			cancel()
			if err == nil && last >= next {
				return fmt.Errorf("%w: nothing delivered for %s while the log holds %d (wanted %d): following again with a new consumer",
					ErrFollowStalled, time.Since(heard).Round(time.Millisecond), last, next)
			}
			heard = time.Now() // nothing to deliver, or the log is out of reach: look again later
			continue
		}
		if !ok {
			select {
			case err := <-errc:
				return fmt.Errorf("follow region log: %w", err)
			default:
				return ctx.Err()
			}
		}
		batch = batch[:0]
		var pending uint64
		for {
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("follow region log: %w", err)
			}
			seq := meta.Sequence.Stream
			pending = meta.NumPending
			if seq != next {
				return fmt.Errorf("%w (got %d, wanted %d)", ErrTrimmed, seq, next)
			}
			next++
			term, _ := strconv.ParseUint(m.Headers().Get(HeaderTerm), 10, 64)
			if e, whole := parts.add(seq, term, m.Headers().Get(HeaderPart), m.Data()); whole {
				batch = append(batch, e)
			}
			if len(batch) == cap(batch) {
				break
			}
			select {
			case m, ok = <-msgs:
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		if err := apply(batch, next-1, pending); err != nil {
			return err
		}
	}
}

// asm reassembles entries sent in parts (HeaderPart).
type asm struct {
	data []byte
	have int // parts held, 0 when none
}

// add takes one message and returns the entry it completes, if any. A
// message without a part header is an entry; a part that does not follow
// the parts held (a new entry's first part, or a message without parts)
// drops them: their appender was deposed before it sent the rest, so the
// entry was never acknowledged.
func (a *asm) add(seq, term uint64, part string, data []byte) (Entry, bool) {
	if part == "" {
		a.data, a.have = a.data[:0], 0
		return Entry{Seq: seq, Term: term, Data: data}, true
	}
	var i, n int
	if _, err := fmt.Sscanf(part, "%d/%d", &i, &n); err != nil || i < 1 || i > n {
		a.data, a.have = a.data[:0], 0
		return Entry{}, false
	}
	if i != a.have+1 {
		a.data, a.have = a.data[:0], 0
		if i != 1 {
			return Entry{}, false
		}
	}
	a.data = append(a.data, data...)
	a.have++
	if i < n {
		return Entry{}, false
	}
	e := Entry{Seq: seq, Term: term, Data: a.data}
	a.data, a.have = nil, 0
	return e, true
}

// TermAt returns the term of the message at seq; ok is false when the log
// does not hold it (trimmed, or never appended).
func (l *Log) TermAt(ctx context.Context, seq uint64) (term uint64, ok bool, err error) {
	m, err := l.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("region log entry %d: %w", seq, err)
	}
	term, _ = strconv.ParseUint(m.Header.Get(HeaderTerm), 10, 64)
	return term, true, nil
}
