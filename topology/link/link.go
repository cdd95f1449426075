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

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/internal/wait"
)

// Link states reported by LinkStatus.State.
const (
	StateUp     = "up"     // connected to the peer, consumer in place, pulling
	StatePaused = "paused" // paused by Pause (connected or not)
	StateDown   = "down"   // not connected, or the consumer cannot be set up
	// StateStalled: a message was rejected by the Applier on
	// LinkConfig.MaxRejects deliveries (LinkStatus.Stall says which and
	// why); the link pulls nothing more until Resume. The message is never
	// acked or skipped: it stays in the peer's stream.
	StateStalled = "stalled"
	// StateBlocked: the Applier fails every batch (LinkStatus.Reason says
	// why, e.g. this region's disk is full); the link retries with backoff
	// and is up again as soon as a batch applies.
	StateBlocked = "blocked"
	// StateReseeding: this region found that the peer's stream no longer
	// holds events it needs (trimmed by retention) and is merging a
	// snapshot of the peer instead (SetReseeding); the link keeps pulling
	// meanwhile.
	StateReseeding = "reseeding"
)

// Pull tuning. The iterator keeps prefetchBatches*Batch messages requested
// ahead of the applier so that fetch round trips overlap with Apply; the
// consumer lets ackPendingBatches*Batch messages be delivered and not yet
// acked. Both scale with Batch, the one knob the configuration exposes
// (replication.batch): a link that needs more in flight over a long round
// trip gets it with a larger batch.
//
// gapRoom is the least room for messages delivered and not yet acked: a
// publisher has up to DefaultWindow publishes in flight, so after a lost
// publish up to that many later events of the origin may be stored before
// it is republished; they wait (parked or Nak'd, still pending) until it arrives,
// which the server delivers only while the pending count is below the
// bound. Twice the window leaves room for a second loss.
const (
	prefetchBatches   = 4
	ackPendingBatches = 16
	gapRoom           = 2 * DefaultWindow
	// DefaultAckWait is LinkConfig.AckWait's default.
	DefaultAckWait = 5 * time.Second

	pullExpiry = 10 * time.Second
	// pullHeartbeat: a pull request whose consumer's leader moved (the
	// peer region's leader moves its streams' leaders off its own node,
	// or a node of the peer region died) gets nothing more, and the
	// iterator asks again only after two missed heartbeats: at 1s the
	// link resumes within about 2s instead of 8.
	pullHeartbeat   = time.Second
	infoInterval    = time.Second
	minInfoInterval = 200 * time.Millisecond
	infoTimeout     = 2 * time.Second
)

// Message is one replicated event delivered by a Link.
type Message struct {
	// Stream is the region whose stream the message came from (the peer).
	Stream string
	// Origin is the actor that wrote the event.
	Origin string
	// OriginRegion is the region of Origin (the subject's last token).
	OriginRegion string
	// OSeq is the event's position in its origin's order.
	OSeq uint64
	// Path lists the regions the event has visited, Stream last. An Applier
	// that forwards the event puts this path in its outbox entry.
	Path []string
	// Data is the payload as published, opaque to this package.
	Data []byte
	// StreamSeq is the message's sequence in the peer's stream.
	StreamSeq uint64
}

// Verdict says what became of one message an Applier was given.
type Verdict uint8

const (
	// Wait: the message must wait for an earlier event of its origin (a
	// gap). The link parks it, unacked, and offers it again as soon as an
	// event of its origin is applied, and every GapDelay; past the parking
	// bounds it naks it and it is delivered again after GapDelay. It is the
	// zero Verdict, so a Result left unset never acks a message.
	Wait Verdict = iota
	// Applied: the message is finished (applied now, or recognised as
	// applied before by its origin's watermark); the link acks it.
	Applied
	// Rejected: the message can never be applied as it is (it does not
	// decode, or it is an event no correct region writes; perhaps written
	// by a newer geogate). The link naks it with a growing delay and, once
	// it has been delivered LinkConfig.MaxRejects times, stalls.
	Rejected
)

// Result is the Applier's answer for one message.
type Result struct {
	Verdict Verdict
	// Reason says why a message was Rejected.
	Reason error
}

// Applier is where a Link delivers messages.
type Applier interface {
	// Apply applies msgs (in stream order) durably before returning, and
	// returns one Result per message: Applied (may be acked), Wait (behind
	// a gap in its origin's order; delivered again later) or Rejected
	// (cannot be applied as it is). An error means nothing may be acked;
	// the Link shows itself blocked and retries the same messages after a
	// backoff. Apply must be idempotent: a message may be delivered again
	// after a crash, a lost ack or an ack timeout.
	Apply(ctx context.Context, from string, msgs []Message) ([]Result, error)
}

