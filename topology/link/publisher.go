package link

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/internal/wait"
)

// OutboxEntry is one event in a region's local replication log.
type OutboxEntry struct {
	// Seq is the entry's position in the local log: gapless and ascending.
	Seq uint64
	// Origin is the actor that wrote the event (e.g. "us-east~a1b2c3").
	Origin string
	// OriginRegion is the region of Origin; it selects the subject.
	OriginRegion string
	// OSeq is the event's position in its origin's order (>= 1).
	OSeq uint64
	// Path lists the regions the event has visited before this one (the
	// publisher appends its own region when it is not already last).
	Path []string
	// Data is the event payload, opaque to this package.
	Data []byte
}

// Outbox is the durable local replication log the Publisher ships. The
// Publisher calls it from one goroutine at a time.
type Outbox interface {
	// ReadOutbox returns up to max entries with Seq > after, in ascending Seq
	// order, from durable storage. Fewer than max (possibly none) means the
	// log holds no more at the moment.
	ReadOutbox(after uint64, max int) ([]OutboxEntry, error)
	// TrimOutbox records that every entry with Seq <= upTo may be deleted:
	// stored in the stream (ModeStream), or finished by every downstream
	// region or held past MaxHold (ModeOutbox). It must be idempotent, and
	// a trim of a position already trimmed is a no-op.
	TrimOutbox(upTo uint64) error
}

// DuplicateWindow is the deduplication window of a region's stream (capped
// at the stream's MaxAge): an entry republished within it after a restart or
// a lost ack is stored once. Longer outages store the copy again and the
// consumer's watermark drops it, so the window is an optimisation, not a
// setting: it only trades the server's memory of message IDs against
// redundant copies after long outages.
const DuplicateWindow = 2 * time.Minute

// duplicateWindow is DuplicateWindow capped at maxAge (0: unbounded).
func duplicateWindow(maxAge time.Duration) time.Duration {
	if maxAge > 0 && maxAge < DuplicateWindow {
		return maxAge
	}
	return DuplicateWindow
}

// DefaultWindow is the publisher's default number of publishes in flight:
// with 256, publishing could not keep pace with a region's writes on the
// development machine; benchmarks use it for their raw baselines too.
const DefaultWindow = 2048

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Region owns the stream GEO_<Region> this publisher writes (required).
	Region string
	// Conn is a connection to the region's own NATS (required). Use
	// nats.MaxReconnects(-1) so that the publisher survives server restarts.
	Conn *nats.Conn
	// Outbox is the log to ship (required).
	Outbox Outbox
	// MaxAge and MaxBytes bound the stream (limits retention); zero means
	// unbounded. A peer away longer than MaxAge cannot catch up from the log.
	MaxAge   time.Duration
	MaxBytes int64
	// Replicas is the stream's replica count, 1 to 5 (JetStream's limit);
	// default 1. More than 1 needs a clustered JetStream with at least that
	// many servers: a single server refuses the stream, and NewPublisher
	// fails. The consumers on the stream inherit it. A changed value
	// updates the existing stream (a cluster adds or drops copies).
	Replicas int
	// Window is the number of asynchronous publishes awaiting their ack
	// (default DefaultWindow).
	Window int
	// Heartbeat is the heartbeat interval (default 1s).
	Heartbeat time.Duration
	// Clock is the publisher's time (default conflict.WallClock): every
	// time it records or compares (heartbeat times, when entries were
	// acknowledged for MaxHold, how long it has been stalled or behind),
	// so tests can move time; timers still run on the wall clock.
	Clock conflict.PhysicalClock
	// Logger receives the publisher's log; nil discards it.
	Logger *slog.Logger
	// AckTimeout bounds the wait for one publish ack before the publisher
	// backs off and republishes (default 5s).
	AckTimeout time.Duration

	// Mode decides when a published entry is trimmed: ModeStream (the
	// default) on its publish ack, ModeOutbox once every Downstream
	// consumer finished it. See the modes' comments for what each needs
	// from the server and what each guarantees.
	Mode Mode
	// Downstream (ModeOutbox only) names the durable consumers expected on
	// this region's stream: for every region d that pulls from it (each
	// outbound link Region -> d of the topology plan),
	// ConsumerName(Region, d) -- the stream's region first, the puller
	// second. A name whose consumer does not exist holds every entry (its
	// region has not connected yet, or it is not a region of the plan) but
	// never holds publishing. Empty: no region reads the stream and entries
	// are trimmed at the first release check after their ack.
	Downstream []string
	// MaxHold (ModeOutbox only) is the age past which an acknowledged entry
	// is trimmed even if a downstream consumer has not finished it (logged
	// at warn level; that region must be re-seeded, as when the stream's
	// retention drops what it never read). Default MaxAge; zero with MaxAge
	// zero, or a negative MaxHold, holds entries for ever.
	MaxHold time.Duration
	// ReleaseInterval (ModeOutbox only) is how often, while entries are
	// held, the publisher reads the downstream consumers' progress
	// (default 200ms).
	ReleaseInterval time.Duration
}

