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
	// Clock returns Unix milliseconds for heartbeat timestamps (default wall clock).
	Clock func() int64
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
// trims what the stream has acknowledged (ModeStream) or what every
// downstream region has finished (ModeOutbox).
//
// Durability: an entry is trimmed only after JetStream acknowledged it, so a
// crash (of the process or of the NATS server) never loses an entry; it can
// only leave entries published but not trimmed. In ModeOutbox the entry is
// further kept until the downstream consumers acked it, so that a tail the
// stream loses (lazy sync and a power loss) is republished: see ModeOutbox.
// Untrimmed entries are republished on restart (in ModeOutbox only those
// after the prefix the stream is proven to hold) with the same Nats-Msg-Id
// (origin:oseq). Within the stream's
// duplicate window JetStream drops them and acks them as duplicates, which
// the publisher counts as stored. After a longer outage the copy is stored
// twice, and consumers drop the second by their per-origin watermark (oseq
// <= watermark is a no-op), which Appliers must do anyway.
//
// Ordering: entries are published on one connection in outbox order and the
// stream stores them in that order, except after a failure: if publish k is
// lost (timeout, disconnect) while k+1 was stored, k is stored later by the
// republish. Consumers therefore see per-origin order with possible gaps,
// which the Applier's watermark check resolves by waiting (!done).
type Publisher struct {
	cfg    PublisherConfig
	js     jetstream.JetStream
	stream string
	log    *slog.Logger
	notify chan struct{}

	released chan struct{} // ModeOutbox: the release target moved
	behind   chan struct{} // ModeOutbox: the stream was found behind the publisher

	running atomic.Bool

	mu            sync.Mutex
	published     uint64
	duplicates    uint64
	lastStreamSeq uint64
	acked         uint64 // last outbox seq in the contiguous acked prefix
	prefixTop     uint64 // highest stream seq holding an entry <= acked (0: unknown)
	top           storedMsg
	trimmed       uint64 // last outbox seq trimmed
	maxSeen       uint64 // highest outbox seq read
	errors        uint64
	recheck       bool // check (create) the stream before the next round
	// ModeOutbox state.
	resync  bool     // the stream may not hold what acked says: re-read it
	checked uint64   // connection reconnect count when top was last verified
	started bool     // the first resynchronisation (at start) is done
	target  uint64   // outbox seq every downstream finished (or MaxHold expired)
	held    *heldLog // acked entries not yet trimmed -> stream seqs
	epoch   uint64   // bumped by every resynchronisation
	resyncs uint64
	expired uint64
	// Failure tracking: failures counts failed rounds since the last
	// acknowledged publish, failedSince when the first of them failed.
	failures    int
	failedSince time.Time
	lastErr     string
	stalled     bool
	stalls      uint64
	// unackedSince is when the publisher read the oldest entry the stream
	// has not acknowledged (zero when every entry read is acknowledged).
	unackedSince time.Time
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
		cfg.Clock = func() int64 { return time.Now().UnixMilli() }
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
		held:     newHeldLog(maxHeldMarks),
		resync:   cfg.Mode == ModeOutbox,
		checked:  cfg.Conn.Stats().Reconnects,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := p.ensureStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("new publisher: %w", err)
	}
	p.lastStreamSeq = st.CachedInfo().State.LastSeq
	return p, nil
}

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
	if st, err := p.js.Stream(ctx, p.stream); err == nil && sameStreamConfig(st.CachedInfo().Config, want) {
		return st, nil
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
func (p *Publisher) Notify() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PublisherStats{
		Published:     p.published,
		Duplicates:    p.duplicates,
		LastStreamSeq: p.lastStreamSeq,
		Acked:         p.acked,
		Trimmed:       p.trimmed,
		Errors:        p.errors,
		Resyncs:       p.resyncs,
		Expired:       p.expired,
		State:         PublisherOK,
		Stalls:        p.stalls,
	}
	if p.stalled {
		s.State, s.Reason, s.Since = PublisherStalled, p.lastErr, p.failedSince
	}
	if !p.unackedSince.IsZero() {
		s.Behind = time.Since(p.unackedSince)
	}
	if p.maxSeen > p.trimmed {
		s.Backlog = p.maxSeen - p.trimmed
	}
	return s
}