// LinkConfig configures a Link from Peer's stream to Region.
type LinkConfig struct {
	// Region is this region, the one pulling (required).
	Region string
	// Peer is the region whose stream GEO_<Peer> is pulled (required).
	Peer string
	// URL is the peer's NATS URL (required); a comma-separated list is allowed.
	URL string
	// Origins are the origin regions to consume (required, without Region):
	// the consumer filters geo.<Peer>.<origin> for each.
	Origins []string
	// Applier receives the messages (required).
	Applier Applier
	// Batch is the most messages handed to one Apply call (default 256).
	// It also sizes the pipeline: 4*Batch messages are requested ahead and
	// at most 16*Batch are delivered and not yet acked.
	Batch int
	// Conn describes the connection to the peer's server: the region's
	// credentials, a Dialer (the testbed's WAN emulation). Its Name and
	// Logger default to the link's, and it is always a Peer connection.
	Conn ConnConfig
	// Logger receives the link's log; nil discards it.
	Logger *slog.Logger
	// Clock is the link's time for lag and heartbeat times, stalls and
	// blocked applies (default conflict.WallClock).
	Clock conflict.PhysicalClock
	// AckWait is the consumer's ack wait (ConsumerConfig.AckWait, set on
	// the durable consumer each time the link sets it up, so a changed value
	// applies from the link's next session): a message not acked in this
	// time is delivered again. It bounds how late a lost ack is repaired,
	// and must cover the time a message waits among the requested-ahead
	// ones before Apply finishes with it. Default DefaultAckWait.
	AckWait time.Duration
	// GapDelay is how often the link offers parked messages (Wait) again,
	// one per origin, for gaps filled by another path (a re-seed), and how
	// long a message stays away when the parking is full and the link naks
	// it instead (default 100ms).
	GapDelay time.Duration
	// MaxRejects is how many deliveries of a message the Applier may
	// reject before the link stalls on it (default DefaultMaxRejects).
	MaxRejects int
}

// DefaultMaxRejects is LinkConfig.MaxRejects' default.
const DefaultMaxRejects = 5

// rejectDelay is how long a rejected message stays away before it is
// delivered again, times the deliveries so far.
const rejectDelay = 500 * time.Millisecond

// Stall describes the message a stalled link stopped at.
type Stall struct {
	// Origin and OSeq identify the event (empty and 0 when its headers do
	// not decode).
	Origin string `json:"origin,omitempty"`
	OSeq   uint64 `json:"oseq,omitempty"`
	// StreamSeq is its sequence in the peer's stream.
	StreamSeq uint64 `json:"stream_seq"`
	// Reason is why the Applier (or the link, for undecodable headers)
	// rejected it.
	Reason string `json:"reason"`
	// Deliveries counts its deliveries to this link.
	Deliveries uint64    `json:"deliveries"`
	Since      time.Time `json:"since"`
}

// LinkStatus is a snapshot of a Link. Its JSON form is the link object of
// GET /v1/status (from, to, state, pending, lag_seconds, plus extras).
type LinkStatus struct {
	From  string `json:"from"`  // the peer
	To    string `json:"to"`    // this region
	State string `json:"state"` // StateUp, StatePaused or StateDown
	// Pending is the consumer's NumPending+NumAckPending from the latest
	// consumer info (refreshed every second; kept while down).
	Pending uint64 `json:"pending"`
	// LagSeconds is the time since the latest peer heartbeat this link has
	// caught up to (see Link for the exact rule).
	LagSeconds float64 `json:"lag_seconds"`
	// Applied counts messages Apply reported done.
	Applied uint64 `json:"applied"`
	// Skipped counts messages acked without Apply because Geo-Path already
	// held this region, and malformed messages terminated.
	Skipped uint64 `json:"skipped"`
	// Waiting counts the times Apply left a message waiting (a gap), each
	// offer of a parked message included.
	Waiting uint64 `json:"waiting"`
	// LastHeartbeat is when the latest peer heartbeat was received (zero if none).
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// Fetching is true while a pull is open: after Pause, messages can still
	// arrive (and are applied) until Fetching turns false.
	Fetching bool `json:"fetching"`
	// Rejected counts deliveries the Applier rejected.
	Rejected uint64 `json:"rejected"`
	// Reason says why the link is blocked (StateBlocked).
	Reason string `json:"reason,omitempty"`
	// Stall is the message a stalled link stopped at (StateStalled).
	Stall *Stall `json:"stall,omitempty"`
}

