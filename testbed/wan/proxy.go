// Package wan emulates a wide-area network link on loopback: a TCP proxy
// that delays, jitters, rate-limits, cuts and partitions the bytes it
// forwards, each direction on its own, changeable while connections are open.
//
// The testbed puts one Proxy in front of the NATS server of every region, per
// inbound replication link, so each link sees its own WAN. In-process regions
// reach it through Proxy.Dialer (a nats.CustomDialer); separate processes
// reach it at Proxy.Addr.
//
// Emulation model, per direction of every connection:
//
//   - Latency and jitter: each chunk read from the sender gets a release time
//     now + Latency + U(-Jitter, +Jitter), raised to the previous chunk's
//     release time if it would be earlier, so jitter never reorders bytes
//     (TCP does not either).
//   - Bandwidth: a token bucket per direction, shared by every connection of
//     the proxy (a link's capacity, not a connection's).
//   - Drop: the probability, per forwarded chunk, that the connection is cut
//     (both sides closed): what a lossy path does to a TCP session.
//   - Blackhole: bytes in that direction are held (not lost) until the flag
//     is cleared: a one-way partition as TCP experiences it.
//   - Partition (whole proxy): every connection is closed at once and new
//     ones fail until Heal.
package wan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// ErrPartitioned is returned by Dialer.Dial while the proxy is partitioned.
var ErrPartitioned = errors.New("wan: link partitioned")

// ErrClosed is returned by Dialer.Dial after Close.
var ErrClosed = errors.New("wan: proxy closed")

// chunkSize is the most bytes read from a sender at once; one chunk gets one
// release time.
const chunkSize = 32 << 10

// queueChunks bounds the chunks in flight per direction of a connection;
// past it the reader stops reading, which pushes back on the sender like a
// full TCP window.
const queueChunks = 256

// Profile is the emulated behaviour of one direction. The zero value
// forwards bytes untouched.
type Profile struct {
	// Latency is the one-way delay added to every chunk.
	Latency time.Duration `json:"latency"`
	// Jitter widens the delay uniformly to [Latency-Jitter, Latency+Jitter]
	// (never below zero); it never reorders bytes.
	Jitter time.Duration `json:"jitter,omitempty"`
	// Bandwidth caps the direction's throughput in bytes per second, shared
	// by all connections of the proxy; 0 is unlimited.
	Bandwidth int64 `json:"bandwidth,omitempty"`
	// Drop is the probability, in [0, 1], that forwarding a chunk cuts the
	// connection instead.
	Drop float64 `json:"drop,omitempty"`
	// Blackhole holds every byte of this direction until cleared.
	Blackhole bool `json:"blackhole,omitempty"`
}

// Validate reports a profile that cannot be emulated.
func (p Profile) Validate() error {
	switch {
	case p.Latency < 0:
		return fmt.Errorf("latency %s is negative", p.Latency)
	case p.Jitter < 0:
		return fmt.Errorf("jitter %s is negative", p.Jitter)
	case p.Bandwidth < 0:
		return fmt.Errorf("bandwidth %d is negative", p.Bandwidth)
	case p.Drop < 0 || p.Drop > 1:
		return fmt.Errorf("drop %g is not a probability in [0, 1]", p.Drop)
	}
	return nil
}

// Shape is the emulation of both directions of a link's connections. Up is
// what the dialling side sends (for a replication link: fetch requests and
// acks from the pulling region); Down is what it receives (the replicated
// events).
type Shape struct {
	Up   Profile `json:"up"`
	Down Profile `json:"down"`
}

// Symmetric returns a Shape with the same profile both ways.
func Symmetric(p Profile) Shape { return Shape{Up: p, Down: p} }

// Validate reports a shape that cannot be emulated.
func (s Shape) Validate() error {
	if err := s.Up.Validate(); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if err := s.Down.Validate(); err != nil {
		return fmt.Errorf("down: %w", err)
	}
	return nil
}

// Config configures a Proxy.
type Config struct {
	// Target is the host:port the proxy forwards to (required).
	Target string
	// Listen is where the proxy accepts connections (default 127.0.0.1:0,
	// a free loopback port).
	Listen string
	// Shape is the initial emulation.
	Shape Shape
	// Seed seeds the jitter and drop randomness (0 picks one at random).
	Seed uint64
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
}

