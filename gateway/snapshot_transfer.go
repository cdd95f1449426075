package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Snapshots between regions travel over NATS request/reply on the serving
// region's own server (lifecycleSubject), so they take the same path, WAN
// proxies and credentials as the link. The receiver opens a session
// (opSnapOpen), which starts store.WriteSnapshot into a pipe on the
// server, then asks for the stream's segments in order (opSnapNext with
// seq 0, 1, ...), keeping snapWindow requests in flight: the server reads
// the next snapSegment bytes of the pipe for each request, so it never
// produces faster than the receiver asks (flow control), and the snapshot
// is never held in memory on either side. The stream's own checksums
// (store.SnapshotReader) guard what arrives; a lost or reordered segment
// fails the transfer, which the receiver retries from the start.

// Snapshot segment headers.
const (
	hdrSnapSeq   = "Geo-Snap-Seq"
	hdrSnapEnd   = "Geo-Snap-End"
	hdrSnapError = "Geo-Snap-Error"
)

const (
	// snapSegment is the most bytes one segment carries (well under any
	// NATS max_payload a region accepts).
	snapSegment = 256 << 10
	// snapWindow is how many segment requests a receiver keeps in flight.
	snapWindow = 8
	// snapIdle ends a session nobody asked anything of for this long.
	snapIdle = time.Minute
	// maxSnapSessions bounds the sessions a region serves at once.
	maxSnapSessions = 4
)

// snapServer holds the stream sessions a region (or a node, for copies
// of its store) serves.
type snapServer struct {
	log      *slog.Logger
	mu       sync.Mutex
	sessions map[string]*snapSession
	closed   bool // by closeAll, until reopen: open refuses
}

type snapSession struct {
	id, peer string
	pr       *io.PipeReader
	cancel   context.CancelFunc
	reqs     chan snapAsk
	mu       sync.Mutex
	last     time.Time
	once     sync.Once
	done     chan struct{}
}

type snapAsk struct {
	m   *nats.Msg
	seq int
}

func newSnapServer(log *slog.Logger) *snapServer {
	return &snapServer{log: log, sessions: map[string]*snapSession{}}
}

// open starts a session for peer, whose stream produce writes, and returns
// its id.
func (ss *snapServer) open(peer string, produce func(ctx context.Context, w io.Writer) error) (string, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		// A request that arrived as serving stopped: a session opened now
		// would hold a store read that nothing ends.
		return "", errors.New("not serving snapshots now (shutting down, or no longer the region's leader); retry")
	}
	if len(ss.sessions) >= maxSnapSessions {
		return "", fmt.Errorf("busy: %d snapshot sessions already served; retry later", len(ss.sessions))
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &snapSession{id: hex.EncodeToString(b), peer: peer, pr: pr, cancel: cancel, reqs: make(chan snapAsk, 2*snapWindow),
		last: time.Now(), done: make(chan struct{})}
	ss.sessions[s.id] = s
	go func() { pw.CloseWithError(produce(ctx, pw)) }()
	go ss.run(s)
	return s.id, nil
}

// next queues a segment request for its session's goroutine.
func (ss *snapServer) next(m *nats.Msg, req lifeRequest) {
	ss.mu.Lock()
	s := ss.sessions[req.Session]
	ss.mu.Unlock()
	if s == nil || s.peer != req.From {
		respondSegment(m, req.Seq, nil, false, errors.New("no such snapshot session (it ended or timed out)"))
		return
	}
	select {
	case s.reqs <- snapAsk{m: m, seq: req.Seq}:
	default:
		respondSegment(m, req.Seq, nil, false, fmt.Errorf("more than %d segment requests in flight", cap(s.reqs)))
	}
}

// run answers a session's segment requests in order.
func (ss *snapServer) run(s *snapSession) {
	defer ss.end(s)
	buf := make([]byte, snapSegment)
	want := 0
	for {
		var ask snapAsk
		select {
		case ask = <-s.reqs:
		case <-s.done:
			return
		}
		s.mu.Lock()
		s.last = time.Now()
		s.mu.Unlock()
		if ask.seq != want {
			respondSegment(ask.m, ask.seq, nil, false, fmt.Errorf("segment %d asked, %d expected", ask.seq, want))
			return
		}
		n, err := io.ReadFull(s.pr, buf)
		switch {
		case err == nil:
			respondSegment(ask.m, ask.seq, buf[:n], false, nil)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			respondSegment(ask.m, ask.seq, buf[:n], true, nil)
			return
		default:
			respondSegment(ask.m, ask.seq, nil, false, err)
			return
		}
		want++
	}
}