// Link runs one inbound replication link: a durable pull consumer named
// ConsumerName(Peer, Region) on the peer's stream, reached over the peer's
// NATS, feeding an Applier.
//
// Acknowledgement: the consumer uses AckExplicit and the link sends one
// fire-and-forget Ack per finished message after Apply returned (a small
// publish with no round trip; a batch's acks leave in one write). AckAll would
// need a single ack per batch, but it acks every earlier message too, which
// is wrong for the ones Apply left waiting behind a gap; they are parked
// unacked instead (see parking). AckSync per message costs one round trip each (see
// BenchmarkRawJetStream/ack=sync). A lost ack only causes a redelivery after
// AckWait, which the Applier's watermark turns into a no-op.
//
// Loop prevention: the filter leaves out Region's own origin (Origins may not
// contain it); a message whose Geo-Path already holds Region is acked and
// never applied; the Applier's watermark makes any repeat a no-op.
//
// Lag: the link subscribes to the peer's heartbeats and keeps those it has
// not caught up to. It is caught up to a heartbeat (received at t vouching for
// stream sequence s) when it has acked or skipped a message with sequence >= s
// and none is waiting for redelivery, or when a consumer info requested after
// t shows nothing pending and nothing awaiting an ack. LagSeconds is the time
// since the latest heartbeat caught up to; before any heartbeat, the time
// since the last successful contact with the peer.
type Link struct {
	cfg      LinkConfig
	log      *slog.Logger
	stream   string
	consumer string
	filters  []string
	// prefetch is the number of messages requested ahead; maxAckPending
	// the consumer's bound on those delivered and not yet acked.
	prefetch, maxAckPending int
	wake                    chan struct{} // Pause/Resume happened
	infoKick                chan struct{} // a heartbeat wants a consumer info

	running atomic.Bool
	readers sync.WaitGroup // iterator readers; may outlive a session until its connection closes

	mu     sync.Mutex
	paused bool
	// Pause waits for the consume loop to stop: pauses counts Pause
	// calls, haltedAt the count the loop last stopped for; consuming is
	// whether the loop runs; halt is closed (and replaced) when either
	// changes.
	pauses, haltedAt uint64
	consuming        bool
	halt             chan struct{}
	nc               *nats.Conn // current connection, nil between sessions
	ready            bool       // consumer set up in the current session
	fetching         bool       // a pull iterator is open
	infoOK           bool       // the latest consumer info succeeded
	pending          uint64
	// undelivered is the consumer's NumPending from the latest info:
	// messages of the link's origins the server has not delivered yet.
	undelivered uint64
	applied     uint64
	skipped     uint64
	waiting     uint64
	lastHB      time.Time
	lag         *lagTracker
	lastInfo    time.Time
	rejected    uint64
	stall       *Stall    // set when the link stalled, cleared by Resume
	blocked     string    // why Apply keeps failing ("" when it does not)
	blockLog    time.Time // when a blocked apply was last logged
	// behind is the peer's latest heartbeat's report of how far its own
	// publisher is behind its log (Heartbeat.BehindMs).
	behind time.Duration
	// reseeding is set while the region merges a snapshot of the peer.
	reseeding bool
	// parkLimit bounds the messages parked behind gaps (parking).
	parkLimit int
}

// SetReseeding marks the link as re-seeding from its peer's snapshot (on)
// or done with it: Status shows StateReseeding meanwhile. It changes
// nothing else; the link goes on pulling.
func (l *Link) SetReseeding(on bool) {
	l.mu.Lock()
	l.reseeding = on
	l.mu.Unlock()
}

// NewLink validates cfg and returns a Link; nothing connects until Run.
func NewLink(cfg LinkConfig) (*Link, error) {
	if err := ValidateRegion(cfg.Region); err != nil {
		return nil, fmt.Errorf("new link: region: %w", err)
	}
	if err := ValidateRegion(cfg.Peer); err != nil {
		return nil, fmt.Errorf("new link: peer: %w", err)
	}
	if cfg.Peer == cfg.Region {
		return nil, fmt.Errorf("new link: peer %q is this region", cfg.Peer)
	}
	if cfg.URL == "" || cfg.Applier == nil {
		return nil, errors.New("new link: url and applier are required")
	}
	if len(cfg.Origins) == 0 {
		return nil, errors.New("new link: no origins to consume")
	}
	origins := slices.Clone(cfg.Origins)
	slices.Sort(origins)
	origins = slices.Compact(origins)
	filters := make([]string, 0, len(origins))
	for _, o := range origins {
		if err := ValidateRegion(o); err != nil {
			return nil, fmt.Errorf("new link: origin: %w", err)
		}
		if o == cfg.Region {
			return nil, fmt.Errorf("new link: origin %q is this region (loop)", o)
		}
		filters = append(filters, Subject(cfg.Peer, o))
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.GapDelay <= 0 {
		cfg.GapDelay = 100 * time.Millisecond
	}
	if cfg.MaxRejects <= 0 {
		cfg.MaxRejects = DefaultMaxRejects
	}
	if cfg.Clock == nil {
		cfg.Clock = conflict.WallClock
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Link{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "link", "from", cfg.Peer, "to", cfg.Region),
		stream:   StreamName(cfg.Peer),
		consumer: ConsumerName(cfg.Peer, cfg.Region),
		filters:  filters,
		prefetch: prefetchBatches * cfg.Batch,
		// Room for the prefetched messages plus the batches being
		// applied and acked, so the pipeline never stalls on the bound;
		// and at least gapRoom: events waiting behind a gap stay pending
		// (parked or Nak'd), and the one that fills the gap must still be
		// delivered.
		maxAckPending: max(ackPendingBatches*cfg.Batch, gapRoom),
		parkLimit:     parkLimit,
		wake:          make(chan struct{}, 1),
		halt:          make(chan struct{}),
		infoKick:      make(chan struct{}, 1),
		lag:           newLagTracker(cfg.Clock()),
	}, nil
}

// now is the link's clock.
func (l *Link) now() time.Time { return l.cfg.Clock() }

// Pause stops pulling and returns once the link has stopped applying: the
// messages delivered to it before are applied, none after, until Resume.
// The durable consumer stays on the peer, so nothing is lost. Idempotent.
// If an apply under way does not end before ctx does (a disk that stalls),
// Pause returns ctx's error; the link is paused all the same and stops
// once it has applied what was delivered to it before (a Pause called
// again returns then).
func (l *Link) Pause(ctx context.Context) error {
	l.mu.Lock()
	l.pauses++
	want := l.pauses
	l.mu.Unlock()
	l.setPaused(true)
	for {
		l.mu.Lock()
		if !l.consuming || l.haltedAt >= want || !l.paused {
			l.mu.Unlock()
			return nil
		}
		halt := l.halt
		l.mu.Unlock()
		select {
		case <-halt:
		case <-ctx.Done():
			return fmt.Errorf("link from %s paused, but an apply under way has not finished: %w", l.cfg.Peer, ctx.Err())
		}
	}
}

// noteHaltLocked wakes the Pause calls waiting for the consume loop.
func (l *Link) noteHaltLocked() {
	close(l.halt)
	l.halt = make(chan struct{})
}

// setConsuming records whether the consume loop runs (while it does not,
// nothing is applied).
func (l *Link) setConsuming(c bool) {
	l.mu.Lock()
	l.consuming = c
	l.noteHaltLocked()
	l.mu.Unlock()
}

// haltedForPause reports whether the link must not pull (paused or
// stalled) and, if so, records that the consume loop stopped for every
// Pause so far.
func (l *Link) haltedForPause() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.paused && l.stall == nil {
		return false
	}
	if l.haltedAt != l.pauses {
		l.haltedAt = l.pauses
		l.noteHaltLocked()
	}
	return true
}