// Stats are a proxy's cumulative counters.
type Stats struct {
	// Accepted counts connections forwarded to the target.
	Accepted uint64 `json:"accepted"`
	// Refused counts connections refused while partitioned (or whose
	// target could not be reached).
	Refused uint64 `json:"refused"`
	// Dropped counts connections cut by Drop.
	Dropped uint64 `json:"dropped"`
	// Cut counts connections closed by Partition.
	Cut uint64 `json:"cut"`
	// Active is the number of connections open now.
	Active int `json:"active"`
	// BytesUp and BytesDown count bytes delivered in each direction.
	BytesUp   uint64 `json:"bytes_up"`
	BytesDown uint64 `json:"bytes_down"`
}

// Proxy is one emulated link: a TCP listener forwarding to Target. All
// methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	log    *slog.Logger

	shape    atomic.Pointer[Shape]
	limiters [2]*rate.Limiter // by direction

	rngMu sync.Mutex
	rng   *rand.Rand

	mu          sync.Mutex
	partitioned bool
	closed      bool
	conns       map[*session]struct{}
	changed     chan struct{} // closed and replaced whenever the shape changes

	accepted, refused, dropped, cut atomic.Uint64
	bytes                           [2]atomic.Uint64

	wg sync.WaitGroup
}

type direction int

const (
	up direction = iota
	down
)

func (d direction) String() string {
	if d == up {
		return "up"
	}
	return "down"
}

// New starts a proxy listening on cfg.Listen and forwarding to cfg.Target.
func New(cfg Config) (*Proxy, error) {
	if cfg.Target == "" {
		return nil, errors.New("wan: target is required")
	}
	if err := cfg.Shape.Validate(); err != nil {
		return nil, fmt.Errorf("wan: %w", err)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("wan: listen %s: %w", cfg.Listen, err)
	}
	p := &Proxy{
		target: cfg.Target, ln: ln, log: cfg.Logger.With("proxy", ln.Addr().String(), "target", cfg.Target),
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		conns: map[*session]struct{}{}, changed: make(chan struct{}),
	}
	p.limiters[up] = rate.NewLimiter(rate.Inf, chunkSize)
	p.limiters[down] = rate.NewLimiter(rate.Inf, chunkSize)
	p.SetShape(cfg.Shape)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the host:port the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Shape returns the emulation in force.
func (p *Proxy) Shape() Shape { return *p.shape.Load() }

// SetShape changes the emulation. It applies to every chunk read from now
// on, on open connections too; chunks already queued keep their release
// time. Blackhole changes and bandwidth changes apply at once. An invalid
// shape is clamped (negative values to zero, Drop into [0, 1]).
func (p *Proxy) SetShape(s Shape) {
	s.Up, s.Down = clamp(s.Up), clamp(s.Down)
	p.shape.Store(&s)
	for d, prof := range []Profile{s.Up, s.Down} {
		l := p.limiters[d]
		if prof.Bandwidth <= 0 {
			l.SetLimit(rate.Inf)
			continue
		}
		// A burst of a tenth of a second (at least one chunk) keeps the
		// cap honest over short windows.
		l.SetBurst(max(chunkSize, int(prof.Bandwidth/10)))
		l.SetLimit(rate.Limit(prof.Bandwidth))
	}
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func clamp(p Profile) Profile {
	p.Latency, p.Jitter, p.Bandwidth = max(p.Latency, 0), max(p.Jitter, 0), max(p.Bandwidth, 0)
	p.Drop = min(max(p.Drop, 0), 1)
	return p
}

// Partition closes every open connection and refuses new ones until Heal:
// a full partition of the link. Idempotent.
func (p *Proxy) Partition() {
	p.mu.Lock()
	p.partitioned = true
	victims := make([]*session, 0, len(p.conns))
	for s := range p.conns {
		victims = append(victims, s)
	}
	p.mu.Unlock()
	for _, s := range victims {
		if s.close() {
			p.cut.Add(1)
		}
	}
	p.log.Debug("partitioned", "cut", len(victims))
}

// Heal ends a partition: new connections are forwarded again. Idempotent.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.partitioned = false
	p.mu.Unlock()
	p.log.Debug("healed")
}

// Partitioned reports whether the proxy is partitioned.
func (p *Proxy) Partitioned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.partitioned
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.conns)
	p.mu.Unlock()
	return Stats{
		Accepted: p.accepted.Load(), Refused: p.refused.Load(), Dropped: p.dropped.Load(), Cut: p.cut.Load(),
		Active: active, BytesUp: p.bytes[up].Load(), BytesDown: p.bytes[down].Load(),
	}
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines to end. Idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	victims := make([]*session, 0, len(p.conns))
	for s := range p.conns {
		victims = append(victims, s)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, s := range victims {
		s.close()
	}
	p.wg.Wait()
	return err
}

// Dialer returns a dialer that reaches the target through the proxy. It
// satisfies nats.CustomDialer: the address passed to Dial is ignored (the
// proxy knows its target), and Dial fails with ErrPartitioned while the
// link is partitioned.
func (p *Proxy) Dialer() *Dialer { return &Dialer{p: p} }