// Run ships the outbox until ctx is done, then returns nil (an error only if
// Run is already running). It reads entries after the last acknowledged
// position, publishes them asynchronously in order with up to Window in
// flight, and trims the outbox: in ModeStream after each contiguous
// acknowledged prefix, in ModeOutbox up to the position every Downstream
// consumer has finished (checked every ReleaseInterval while entries are
// held). A publish error or ack timeout (or an outbox read error) makes it
// collect the acks still arriving for the contiguous prefix, wait (capped
// exponential backoff), make sure the stream exists (recreating it if it
// was deleted) and republish from the last acknowledged position;
// JetStream's deduplication makes this safe. A trim error is logged and the
// trim retried later (trims are cumulative). When the outbox is empty it
// waits for Notify. Every Heartbeat it sends a Heartbeat on
// HeartbeatSubject(Region) (core NATS, best effort).
//
// In ModeOutbox, Run first reads the stream's last message and resumes
// after the outbox prefix that message proves stored (HeaderAcked), instead
// of republishing every untrimmed entry; it does the same whenever it finds
// the stream behind what it had acknowledged (a tail lost to lazy sync, a
// deleted stream), which republishes the lost entries.
func (p *Publisher) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("publisher: already running")
	}
	defer p.running.Store(false)
	if p.cfg.Mode == ModeOutbox {
		rctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { p.releaseLoop(rctx) })
		defer func() {
			stop()
			wg.Wait()
		}()
	}
	hb := time.NewTicker(p.cfg.Heartbeat)
	defer hb.Stop()
	p.sendHeartbeat()
	bo := newBackoff(50*time.Millisecond, 5*time.Second)
	for {
		queue, err := p.pump(ctx, hb.C, bo)
		if ctx.Err() != nil {
			return nil
		}
		p.countError()
		p.noteFailure(err)
		p.harvest(ctx, queue)
		p.settle(ctx)
		p.mu.Lock()
		p.recheck = true
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
				p.retryTrim()
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

// storedMsg is a message the stream acknowledged: at sequence stream it
// holds outbox entry entry with message ID id. If the stream later holds
// something else there, it lost its tail.
type storedMsg struct {
	stream, entry uint64
	id            string
}

// errStreamBehind reports that the stream holds less than the publisher had
// acknowledged (ModeOutbox): the round ends and the next one resynchronises.
var errStreamBehind = errors.New("stream is behind the acknowledged position")

// pump publishes from the last acked position until an error (returned with
// the publishes still in flight) or until ctx is done.
func (p *Publisher) pump(ctx context.Context, hb <-chan time.Time, bo *backoff) ([]inflight, error) {
	if err := p.checkStream(ctx); err != nil {
		return nil, err
	}
	p.retryTrim()
	p.mu.Lock()
	next := p.acked
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
			p.mu.Lock()
			acked := ackedPrefix{seq: p.acked, stream: p.prefixTop}
			if len(entries) > 0 {
				p.maxSeen = max(p.maxSeen, entries[len(entries)-1].Seq)
				if p.unackedSince.IsZero() {
					p.unackedSince = time.Now()
				}
			}
			p.mu.Unlock()
			if acked.stream == 0 {
				acked.seq = 0 // nothing a resynchronisation could verify
			}
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
				p.retryTrim()
			case <-p.released:
				p.retryTrim()
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
			p.retryTrim()
		case err := <-queue[0].fut.Err():
			return queue, fmt.Errorf("publish seq %d: %w", queue[0].seq, err)
		case <-p.notify:
			drained = false
		case <-hb:
			p.sendHeartbeat()
		case <-p.released:
			p.retryTrim()
		case <-p.behind:
			return queue, errStreamBehind
		case <-ctx.Done():
			return queue, nil
		}
	}
}