// Resume restarts pulling after Pause, or after a stall (the message it
// stalled at is delivered again: resume once the cause is fixed, e.g. after
// upgrading this region). Idempotent.
func (l *Link) Resume() { l.setPaused(false) }

func (l *Link) setPaused(p bool) {
	l.mu.Lock()
	changed := l.paused != p || (!p && l.stall != nil)
	l.paused = p
	if !p && l.stall != nil {
		l.log.Info("link resumed after a stall", "stream_seq", l.stall.StreamSeq)
		l.stall = nil
	}
	l.mu.Unlock()
	// A Pause wakes the loop even when already paused, so that a loop
	// parked by an earlier Pause records that it stopped for this one.
	if changed || p {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// isPaused reports whether the link must not pull: paused or stalled.
func (l *Link) isPaused() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.paused || l.stall != nil
}

// Undelivered returns how many messages of the link's origins its
// consumer had not delivered at the latest consumer info (0 before one):
// unlike Status().Pending it leaves out those delivered and waiting for
// an ack, such as events held back behind a gap.
func (l *Link) Undelivered() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.undelivered
}

// Status returns a snapshot of the link.
func (l *Link) Status() LinkStatus {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := LinkStatus{
		From:          l.cfg.Peer,
		To:            l.cfg.Region,
		State:         StateDown,
		Pending:       l.pending,
		LagSeconds:    l.lag.lag(now),
		Applied:       l.applied,
		Skipped:       l.skipped,
		Waiting:       l.waiting,
		LastHeartbeat: l.lastHB,
		Fetching:      l.fetching,
		Rejected:      l.rejected,
		Reason:        l.blocked,
	}
	if l.stall != nil {
		stall := *l.stall
		st.Stall = &stall
	}
	// The peer's publisher stuck behind its log makes this link behind by
	// as much, whatever it has caught up to (as of the latest heartbeat).
	st.LagSeconds = max(st.LagSeconds, l.behind.Seconds())
	switch {
	case l.reseeding:
		st.State = StateReseeding
	case l.paused:
		st.State = StatePaused
	case l.stall != nil:
		st.State = StateStalled
	case l.blocked != "":
		st.State = StateBlocked
	case l.ready && l.infoOK && l.nc != nil && l.nc.IsConnected():
		st.State = StateUp
	}
	return st
}

// Run keeps the link going until ctx is done, then returns nil (an error
// only if Run is already running). It connects to the peer (retrying with
// capped backoff; once connected, the client reconnects forever), creates or
// updates the durable consumer (AckExplicit, AckWait, MaxAckPending,
// FilterSubjects for Origins), subscribes to the peer's heartbeats, and pulls
// batches into the Applier, acking what it finished.
func (l *Link) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("link: already running")
	}
	defer l.running.Store(false)
	bo := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		nc, err := l.connect()
		if err == nil {
			err = l.session(ctx, nc, bo)
			_ = nc.FlushTimeout(time.Second)
			nc.Close()
			l.mu.Lock()
			l.nc, l.ready, l.infoOK = nil, false, false
			l.mu.Unlock()
			l.readers.Wait()
		}
		if ctx.Err() != nil {
			return nil
		}
		l.log.Warn("link session ended, retrying", "err", err)
		if wait.Sleep(ctx, bo.next()) != nil {
			return nil
		}
	}
}