// PublisherStats is a snapshot of a Publisher's progress.
type PublisherStats struct {
	// Published counts outbox entries confirmed stored by a publish ack,
	// duplicates included, since the Publisher was created.
	Published uint64
	// Duplicates counts acks that reported the entry as already stored
	// (republished after a restart or a publish error).
	Duplicates uint64
	// LastStreamSeq is the highest stream sequence seen in a publish ack (or
	// the stream's last sequence when the Publisher was created or last
	// resynchronised).
	LastStreamSeq uint64
	// Acked is the end of the contiguous outbox prefix the stream has
	// acknowledged: the next publish starts after it.
	Acked uint64
	// Trimmed is the last outbox position trimmed (in ModeOutbox, at least
	// the position before the outbox's first entry when the publisher
	// started).
	Trimmed uint64
	// Backlog estimates the entries not yet trimmed: the highest position
	// read from the outbox minus Trimmed. Entries committed but not yet read
	// are not counted. In ModeOutbox it includes the entries published and
	// held for a downstream region.
	Backlog uint64
	// Errors counts failures that were retried: publish rounds (publish
	// error, ack timeout, outbox read error, stream check) and outbox trims.
	Errors uint64
	// Resyncs counts the times (ModeOutbox) the running publisher found the
	// stream behind what it had acknowledged -- a lost unsynced tail, a
	// deleted stream -- and republished from the outbox.
	Resyncs uint64
	// Expired counts entries (ModeOutbox) trimmed by MaxHold before every
	// downstream consumer had finished them.
	Expired uint64
	// State is PublisherOK, or PublisherStalled once stallAfter publish
	// rounds in a row failed (Reason says why, Since when the first of
	// them failed); it is ok again at the next acknowledged publish.
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitempty"`
	// Stalls counts the times the publisher stalled.
	Stalls uint64
	// Behind is how long the oldest outbox entry the publisher has read
	// and the stream has not acknowledged has been waiting (0 when none):
	// what heartbeats report to the peers as the lag they cannot see.
	Behind time.Duration
}

// Publisher states (PublisherStats.State).
const (
	PublisherOK      = "ok"
	PublisherStalled = "stalled"
)

// stallAfter is how many failed publish rounds in a row make the publisher
// stalled (with the backoff between rounds, about half a second of
// failures).
const stallAfter = 3