// harvest waits, in order, for the acks of publishes left in flight by a
// failed round and records the contiguous acknowledged prefix, so that the
// next round does not republish what the stream already confirmed. It stops
// at the first failure, or after AckTimeout.
func (p *Publisher) harvest(ctx context.Context, queue []inflight) {
	t := time.NewTimer(p.cfg.AckTimeout)
	defer t.Stop()
	for i, f := range queue {
		select {
		case ack := <-f.fut.Ok():
			if !p.recordAcks([]*jetstream.PubAck{ack}, queue[i:i+1]) {
				return
			}
		case <-f.fut.Err():
			p.retryTrim()
			return
		case <-t.C:
			p.retryTrim()
			return
		case <-ctx.Done():
			return
		}
	}
	p.retryTrim()
}

func (p *Publisher) countError() {
	p.mu.Lock()
	p.errors++
	p.mu.Unlock()
}

// noteFailure records a failed publish round; after stallAfter in a row
// the publisher is stalled, which its status, its metrics and (through
// the heartbeats' behind_ms) the peers' lag show.
func (p *Publisher) noteFailure(err error) {
	now := time.Now()
	p.mu.Lock()
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

// recordAcks accounts for a contiguous run of acks of the publishes sent
// (same length, in outbox order). In ModeOutbox it marks the run as held and
// returns false, without recording it, if an ack reveals that the stream
// lost messages it had acknowledged (a new message stored at or below the
// highest sequence seen before): the stream then needs a
// resynchronisation.
func (p *Publisher) recordAcks(acks []*jetstream.PubAck, sent []inflight) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Mode == ModeOutbox {
		if p.resync {
			return false
		}
		top := p.lastStreamSeq
		for _, a := range acks {
			if !a.Duplicate && a.Sequence <= top {
				p.log.Warn("stream stored a new message at an old sequence: it lost its tail, republishing from the outbox",
					"stream_seq", a.Sequence, "acked_stream_seq", p.lastStreamSeq)
				p.resync = true
				return false
			}
			top = max(top, a.Sequence)
		}
	}
	var runMax uint64
	for i, a := range acks {
		p.published++
		if a.Duplicate {
			p.duplicates++
		}
		if a.Sequence > p.lastStreamSeq {
			p.lastStreamSeq = a.Sequence
			p.top = storedMsg{stream: a.Sequence, entry: sent[i].seq, id: sent[i].id}
		}
		runMax = max(runMax, a.Sequence)
	}
	last := sent[len(sent)-1].seq
	p.acked = last
	p.prefixTop = max(p.prefixTop, runMax)
	if p.stalled {
		p.log.Info("publisher resumed: the stream acknowledges again", "stalled_for", time.Since(p.failedSince).Round(time.Millisecond))
	}
	p.failures, p.stalled = 0, false
	if p.acked >= p.maxSeen {
		p.unackedSince = time.Time{}
	} else {
		p.unackedSince = time.Now() // the rest was read no earlier than this ack's progress
	}
	if p.cfg.Mode == ModeOutbox {
		p.held.add(last, runMax, time.Now())
	}
	return true
}

// retryTrim trims the outbox up to the acknowledged position (ModeStream) or
// the released one (ModeOutbox) if it is not there yet. A failure is counted
// and logged; the next call retries (trims are cumulative), and publishing
// goes on meanwhile.
func (p *Publisher) retryTrim() {
	p.mu.Lock()
	goal, trimmed := p.acked, p.trimmed
	if p.cfg.Mode == ModeOutbox {
		goal = min(goal, p.target)
	}
	p.mu.Unlock()
	if goal <= trimmed {
		return
	}
	if err := p.cfg.Outbox.TrimOutbox(goal); err != nil {
		p.countError()
		p.log.Warn("trim outbox failed, will retry", "up_to", goal, "err", err)
		return
	}
	p.mu.Lock()
	p.trimmed = max(p.trimmed, goal)
	p.held.release(p.trimmed)
	p.mu.Unlock()
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
	p.mu.Lock()
	hb := Heartbeat{Region: p.cfg.Region, StreamSeq: p.lastStreamSeq, Published: p.acked, At: p.cfg.Clock()}
	if !p.unackedSince.IsZero() {
		hb.BehindMs = time.Since(p.unackedSince).Milliseconds()
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