func (l *Link) connect() (*nats.Conn, error) {
	c := l.cfg.Conn
	if c.Name == "" {
		c.Name = fmt.Sprintf("geogate link %s<-%s", l.cfg.Region, l.cfg.Peer)
	}
	if c.Logger == nil {
		c.Logger = l.log
	}
	c.Peer = true
	return Connect(l.cfg.URL, c)
}

// errConsumerLost reports that the consumer info found the consumer or its
// stream gone (the peer lost its store); the consumer must be set up again.
var errConsumerLost = errors.New("consumer lost")

// session runs the link over one connection until ctx is done or the
// connection is closed for good.
func (l *Link) session(ctx context.Context, nc *nats.Conn, bo *backoff) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	sub, err := nc.Subscribe(HeartbeatSubject(l.cfg.Peer), l.onHeartbeat)
	if err != nil {
		return fmt.Errorf("subscribe heartbeats: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	l.mu.Lock()
	l.nc = nc
	l.lag.contact(l.now())
	l.mu.Unlock()

	for {
		cons, err := l.ensureConsumer(ctx, js, bo)
		if err != nil {
			return err
		}
		bo.reset()
		cctx, lost := context.WithCancelCause(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { l.refresh(cctx, cons, lost) })
		err = l.consume(cctx, cons)
		if err == nil {
			err = context.Cause(cctx)
		}
		lost(nil)
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
		if nc.IsClosed() {
			return fmt.Errorf("connection closed: %w", err)
		}
		l.log.Warn("consumer lost, setting it up again", "err", err)
		l.mu.Lock()
		l.ready = false
		l.mu.Unlock()
		if wait.Sleep(ctx, bo.next()) != nil {
			return nil
		}
	}
}

// ensureConsumer creates or updates the durable consumer, retrying while ctx
// lives (the stream may not exist yet, the peer may be down).
func (l *Link) ensureConsumer(ctx context.Context, js jetstream.JetStream, bo *backoff) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:        l.consumer,
		Description:    fmt.Sprintf("geogate link %s -> %s", l.cfg.Peer, l.cfg.Region),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        l.cfg.AckWait,
		MaxDeliver:     -1,
		FilterSubjects: l.filters,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
		MaxAckPending:  l.maxAckPending,
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.dropNarrowerConsumer(cctx, js)
		var cons jetstream.Consumer
		if err == nil {
			cons, err = js.CreateOrUpdateConsumer(cctx, l.stream, cfg)
		}
		cancel()
		if err == nil {
			l.mu.Lock()
			l.ready = true
			l.infoOK = true
			l.lag.contact(l.now())
			l.mu.Unlock()
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			// The peer has not created its stream yet: every region
			// starting at once meets this.
			l.log.Info("waiting for the peer's stream", "stream", l.stream)
		} else {
			l.log.Warn("create consumer", "stream", l.stream, "consumer", l.consumer, "err", err)
		}
		if wait.Sleep(ctx, bo.next()) != nil {
			return nil, ctx.Err()
		}
	}
}

// dropNarrowerConsumer deletes the link's durable consumer if it filters
// out an origin the link now carries (a topology change gave the link a
// new origin). An updated filter keeps the consumer's position, so the
// new origin's events stored behind it would never be delivered; the
// consumer is created again from the stream's start instead, and the
// events already applied come again as duplicates, which the Applier's
// watermarks drop. Nothing to do when there is no consumer yet.
func (l *Link) dropNarrowerConsumer(ctx context.Context, js jetstream.JetStream) error {
	cons, err := js.Consumer(ctx, l.stream, l.consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg := cons.CachedInfo().Config
	had := slices.Clone(cfg.FilterSubjects) // appended to: not the cached info's
	if cfg.FilterSubject != "" {
		had = append(had, cfg.FilterSubject)
	}
	if len(had) == 0 {
		return nil // no filter: it delivers every subject already
	}
	var added []string
	for _, f := range l.filters {
		if !slices.ContainsFunc(had, func(h string) bool { return server.SubjectMatchesFilter(f, h) }) {
			added = append(added, f)
		}
	}
	if len(added) == 0 {
		return nil
	}
	l.log.Info("the link carries new origins: its consumer starts again from the stream's start, so that their events stored before are delivered (those already applied are dropped as duplicates)",
		"consumer", l.consumer, "added", added)
	dctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	err = js.DeleteConsumer(dctx, l.stream, l.consumer)
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		// A request the server refuses for want of permission goes
		// unanswered (or fails as a violation); anything else, or the
		// caller's end, is retried.
		refused := errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, context.DeadlineExceeded)
		if ctx.Err() != nil || !refused {
			return fmt.Errorf("delete consumer %s to widen its filter: %w", l.consumer, err)
		}
		// A peer's server that does not let this region delete its
		// own consumer (permissions written for an older version):
		// the filter is updated in place, and the events of the new
		// origins stored before its position come by a re-seed.
		l.log.Warn("could not delete the consumer to widen its filter (is $JS.API.CONSUMER.DELETE for it granted on the peer's server?); updating it in place: the new origins' events stored before its position come by a re-seed",
			"consumer", l.consumer, "err", err)
	}
	return nil
}