// Publisher ships a region's outbox into its stream, in outbox order, and
// trims what its log mode allows: ModeStream what the stream has
// acknowledged, ModeOutbox what every downstream region has finished.
//
// It is one state machine, read top to bottom in this file:
//
//  1. publish (pump): read entries after the acknowledged prefix, publish
//     them asynchronously in outbox order, up to Window in flight;
//  2. ack (recordAck): a contiguous run of publish acks extends the
//     acknowledged prefix; the mode may refuse the run first (ModeOutbox:
//     an ack that reveals a lost stream tail);
//  3. trim (trim): the outbox is trimmed up to the position the mode
//     allows;
//  4. on a failed round: collect the acks still arriving, back off, and
//     start again at 1, after the mode's check of the stream (ModeOutbox:
//     resynchronise from the stream's content when it is behind).
//
// What each mode adds (logMode): streamLog and outboxLog (outboxlog.go).
//
// Durability: an entry is trimmed only after JetStream acknowledged it, so a
// crash (of the process or of the NATS server) never loses an entry; it can
// only leave entries published but not trimmed. In ModeOutbox the entry is
// further kept until the downstream consumers acked it, so that a tail the
// stream loses (lazy sync and a power loss) is republished: see ModeOutbox.
// Untrimmed entries are republished on restart (in ModeOutbox only those
// after the prefix the stream is proven to hold) with the same Nats-Msg-Id
// (origin:oseq). Within the stream's duplicate window JetStream drops them
// and acks them as duplicates, which the publisher counts as stored. After a
// longer outage the copy is stored twice, and consumers drop the second by
// their per-origin watermark (oseq <= watermark is a no-op), which Appliers
// must do anyway.
//
// Ordering: entries are published on one connection in outbox order and the
// stream stores them in that order, except after a failure: if publish k is
// lost (timeout, disconnect) while k+1 was stored, k is stored later by the
// republish. Consumers therefore see per-origin order with possible gaps,
// which the Applier's watermark check resolves by waiting (Wait).
type Publisher struct {
	cfg    PublisherConfig
	js     jetstream.JetStream
	stream string
	log    *slog.Logger
	mode   logMode
	// notify wakes the pump when entries were committed (Notify);
	// released when the mode allows a further trim; behind when the mode
	// found the stream behind the acknowledged prefix (ends the round).
	notify, released, behind chan struct{}
	running                  atomic.Bool

	// mu guards everything below and the mode's state; nothing else is
	// held with it, and no I/O is done under it.
	mu sync.Mutex
	// The acknowledged prefix: every outbox entry up to ackedThrough is
	// stored in the stream, at stream sequences up to ackedStreamTop (0:
	// not known since a resynchronisation).
	ackedThrough, ackedStreamTop uint64
	// streamTop is the highest stream sequence seen in an ack (or read at a
	// resynchronisation); newest is the message stored there.
	streamTop uint64
	newest    storedMsg
	// trimmedThrough is the last outbox position trimmed; readThrough the
	// highest position read from the outbox.
	trimmedThrough, readThrough uint64
	// checkStream asks the next round to make sure the stream exists first
	// (set after a failed round).
	checkStream bool
	// unackedSince is when the oldest entry read and not yet acknowledged
	// was read (zero when there is none).
	unackedSince time.Time
	// Counters, and failure tracking: failures counts failed rounds since
	// the last acknowledged publish, failedSince when the first failed.
	published, duplicates, errors, stalls uint64
	failures                              int
	failedSince                           time.Time
	lastErr                               string
	stalled                               bool
}

// storedMsg is a message the stream acknowledged: at sequence stream it
// holds outbox entry entry with message ID id. If the stream later holds
// something else there, it lost its tail.
type storedMsg struct {
	stream, entry uint64
	id            string
}