// Dialer dials through a Proxy; see Proxy.Dialer.
type Dialer struct{ p *Proxy }

// Dial connects to the proxy's target through the proxy.
func (d *Dialer) Dial(network, _ string) (net.Conn, error) {
	d.p.mu.Lock()
	partitioned, closed := d.p.partitioned, d.p.closed
	d.p.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case partitioned:
		d.p.refused.Add(1)
		return nil, fmt.Errorf("dial %s: %w", d.p.target, ErrPartitioned)
	}
	if network == "" {
		network = "tcp"
	}
	return net.DialTimeout(network, d.p.Addr(), 5*time.Second)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		refuse := p.partitioned || p.closed
		p.mu.Unlock()
		if refuse {
			p.refused.Add(1)
			client.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

// session is one proxied connection: the client side, the target side and
// the two directions between them.
type session struct {
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

// close closes both sides; it reports whether this call closed them.
func (s *session) close() bool {
	closed := false
	s.once.Do(func() {
		closed = true
		close(s.done)
		s.client.Close()
		if s.server != nil {
			s.server.Close()
		}
	})
	return closed
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.refused.Add(1)
		p.log.Debug("target unreachable", "err", err)
		client.Close()
		return
	}
	s := &session{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.partitioned || p.closed {
		p.mu.Unlock()
		p.refused.Add(1)
		s.close()
		return
	}
	p.conns[s] = struct{}{}
	p.mu.Unlock()
	p.accepted.Add(1)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(s, up, client, server) }()
	go func() { defer wg.Done(); p.pipe(s, down, server, client) }()
	wg.Wait()
	s.close()
	p.mu.Lock()
	delete(p.conns, s)
	p.mu.Unlock()
}

type chunk struct {
	data    []byte
	release time.Time
}

// pipe forwards src to dst under the direction's profile until either side
// fails, then closes the session (so the other direction ends too).
func (p *Proxy) pipe(s *session, d direction, src, dst net.Conn) {
	defer s.close()
	q := make(chan chunk, queueChunks)
	go p.read(s, d, src, q)
	for c := range q {
		if !p.deliver(s, d, dst, c) {
			return
		}
	}
}

// read stamps each chunk with a release time that never goes backwards and
// queues it; it closes q when src ends.
func (p *Proxy) read(s *session, d direction, src io.Reader, q chan<- chunk) {
	defer close(q)
	var last time.Time
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			release := time.Now().Add(p.delay(p.profile(d)))
			if release.Before(last) {
				release = last
			}
			last = release
			select {
			case q <- chunk{data: bytes.Clone(buf[:n]), release: release}: // only what was read
			case <-s.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) profile(d direction) Profile {
	s := p.shape.Load()
	if d == up {
		return s.Up
	}
	return s.Down
}

func (p *Proxy) delay(prof Profile) time.Duration {
	delay := prof.Latency
	if prof.Jitter > 0 {
		p.rngMu.Lock()
		delay += time.Duration(p.rng.Int64N(int64(2*prof.Jitter)+1)) - prof.Jitter
		p.rngMu.Unlock()
	}
	return max(delay, 0)
}

func (p *Proxy) roll(prob float64) bool {
	if prob <= 0 {
		return false
	}
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	return p.rng.Float64() < prob
}

// deliver waits for the chunk's release time, a cleared blackhole and
// bandwidth tokens, then writes it. It returns false when the session must
// end.
func (p *Proxy) deliver(s *session, d direction, dst io.Writer, c chunk) bool {
	if wait := time.Until(c.release); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return false
		}
	}
	for p.profile(d).Blackhole { // the lock only while held back
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		if !p.profile(d).Blackhole {
			break
		}
		select {
		case <-changed:
		case <-s.done:
			return false
		}
	}
	if p.roll(p.profile(d).Drop) {
		if s.close() {
			p.dropped.Add(1)
		}
		return false
	}
	data := c.data
	lim := p.limiters[d]
	for len(data) > 0 {
		// The burst is at least one chunk whenever a cap is set, so one
		// reservation covers the whole piece.
		n := min(len(data), lim.Burst())
		if lim.Limit() != rate.Inf {
			if r := lim.ReserveN(time.Now(), n); r.OK() {
				if wait := r.Delay(); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-t.C:
					case <-s.done:
						t.Stop()
						return false
					}
				}
			}
		}
		if _, err := dst.Write(data[:n]); err != nil {
			return false
		}
		p.bytes[d].Add(uint64(n))
		data = data[n:]
	}
	return true
}