func respondSegment(m *nats.Msg, seq int, data []byte, end bool, err error) {
	h := nats.Header{}
	h.Set(hdrSnapSeq, strconv.Itoa(seq))
	if end {
		h.Set(hdrSnapEnd, "1")
	}
	if err != nil {
		h.Set(hdrSnapError, err.Error())
	}
	_ = m.RespondMsg(&nats.Msg{Header: h, Data: data})
}

// end closes a session (idempotent).
func (ss *snapServer) end(s *snapSession) {
	s.once.Do(func() {
		close(s.done)
		s.cancel()
		_ = s.pr.Close()
		ss.mu.Lock()
		delete(ss.sessions, s.id)
		ss.mu.Unlock()
	})
}

// reap ends sessions idle for snapIdle, until ctx ends.
func (ss *snapServer) reap(ctx context.Context) {
	t := time.NewTicker(snapIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ss.mu.Lock()
		var idle []*snapSession
		for _, s := range ss.sessions {
			s.mu.Lock()
			if time.Since(s.last) > snapIdle {
				idle = append(idle, s)
			}
			s.mu.Unlock()
		}
		ss.mu.Unlock()
		for _, s := range idle {
			ss.log.Warn("stream session idle, ended", "peer", s.peer)
			ss.end(s)
		}
	}
}

// closeAll ends every session and refuses new ones until reopen.
func (ss *snapServer) closeAll() {
	ss.mu.Lock()
	ss.closed = true
	all := make([]*snapSession, 0, len(ss.sessions))
	for _, s := range ss.sessions {
		all = append(all, s)
	}
	ss.mu.Unlock()
	for _, s := range all {
		ss.end(s)
	}
}

// reopen lets open start sessions again (after closeAll).
func (ss *snapServer) reopen() {
	ss.mu.Lock()
	ss.closed = false
	ss.mu.Unlock()
}

// fetchSnapshot opens a snapshot session at peer and returns the stream
// as a reader (fetchStream).
func (lc *lifecycle) fetchSnapshot(ctx context.Context, peer string) (io.ReadCloser, error) {
	rep, err := lc.request(ctx, peer, lifeRequest{Op: opSnapOpen})
	if err != nil {
		return nil, err
	}
	c, _, err := lc.n.peerConn(peer)
	if err != nil {
		return nil, err
	}
	return fetchStream(ctx, c, func(seq int) (*nats.Msg, error) {
		b, err := json.Marshal(lifeRequest{Op: opSnapNext, From: lc.n.cfg.Region, Session: rep.Session, Seq: seq})
		return &nats.Msg{Subject: lifecycleSubject(peer), Data: b}, err
	}, "snapshot from "+peer)
}

// fetchStream returns the stream of an open session as a reader, fed by
// segment requests (ask(seq) is the request for segment seq, which gets a
// reply inbox here) kept snapWindow ahead. Closing the reader ends the
// transfer. A failure (the server gone, a segment lost) surfaces as the
// reader's error, prefixed with what.
func fetchStream(ctx context.Context, c *nats.Conn, ask func(seq int) (*nats.Msg, error), what string) (io.ReadCloser, error) {
	inbox := c.NewInbox()
	sub, err := c.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	pr, pw := io.Pipe()
	send := func(seq int) error {
		m, err := ask(seq)
		if err != nil {
			return err
		}
		m.Reply = inbox
		return c.PublishMsg(m)
	}
	go func() {
		defer func() { _ = sub.Unsubscribe() }()
		err := func() error {
			sent := 0
			for ; sent < snapWindow; sent++ {
				if err := send(sent); err != nil {
					return err
				}
			}
			for seq := 0; ; seq++ {
				mctx, cancel := context.WithTimeout(ctx, lifecycleTimeout)
				m, err := sub.NextMsgWithContext(mctx)
				cancel()
				if err != nil {
					return fmt.Errorf("segment %d: %w", seq, err)
				}
				if e := m.Header.Get(hdrSnapError); e != "" {
					return fmt.Errorf("segment %d: %s", seq, e)
				}
				if got := m.Header.Get(hdrSnapSeq); got != strconv.Itoa(seq) {
					return fmt.Errorf("segment %s arrived, %d expected", got, seq)
				}
				if _, err := pw.Write(m.Data); err != nil {
					return err // the reader closed
				}
				if m.Header.Get(hdrSnapEnd) != "" {
					return nil
				}
				if err := send(sent); err != nil {
					return err
				}
				sent++
			}
		}()
		if err != nil {
			err = fmt.Errorf("%s: %w", what, err)
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}