// NewPublisher validates cfg and creates the region's stream, or updates its
// limits if it exists: GEO_<Region>, subjects geo.<Region>.*, file storage,
// limits retention (MaxAge, MaxBytes, discard old), deduplication window.
// It needs the connection to be up.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if err := ValidateRegion(cfg.Region); err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	if cfg.Conn == nil || cfg.Outbox == nil {
		return nil, errors.New("new publisher: conn and outbox are required")
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = conflict.WallClock
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 5 * time.Second
	}
	mode, err := ParseMode(string(cfg.Mode))
	if err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	cfg.Mode = mode
	cfg.Downstream = slices.Clone(cfg.Downstream)
	slices.Sort(cfg.Downstream)
	cfg.Downstream = slices.Compact(cfg.Downstream)
	for _, d := range cfg.Downstream {
		if d == "" || sanitizeName(d) != d {
			return nil, fmt.Errorf("new publisher: downstream consumer name %q is not a valid durable name", d)
		}
	}
	if cfg.MaxHold == 0 {
		cfg.MaxHold = cfg.MaxAge
	}
	if cfg.ReleaseInterval <= 0 {
		cfg.ReleaseInterval = 200 * time.Millisecond
	}
	js, err := jetstream.New(cfg.Conn,
		jetstream.WithPublishAsyncMaxPending(cfg.Window),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	p := &Publisher{
		cfg:      cfg,
		js:       js,
		stream:   StreamName(cfg.Region),
		log:      cfg.Logger.With("component", "publisher", "region", cfg.Region, "mode", cfg.Mode.String()),
		notify:   make(chan struct{}, 1),
		released: make(chan struct{}, 1),
		behind:   make(chan struct{}, 1),
	}
	p.mode = streamLog{}
	if cfg.Mode == ModeOutbox {
		p.mode = newOutboxLog(cfg.Conn.Stats().Reconnects)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := p.ensureStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	p.streamTop = st.CachedInfo().State.LastSeq
	return p, nil
}

// now is the publisher's clock.
func (p *Publisher) now() time.Time { return p.cfg.Clock() }

// logMode is what a log mode adds to the publisher: when the stream must be
// checked before a round, which acks it refuses, what it keeps about the
// acknowledged entries, how far the outbox may be trimmed, and its own
// background work. Its methods whose names end in Locked are called with
// p.mu held; the others take it themselves as needed.
type logMode interface {
	// prepare runs before a publish round, which it fails by returning an
	// error (the round is retried after a backoff).
	prepare(ctx context.Context, p *Publisher) error
	// acceptLocked vets a run of acks before they are recorded; false
	// refuses them (the stream lost its tail) and ends the round.
	acceptLocked(p *Publisher, acks []*jetstream.PubAck) bool
	// ackedLocked is told that the entries through seq are stored at
	// stream sequences up to stream, acknowledged at at.
	ackedLocked(seq, stream uint64, at time.Time)
	// trimGoalLocked returns the outbox position the outbox may be
	// trimmed up to now.
	trimGoalLocked(p *Publisher) uint64
	// trimmedLocked is told the outbox is trimmed through seq.
	trimmedLocked(seq uint64)
	// background runs the mode's own work until ctx ends.
	background(ctx context.Context, p *Publisher)
	// statsLocked adds the mode's counters.
	statsLocked(s *PublisherStats)
}

// streamLog is ModeStream: the stream is the durable copy once it
// acknowledged an entry, so the outbox is trimmed up to the acknowledged
// prefix, and the stream is only checked (created again if deleted) after
// a failed round.
type streamLog struct{}

func (streamLog) prepare(ctx context.Context, p *Publisher) error {
	p.mu.Lock()
	check := p.checkStream
	p.mu.Unlock()
	if !check {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	if _, err := p.ensureStream(cctx); err != nil {
		return fmt.Errorf("check stream: %w", err)
	}
	p.mu.Lock()
	p.checkStream = false
	p.mu.Unlock()
	return nil
}

func (streamLog) acceptLocked(*Publisher, []*jetstream.PubAck) bool { return true }
func (streamLog) ackedLocked(uint64, uint64, time.Time)             {}
func (streamLog) trimGoalLocked(p *Publisher) uint64                { return p.ackedThrough }
func (streamLog) trimmedLocked(uint64)                              {}
func (streamLog) background(context.Context, *Publisher)            {}
func (streamLog) statsLocked(*PublisherStats)                       {}

// ensureStream creates the region's stream, or updates its limits if they
// differ, and returns it with fresh info. A stream that already has the
// wanted configuration is left alone: an update is not free, and in
// nats-server v2.15.2 a stream update racing a consumer being created on
// the same stream is a data race inside the server (the links of other
// regions create consumers whenever they connect).
func (p *Publisher) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	maxBytes := p.cfg.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	want := jetstream.StreamConfig{
		Name:        p.stream,
		Description: "geogate replication log of region " + p.cfg.Region,
		Subjects:    []string{StreamSubjects(p.cfg.Region)},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      p.cfg.MaxAge,
		MaxBytes:    maxBytes,
		Replicas:    p.cfg.Replicas,
		Duplicates:  duplicateWindow(p.cfg.MaxAge),
	}
	// The stream's info is answered by its leader; creating or updating
	// it needs JetStream's metadata leader too, which after a server's
	// loss may take much longer to come back: a stream that exists is
	// waited for (a transient error is retried until ctx ends) rather
	// than "created" again.
	for {
		st, err := p.js.Stream(ctx, p.stream)
		if err == nil && sameStreamConfig(st.CachedInfo().Config, want) {
			return st, nil
		}
		if err == nil || errors.Is(err, jetstream.ErrStreamNotFound) {
			break
		}
		if werr := wait.Sleep(ctx, 100*time.Millisecond); werr != nil {
			return nil, fmt.Errorf("stream %s: %w", p.stream, err)
		}
	}
	st, err := p.js.CreateOrUpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", p.stream, err)
	}
	return st, nil
}