// deleteTimeout bounds the deletion of a link's consumer.
const deleteTimeout = 2 * time.Second

// consume pulls and applies until ctx is done (nil) or the consumer is gone
// (error). Pause drains the iterator and waits for Resume.
func (l *Link) consume(ctx context.Context, cons jetstream.Consumer) error {
	l.setConsuming(true)
	defer l.setConsuming(false)
	for {
		if ctx.Err() != nil {
			return nil
		}
		if l.haltedForPause() {
			select {
			case <-l.wake:
			case <-ctx.Done():
				return nil
			}
			continue
		}
		it, err := cons.Messages(
			jetstream.PullMaxMessages(l.prefetch),
			jetstream.PullExpiry(pullExpiry),
			jetstream.PullHeartbeat(pullHeartbeat),
		)
		if err != nil {
			return fmt.Errorf("pull %s: %w", l.consumer, err)
		}
		out := make(chan jetstream.Msg, l.cfg.Batch)
		quit := make(chan struct{})
		errc := make(chan error, 1)
		l.readers.Go(func() { l.read(it, out, quit, errc) })
		l.setFetching(true)
		finished := l.process(ctx, it, out, quit)
		l.setFetching(false)
		if !finished {
			// Stopped by ctx; the reader ends once the iterator or the
			// connection closes (Run waits for it).
			return nil
		}
		if err := <-errc; err != nil {
			return err
		}
	}
}

func (l *Link) setFetching(f bool) {
	l.mu.Lock()
	l.fetching = f
	l.mu.Unlock()
}

// read moves messages from the iterator to out until the iterator closes or
// quit is closed; it reports a terminal iterator error (consumer deleted) on
// errc, nil otherwise.
func (l *Link) read(it jetstream.MessagesContext, out chan<- jetstream.Msg, quit <-chan struct{}, errc chan<- error) {
	defer close(out)
	for {
		m, err := it.Next()
		if err == nil {
			select {
			case out <- m:
			case <-quit:
				_ = m.Nak()
				errc <- nil
				return
			}
			continue
		}
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			errc <- nil
			return
		case errors.Is(err, jetstream.ErrNoHeartbeat):
			l.log.Debug("pull heartbeat missed", "err", err)
		default:
			it.Stop()
			errc <- fmt.Errorf("pull %s: %w", l.consumer, err)
			return
		}
	}
}