// sameStreamConfig reports whether the stream's configuration has every
// setting the publisher asks for (the server fills in others).
func sameStreamConfig(have, want jetstream.StreamConfig) bool {
	replicas := max(want.Replicas, 1)
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Storage == want.Storage && have.Retention == want.Retention && have.Discard == want.Discard &&
		have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes && have.Replicas == replicas &&
		have.Duplicates == want.Duplicates
}

// Notify tells the publisher that new entries were committed to the outbox.
// It never blocks; notifications coalesce.
func (p *Publisher) Notify() { signal(p.notify) }

// signal sends on a channel of capacity one without blocking; signals
// coalesce.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PublisherStats{
		Published:     p.published,
		Duplicates:    p.duplicates,
		LastStreamSeq: p.streamTop,
		Acked:         p.ackedThrough,
		Trimmed:       p.trimmedThrough,
		Errors:        p.errors,
		State:         PublisherOK,
		Stalls:        p.stalls,
	}
	p.mode.statsLocked(&s)
	if p.stalled {
		s.State, s.Reason, s.Since = PublisherStalled, p.lastErr, p.failedSince
	}
	if !p.unackedSince.IsZero() {
		s.Behind = now.Sub(p.unackedSince)
	}
	if p.readThrough > p.trimmedThrough {
		s.Backlog = p.readThrough - p.trimmedThrough
	}
	return s
}

// Run ships the outbox until ctx is done, then returns nil (an error only if
// Run is already running). It runs the state machine described at
// Publisher, the mode's background work beside it (ModeOutbox: checking
// the downstream consumers every ReleaseInterval while entries are held),
// and a heartbeat on HeartbeatSubject(Region) every Heartbeat (core NATS,
// best effort). A publish error or ack timeout (or an outbox read error)
// makes it collect the acks still arriving for the contiguous prefix, wait
// (capped exponential backoff) and start a new round; JetStream's
// deduplication makes republishing safe. A trim error is logged and the
// trim retried later (trims are cumulative). When the outbox is empty it
// waits for Notify.
func (p *Publisher) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("publisher: already running")
	}
	defer p.running.Store(false)
	bctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { p.mode.background(bctx, p) })
	defer func() {
		stop()
		wg.Wait()
	}()
	hb := time.NewTicker(p.cfg.Heartbeat)
	defer hb.Stop()
	p.sendHeartbeat()
	bo := newBackoff(50*time.Millisecond, 5*time.Second)
	for {
		queue, err := p.pump(ctx, hb.C, bo)
		if ctx.Err() != nil {
			return nil
		}
		p.noteFailure(err)
		p.harvest(ctx, queue)
		p.settle(ctx)
		p.mu.Lock()
		p.checkStream = true
		p.mu.Unlock()
		wait := time.NewTimer(bo.next())
	backoff:
		for {
			select {
			case <-wait.C:
				break backoff
			case <-hb.C:
				p.sendHeartbeat()
			case <-p.released:
				p.trim()
			case <-ctx.Done():
				wait.Stop()
				return nil
			}
		}
	}
}

// inflight is one publish awaiting its ack.
type inflight struct {
	seq uint64 // outbox position
	id  string // message ID
	fut jetstream.PubAckFuture
}

// errStreamBehind reports that the stream holds less than the publisher had
// acknowledged (ModeOutbox): the round ends and the next one resynchronises.
var errStreamBehind = errors.New("stream is behind the acknowledged position")

// pump is one publish round (steps 1-3): from the acknowledged prefix until
// an error (returned with the publishes still in flight) or until ctx is
// done.
func (p *Publisher) pump(ctx context.Context, hb <-chan time.Time, bo *backoff) ([]inflight, error) {
	if err := p.mode.prepare(ctx, p); err != nil {
		return nil, err
	}
	p.trim()
	p.mu.Lock()
	next := p.ackedThrough
	p.mu.Unlock()
	window := p.cfg.Window
	refill := max(1, window/4)
	queue := make([]inflight, 0, window)
	drained := false
	for {
		if ctx.Err() != nil {
			return queue, nil
		}
		space := window - len(queue)
		if !drained && space > 0 && (len(queue) == 0 || space >= refill) {
			entries, err := p.cfg.Outbox.ReadOutbox(next, space)
			if err != nil {
				return queue, fmt.Errorf("read outbox after %d: %w", next, err)
			}
			if len(entries) < space {
				drained = true
			}
			acked := p.noteRead(entries)
			for _, e := range entries {
				if e.Seq <= next {
					return queue, fmt.Errorf("read outbox after %d: got seq %d, not ascending", next, e.Seq)
				}
				msg := encodeMsg(p.cfg.Region, e, acked)
				fut, err := p.js.PublishMsgAsync(msg)
				if err != nil {
					return queue, fmt.Errorf("publish seq %d: %w", e.Seq, err)
				}
				queue = append(queue, inflight{seq: e.Seq, id: msg.Header.Get(HeaderMsgID), fut: fut})
				next = e.Seq
			}
			if len(entries) > 0 {
				continue
			}
		}
		if len(queue) == 0 {
			select {
			case <-p.notify:
				drained = false
			case <-hb:
				p.sendHeartbeat()
				p.trim()
			case <-p.released:
				p.trim()
			case <-p.behind:
				return queue, errStreamBehind
			case <-ctx.Done():
				return queue, nil
			}
			continue
		}
		select {
		case ack := <-queue[0].fut.Ok():
			acks := []*jetstream.PubAck{ack}
		more:
			for len(acks) < len(queue) {
				select {
				case ack := <-queue[len(acks)].fut.Ok():
					acks = append(acks, ack)
				default:
					break more
				}
			}
			sent := queue[:len(acks)]
			queue = queue[len(acks):]
			if !p.recordAcks(acks, sent) {
				return queue, errStreamBehind
			}
			bo.reset()
			p.trim()
		case err := <-queue[0].fut.Err():
			return queue, fmt.Errorf("publish seq %d: %w", queue[0].seq, err)
		case <-p.notify:
			drained = false
		case <-hb:
			p.sendHeartbeat()
		case <-p.released:
			p.trim()
		case <-p.behind:
			return queue, errStreamBehind
		case <-ctx.Done():
			return queue, nil
		}
	}
}

// noteRead records entries just read for publishing and returns the
// acknowledged prefix their messages announce (HeaderAcked): nothing a
// resynchronisation could verify when its stream sequence is unknown.
func (p *Publisher) noteRead(entries []OutboxEntry) ackedPrefix {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(entries) > 0 {
		p.readThrough = max(p.readThrough, entries[len(entries)-1].Seq)
		if p.unackedSince.IsZero() {
			p.unackedSince = p.now()
		}
	}
	acked := ackedPrefix{seq: p.ackedThrough, stream: p.ackedStreamTop}
	if acked.stream == 0 {
		acked.seq = 0
	}
	return acked
}

// recordAcks accounts for a contiguous run of acks of the publishes sent
// (same length, in outbox order), extending the acknowledged prefix, unless
// the mode refuses the run (then it returns false and records nothing).
func (p *Publisher) recordAcks(acks []*jetstream.PubAck, sent []inflight) bool {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.mode.acceptLocked(p, acks) {
		return false
	}
	var runMax uint64
	for i, a := range acks {
		p.published++
		if a.Duplicate {
			p.duplicates++
		}
		if a.Sequence > p.streamTop {
			p.streamTop = a.Sequence
			p.newest = storedMsg{stream: a.Sequence, entry: sent[i].seq, id: sent[i].id}
		}
		runMax = max(runMax, a.Sequence)
	}
	p.ackedThrough = sent[len(sent)-1].seq
	p.ackedStreamTop = max(p.ackedStreamTop, runMax)
	p.mode.ackedLocked(p.ackedThrough, runMax, now)
	if p.stalled {
		p.log.Info("publisher resumed: the stream acknowledges again", "stalled_for", now.Sub(p.failedSince).Round(time.Millisecond))
	}
	p.failures, p.stalled = 0, false
	if p.ackedThrough >= p.readThrough {
		p.unackedSince = time.Time{}
	} else {
		p.unackedSince = now // the rest was read no earlier than this ack's progress
	}
	return true
}