// process applies batches from out until out is closed (true). Pause drains
// the iterator: messages already delivered are still applied. A stall stops
// the iterator and naks what it still holds. When ctx is done it stops the
// iterator, Naks the messages it holds (so that they come back at once on
// the next run instead of after AckWait) and returns false. Messages parked
// behind a gap are offered again when their origin advances and every
// GapDelay, and nak'd when process returns.
func (l *Link) process(ctx context.Context, it jetstream.MessagesContext, out <-chan jetstream.Msg, quit chan<- struct{}) bool {
	batch := make([]jetstream.Msg, 0, l.cfg.Batch)
	stopped := false
	park := newParking(l.parkLimit)
	defer park.release()
	// Touches and retries run on the ticker's own (monotonic) times, not
	// on cfg.Clock, which only stamps what the link reports.
	touchEvery := l.cfg.AckWait / 3
	every := max(min(l.cfg.GapDelay, touchEvery), time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastRetry := time.Now()
	stall := func() {
		it.Stop()
		stopped = true
		park.release() // they come back on Resume
	}
	for {
		select {
		case m, ok := <-out:
			if !ok {
				return true
			}
			if stopped {
				_ = m.Nak() // stalled: the rest comes back on Resume
				continue
			}
			batch = append(batch[:0], m)
		fill:
			for len(batch) < l.cfg.Batch {
				select {
				case m, ok := <-out:
					if !ok {
						break fill
					}
					batch = append(batch, m)
				default:
					break fill
				}
			}
			if l.offer(ctx, batch, park) {
				stall()
			}
		case now := <-tick.C:
			if stopped || len(park.msgs) == 0 {
				continue
			}
			park.touch(now, touchEvery-every/2)
			if now.Sub(lastRetry) < l.cfg.GapDelay-every/2 {
				continue // ticks jitter: half a tick early is on time
			}
			lastRetry = now
			if l.offer(ctx, parkedJetStream(park.firsts()), park) {
				stall()
			}
		case <-l.wake:
			if l.isPaused() {
				it.Drain()
			}
		case <-ctx.Done():
			it.Stop()
			close(quit)
			for {
				select {
				case m, ok := <-out:
					if !ok {
						return false
					}
					_ = m.Nak()
				default:
					return false
				}
			}
		}
	}
}

// parkedJetStream returns the messages of parked.
func parkedJetStream(parked []parkedMsg) []jetstream.Msg {
	msgs := make([]jetstream.Msg, len(parked))
	for i, m := range parked {
		msgs[i] = m.msg
	}
	return msgs
}

// offer applies msgs (in batches of at most Batch), parks those Apply left
// waiting, and, while some origin advanced, offers that origin's parked
// messages again, so that a run waiting behind a gap follows the message
// that filled it at once. It reports whether the link stalled. It ends: a
// round follows only one that applied something, and from the second round
// on everything applied comes out of the (finite) parking for good.
func (l *Link) offer(ctx context.Context, msgs []jetstream.Msg, park *parking) (stalled bool) {
	for len(msgs) > 0 {
		var progressed []string
		for len(msgs) > 0 {
			n := min(len(msgs), l.cfg.Batch)
			h := l.handle(ctx, msgs[:n])
			if !h.aborted { // an aborted batch is nak'd with the rest below
				msgs = msgs[n:]
			}
			park.park(h.waiting, l.cfg.GapDelay)
			if ctx.Err() != nil {
				for _, m := range msgs {
					_ = m.Nak() // come again at once to the next run
				}
				return false
			}
			if h.stalled {
				for _, m := range msgs {
					_ = m.Nak()
				}
				return true
			}
			progressed = append(progressed, h.progressed...)
		}
		if len(progressed) == 0 {
			return false
		}
		msgs = parkedJetStream(park.take(progressed))
	}
	return false
}

// rejection is a message the link or the Applier rejected.
type rejection struct {
	msg    jetstream.Msg
	meta   *jetstream.MsgMetadata
	origin string
	oseq   uint64
	reason error
}

// handled is what handle did with a batch.
type handled struct {
	// stalled: the link stalled on a message of the batch.
	stalled bool
	// aborted: ctx ended while Apply kept failing; nothing of the batch
	// was acked, nak'd or reported waiting.
	aborted bool
	// waiting are the messages Apply left waiting behind a gap, neither
	// acked nor nak'd: the caller parks or naks them.
	waiting []parkedMsg
	// progressed lists the origins of the messages Apply finished.
	progressed []string
}

// handle decodes, filters, applies and acks one batch, and returns what
// became of it. On an Apply error it retries the same messages with backoff
// until ctx is done (then nothing is acked or nak'd and h.aborted is set:
// offer naks them), showing the link blocked meanwhile.
func (l *Link) handle(ctx context.Context, batch []jetstream.Msg) (h handled) {
	msgs := make([]Message, 0, len(batch))
	src := make([]jetstream.Msg, 0, len(batch))
	metas := make([]*jetstream.MsgMetadata, 0, len(batch))
	var finished []uint64
	var skipped uint64
	var rejects []rejection
	for _, jm := range batch {
		meta, err := jm.Metadata()
		if err != nil {
			// Not a message of a stream (a pull only delivers those):
			// nothing to replicate in it.
			l.log.Error("message without metadata, terminating it", "subject", jm.Subject(), "err", err)
			_ = jm.Term()
			skipped++
			continue
		}
		m, err := decodeMsg(l.cfg.Peer, jm.Subject(), jm.Headers(), jm.Data())
		if err != nil {
			rejects = append(rejects, rejection{msg: jm, meta: meta, origin: m.Origin, oseq: m.OSeq, reason: err})
			continue
		}
		m.StreamSeq = meta.Sequence.Stream
		if pathContains(m.Path, l.cfg.Region) {
			_ = jm.Ack()
			finished = append(finished, m.StreamSeq)
			skipped++
			continue
		}
		msgs = append(msgs, m)
		src = append(src, jm)
		metas = append(metas, meta)
	}
	var results []Result
	if len(msgs) > 0 {
		bo := newBackoff(50*time.Millisecond, 2*time.Second)
		for {
			res, err := l.cfg.Applier.Apply(ctx, l.cfg.Peer, msgs)
			if err == nil && len(res) != len(msgs) {
				err = fmt.Errorf("applier returned %d results for %d messages", len(res), len(msgs))
			}
			if err == nil {
				results = res
				l.setBlocked(nil)
				break
			}
			if ctx.Err() != nil {
				h.aborted = true
				return h
			}
			l.setBlocked(err)
			if wait.Sleep(ctx, bo.next()) != nil {
				h.aborted = true
				return h
			}
		}
	}
	var applied, waiting uint64
	var gaps []uint64
	for i, jm := range src {
		switch results[i].Verdict {
		case Applied:
			_ = jm.Ack()
			finished = append(finished, msgs[i].StreamSeq)
			applied++
			if !slices.Contains(h.progressed, msgs[i].Origin) {
				h.progressed = append(h.progressed, msgs[i].Origin)
			}
		case Wait:
			h.waiting = append(h.waiting, parkedMsg{msg: jm, origin: msgs[i].Origin, oseq: msgs[i].OSeq, size: len(jm.Data())})
			gaps = append(gaps, msgs[i].StreamSeq)
			waiting++
		default:
			reason := results[i].Reason
			if reason == nil {
				reason = errors.New("rejected by the applier")
			}
			rejects = append(rejects, rejection{msg: jm, meta: metas[i], origin: msgs[i].Origin, oseq: msgs[i].OSeq, reason: reason})
		}
	}
	for _, r := range rejects {
		gaps = append(gaps, r.meta.Sequence.Stream)
		if l.reject(r) {
			h.stalled = true
		}
	}
	now := l.now()
	l.mu.Lock()
	for _, s := range finished {
		l.lag.done(s)
	}
	for _, s := range gaps {
		l.lag.wait(s)
	}
	l.lag.settled()
	l.lag.contact(now)
	l.applied += applied
	l.skipped += skipped
	l.waiting += waiting
	l.mu.Unlock()
	return h
}

// reject handles a rejected message: delivered again after a delay while it
// has had fewer than MaxRejects deliveries, else the link stalls on it. It
// reports whether the link stalled. The message is never acked.
func (l *Link) reject(r rejection) bool {
	seq, n := r.meta.Sequence.Stream, r.meta.NumDelivered
	l.mu.Lock()
	l.rejected++
	stall := n >= uint64(l.cfg.MaxRejects)
	if stall && l.stall == nil {
		l.stall = &Stall{Origin: r.origin, OSeq: r.oseq, StreamSeq: seq, Reason: r.reason.Error(), Deliveries: n, Since: l.now()}
	}
	l.mu.Unlock()
	if stall {
		l.log.Error("link stalled: a replicated event cannot be applied; it stays in the peer's stream, and nothing more is pulled until the link is resumed (after fixing the cause, e.g. upgrading this region)",
			"origin", r.origin, "oseq", r.oseq, "stream_seq", seq, "deliveries", n, "reason", r.reason)
		_ = r.msg.Nak() // back in the consumer; no pull takes it before Resume
		return true
	}
	l.log.Warn("replicated event rejected; it will be delivered again", "origin", r.origin, "oseq", r.oseq, "stream_seq", seq, "deliveries", n, "of", l.cfg.MaxRejects, "reason", r.reason)
	_ = r.msg.NakWithDelay(time.Duration(n) * rejectDelay)
	return false
}

// blockedLogEvery bounds how often a link keeps logging that its applies
// fail.
const blockedLogEvery = time.Minute

// setBlocked records that applies fail (err) or work again (nil), logging
// the first failure, then at most every blockedLogEvery, and the recovery.
func (l *Link) setBlocked(err error) {
	now := l.now()
	l.mu.Lock()
	was := l.blocked
	logIt := false
	if err == nil {
		l.blocked = ""
	} else {
		l.blocked = err.Error()
		if was == "" || now.Sub(l.blockLog) >= blockedLogEvery {
			l.blockLog, logIt = now, true
		}
	}
	l.mu.Unlock()
	switch {
	case logIt:
		l.log.Warn("applying replicated events fails; the link retries and shows itself blocked", "err", err)
	case err == nil && was != "":
		l.log.Info("applying replicated events works again", "was", was)
	}
}

// onHeartbeat records a peer heartbeat and, if the acked sequence does not
// already cover it, asks for a consumer info.
func (l *Link) onHeartbeat(m *nats.Msg) {
	var hb Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.Region != l.cfg.Peer {
		l.log.Debug("ignoring heartbeat", "subject", m.Subject, "err", err)
		return
	}
	now := l.now()
	l.mu.Lock()
	l.lastHB = now
	l.behind = time.Duration(max(hb.BehindMs, 0)) * time.Millisecond
	l.lag.heartbeat(now, hb.StreamSeq)
	kick := l.lag.needsIdleCheck()
	l.mu.Unlock()
	if kick {
		select {
		case l.infoKick <- struct{}{}:
		default:
		}
	}
}

// refresh fetches the consumer info every second, and after a heartbeat
// that the acked sequence does not cover (at most every 200ms), updating
// Pending and the idle mark of the lag tracker.
func (l *Link) refresh(ctx context.Context, cons jetstream.Consumer, lost context.CancelCauseFunc) {
	t := time.NewTicker(infoInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.infoKick:
			l.mu.Lock()
			pause := minInfoInterval - l.now().Sub(l.lastInfo)
			l.mu.Unlock()
			if pause > 0 && wait.Sleep(ctx, pause) != nil {
				return
			}
		case <-ctx.Done():
			return
		}
		sent := l.now()
		ictx, cancel := context.WithTimeout(ctx, infoTimeout)
		info, err := cons.Info(ictx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.lastInfo = sent
		l.infoOK = err == nil
		if err == nil {
			l.pending = info.NumPending + uint64(info.NumAckPending)
			l.undelivered = info.NumPending
			l.lag.contact(l.now())
			if info.NumPending == 0 && info.NumAckPending == 0 {
				l.lag.idle(sent)
			}
		}
		l.mu.Unlock()
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			lost(fmt.Errorf("%w: %w", errConsumerLost, err))
			return
		}
		if err != nil {
			l.log.Debug("consumer info", "err", err)
		}
	}
}