// harvest waits, in order, for the acks of publishes left in flight by a
// failed round and records the contiguous acknowledged prefix, so that the
// next round does not republish what the stream already confirmed. It stops
// at the first failure, or after AckTimeout.
func (p *Publisher) harvest(ctx context.Context, queue []inflight) {
	defer p.trim()
	t := time.NewTimer(p.cfg.AckTimeout)
	defer t.Stop()
	for i, f := range queue {
		select {
		case ack := <-f.fut.Ok():
			if !p.recordAcks([]*jetstream.PubAck{ack}, queue[i:i+1]) {
				return
			}
		case <-f.fut.Err():
			return
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// trim trims the outbox up to what the mode allows, if it is not there yet.
// A failure is counted and logged; the next call retries (trims are
// cumulative), and publishing goes on meanwhile.
func (p *Publisher) trim() {
	p.mu.Lock()
	goal, trimmed := p.mode.trimGoalLocked(p), p.trimmedThrough
	p.mu.Unlock()
	if goal <= trimmed {
		return
	}
	if err := p.cfg.Outbox.TrimOutbox(goal); err != nil {
		p.mu.Lock()
		p.errors++
		p.mu.Unlock()
		p.log.Warn("trim outbox failed, will retry", "up_to", goal, "err", err)
		return
	}
	p.mu.Lock()
	p.trimmedThrough = max(p.trimmedThrough, goal)
	p.mode.trimmedLocked(p.trimmedThrough)
	p.mu.Unlock()
}

// noteFailure records a failed publish round; after stallAfter in a row
// the publisher is stalled, which its status, its metrics and (through
// the heartbeats' behind_ms) the peers' lag show.
func (p *Publisher) noteFailure(err error) {
	now := p.now()
	p.mu.Lock()
	p.errors++
	if p.failures == 0 {
		p.failedSince = now
	}
	p.failures++
	p.lastErr = err.Error()
	stallNow := !p.stalled && p.failures >= stallAfter
	if stallNow {
		p.stalled = true
		p.stalls++
	}
	since := p.failedSince
	p.mu.Unlock()
	if stallNow {
		p.log.Error("publisher stalled: publishing to this region's stream keeps failing; peers see growing lag", "err", err, "since", since)
	} else {
		p.log.Warn("publish round failed, will republish", "err", err)
	}
}

// settle waits until every publish in flight has been acked or has failed,
// so that a republish round starts alone; bounded by AckTimeout.
func (p *Publisher) settle(ctx context.Context) {
	t := time.NewTimer(p.cfg.AckTimeout + time.Second)
	defer t.Stop()
	select {
	case <-p.js.PublishAsyncComplete():
	case <-t.C:
	case <-ctx.Done():
	}
}

func (p *Publisher) sendHeartbeat() {
	now := p.now()
	p.mu.Lock()
	hb := Heartbeat{Region: p.cfg.Region, StreamSeq: p.streamTop, Published: p.ackedThrough, At: now.UnixMilli()}
	if !p.unackedSince.IsZero() {
		hb.BehindMs = now.Sub(p.unackedSince).Milliseconds()
	}
	p.mu.Unlock()
	b, err := json.Marshal(hb)
	if err != nil {
		p.log.Error("encode heartbeat", "err", err)
		return
	}
	if err := p.cfg.Conn.Publish(HeartbeatSubject(p.cfg.Region), b); err != nil {
		p.log.Debug("send heartbeat", "err", err)
	}
}

// SetDownstream replaces PublisherConfig.Downstream while the publisher
// runs (a region added to or removed from the topology): from the next
// release check, ModeOutbox holds entries for exactly these consumers; a
// consumer no longer listed holds nothing more, a new one (not created
// yet) holds every entry up to MaxHold. An invalid name is refused and
// nothing changes.
func (p *Publisher) SetDownstream(names []string) error {
	names = slices.Clone(names)
	slices.Sort(names)
	names = slices.Compact(names)
	for _, d := range names {
		if d == "" || sanitizeName(d) != d {
			return fmt.Errorf("set downstream: consumer name %q is not a valid durable name", d)
		}
	}
	p.mu.Lock()
	p.cfg.Downstream = names
	p.mu.Unlock()
	return nil
}

// downstreamNames returns the downstream consumers in effect.
func (p *Publisher) downstreamNames() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.Downstream
}
