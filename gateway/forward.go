package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/geogate/geogate/internal/wait"
)

// Inside a region of several nodes, the nodes talk over one subject of the
// region's own NATS cluster, nodeSubject(region), which only the leader
// serves (a queue group of one): followers send it the HTTP requests they
// do not answer themselves (every request but a GET or HEAD under /v1/),
// and nodes that join ask it for a copy of its store. The region's peers
// may not publish there (topology.Plan.Grants gives them the forward,
// clock and lifecycle subjects only).

// Node-subject operations (header Geo-Op).
const (
	opHTTP     = "http"      // a forwarded HTTP request
	opCopyOpen = "copy.open" // start a copy session (body: lifeRequest)
	opCopyNext = "copy.next" // the next segment of a copy session
)

// Node-subject headers. A forwarded request's and its answer's HTTP
// headers travel as hdrHTTP + name.
const (
	hdrOp     = "Geo-Op"
	hdrMethod = "Geo-Method"
	hdrURI    = "Geo-URI"
	hdrFrom   = "Geo-From"
	hdrStatus = "Geo-Status"
	hdrHTTP   = "H-"
)

// nodeRequest is a copy request on the node subject (the lifecycle's
// request type: op, from, session, seq).
type nodeRequest = lifeRequest

func encodeNodeRequest(r nodeRequest) ([]byte, error) { return json.Marshal(r) }

// forwardedKey marks a request a follower forwarded: the node that takes
// it answers it or refuses it, never forwards it again.
type forwardedKey struct{}

// forwarding sends the requests a follower does not answer to the leader.
func (n *Node) forwarding(next http.Handler) http.Handler {
	if n.rn == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if read || !strings.HasPrefix(r.URL.Path, "/v1/") || n.leading() {
			next.ServeHTTP(w, r)
			return
		}
		if r.Context().Value(forwardedKey{}) != nil {
			writeError(w, noLeader(n, "the node the request was forwarded to no longer leads"))
			return
		}
		r.Pattern = "forwarded to the leader" // the metrics' route label
		n.rn.forwardHTTP(w, r)
	})
}

// noLeader is the answer while the region has no leader to take a write.
func noLeader(n *Node, why string) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "no_leader", retryAfter: 1,
		msg: fmt.Sprintf("region %s has no leader to take this request right now (%s): an election takes a few seconds; retry", n.cfg.Region, why)}
}

// forwardHTTP sends r to the leader over the node subject and writes the
// leader's answer.
func (rn *regionNode) forwardHTTP(w http.ResponseWriter, r *http.Request) {
	n := rn.n
	limit := int64(n.cfg.HTTP.MaxValueBytes) + 1
	body, err := io.ReadAll(io.LimitReader(r.Body, limit))
	if err != nil {
		writeError(w, errorf(http.StatusBadRequest, "bad_body", "reading the body: %v", err))
		return
	}
	if int64(len(body)) >= limit {
		writeError(w, errorf(http.StatusRequestEntityTooLarge, "too_large", "the body exceeds http.max_value_bytes (%d bytes)", n.cfg.HTTP.MaxValueBytes))
		return
	}
	msg := &nats.Msg{Subject: nodeSubject(n.cfg.Region), Data: body, Header: nats.Header{}}
	msg.Header.Set(hdrOp, opHTTP)
	msg.Header.Set(hdrMethod, r.Method)
	msg.Header.Set(hdrURI, r.URL.RequestURI())
	msg.Header.Set(hdrFrom, n.cfg.Node)
	for k, vs := range r.Header {
		for _, v := range vs {
			msg.Header.Add(hdrHTTP+k, v)
		}
	}
	// As long as the leader may take to answer: a write waits for a
	// context (sessions.max_wait) and the region log (append_timeout).
	// A leader that dies or stalls never answers: stop waiting as soon as
	// this node sees the lease change hands (or expire), a lease TTL at
	// most, instead of the whole timeout.
	timeout := n.cfg.Sessions.MaxWait + n.cfg.RegionLog.AppendTimeout + 5*time.Second
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	rn.mu.Lock()
	gone := rn.leaderGone
	rn.mu.Unlock()
	go func() {
		select {
		case <-gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	rep, err := n.requestLeader(ctx, msg)
	select {
	case <-gone:
		if err != nil && !errors.Is(err, nats.ErrNoResponders) {
			writeError(w, &apiError{status: http.StatusServiceUnavailable, code: "outcome_unknown", retryAfter: 1,
				msg: "the region's leader changed while the request was under way (the node that took it was lost or replaced): it may or may not have been taken; retry (a write with its context is safe to retry)"})
			return
		}
	default:
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		writeError(w, noLeader(n, "no node leads"))
		return
	case err != nil:
		writeError(w, &apiError{status: http.StatusServiceUnavailable, code: "outcome_unknown", retryAfter: 1,
			msg: fmt.Sprintf("the region's leader did not answer in %s (%v): the request may or may not have been taken; retry (a write with its context is safe to retry)", timeout, err)})
		return
	}
	status, err := strconv.Atoi(rep.Header.Get(hdrStatus))
	if err != nil {
		writeError(w, errorf(http.StatusBadGateway, "bad_leader_answer", "the leader's answer has no status"))
		return
	}
	for k, vs := range rep.Header {
		if name, ok := strings.CutPrefix(k, hdrHTTP); ok {
			for _, v := range vs {
				w.Header().Add(name, v)
			}
		}
	}
	w.Header().Set(HeaderNode, rep.Header.Get(hdrFrom))
	w.WriteHeader(status)
	w.Write(rep.Data) //nolint:errcheck // the client went away
}

// noResponderGrace is how long a forward keeps trying while no node
// answers the node subject: right after an election the new leader's
// subscription takes a moment to reach the other servers of the region.
const noResponderGrace = 2 * time.Second

// requestLeader sends msg to the leader, again while nobody answers for up
// to noResponderGrace (a request nobody received is safe to send again).
func (n *Node) requestLeader(ctx context.Context, msg *nats.Msg) (*nats.Msg, error) {
	deadline := time.Now().Add(noResponderGrace)
	for {
		rep, err := n.conn.RequestMsgWithContext(ctx, msg)
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
			return rep, err
		}
		if werr := wait.Sleep(ctx, 50*time.Millisecond); werr != nil {
			return nil, err
		}
	}
}

// HeaderNode names the node that answered a request (set on answers a
// follower forwarded to its leader).
const HeaderNode = "X-Geo-Node"

// serveNode serves the node subject while this node leads; the returned
// function stops it and waits for the requests under way.
func (rn *regionNode) serveNode(ctx context.Context) (func(), error) {
	n := rn.n
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	var mu sync.Mutex
	closed := false
	rn.copies.reopen() // closed when the previous term ended
	sub, err := n.conn.QueueSubscribe(nodeSubject(n.cfg.Region), "geogate", func(m *nats.Msg) {
		switch m.Header.Get(hdrOp) {
		case opHTTP:
			mu.Lock()
			if closed {
				mu.Unlock()
				return // the requester sees no answer and retries
			}
			wg.Add(1)
			mu.Unlock()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				wg.Done()
				return
			}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				rn.answerForwarded(ctx, m)
			}()
		case opCopyOpen, opCopyNext:
			var req nodeRequest
			if err := json.Unmarshal(m.Data, &req); err != nil {
				respondJSON(m, lifeReply{Error: "bad request: " + err.Error()})
				return
			}
			if req.Op == opCopyNext {
				rn.copies.next(m, req)
				return
			}
			from := req.From
			id, err := rn.copies.open(from, func(ctx context.Context, w io.Writer) error {
				start := time.Now()
				info, err := n.store.WriteCopy(ctx, w)
				if err != nil {
					rn.log.Warn("copy of the store to a node ended early", "node", from, "err", err)
					return err
				}
				rn.log.Info("copy of the store sent", "node", from, "keys", info.Records, "bytes", info.Bytes, "took", time.Since(start).Round(time.Millisecond))
				return nil
			})
			rep := lifeReply{Session: id}
			if err != nil {
				rep.Error = err.Error()
			}
			respondJSON(m, rep)
		default:
			respondJSON(m, lifeReply{Error: fmt.Sprintf("unknown operation %q", m.Header.Get(hdrOp))})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("serve the node subject: %w", err)
	}
	n.spawn(ctx, func() { rn.copies.reap(ctx) })
	return func() {
		_ = sub.Unsubscribe()
		mu.Lock()
		closed = true
		mu.Unlock()
		wg.Wait()
	}, nil
}

// nodeRequest sends a copy request to the leader.
func (rn *regionNode) nodeRequest(ctx context.Context, req nodeRequest) (lifeReply, error) {
	b, err := encodeNodeRequest(req)
	if err != nil {
		return lifeReply{}, err
	}
	msg := &nats.Msg{Subject: nodeSubject(rn.n.cfg.Region), Data: b, Header: nats.Header{hdrOp: {req.Op}}}
	ctx, cancel := context.WithTimeout(ctx, lifecycleTimeout)
	defer cancel()
	rep, err := rn.n.requestLeader(ctx, msg)
	if err != nil {
		return lifeReply{}, fmt.Errorf("%s: %w", req.Op, err)
	}
	var out lifeReply
	if err := json.Unmarshal(rep.Data, &out); err != nil {
		return lifeReply{}, fmt.Errorf("%s: bad reply: %w", req.Op, err)
	}
	if out.Error != "" {
		return out, fmt.Errorf("%s: %s", req.Op, out.Error)
	}
	return out, nil
}

// answerForwarded runs a forwarded HTTP request through this node's whole
// handler (the token guard included) and answers with what it wrote.
func (rn *regionNode) answerForwarded(ctx context.Context, m *nats.Msg) {
	n := rn.n
	req, err := http.NewRequestWithContext(context.WithValue(ctx, forwardedKey{}, m.Header.Get(hdrFrom)),
		m.Header.Get(hdrMethod), m.Header.Get(hdrURI), bytes.NewReader(m.Data))
	rec := &bufferedResponse{header: http.Header{}}
	if err != nil {
		writeError(rec, errorf(http.StatusBadRequest, "bad_request", "forwarded request: %v", err))
	} else {
		for k, vs := range m.Header {
			if name, ok := strings.CutPrefix(k, hdrHTTP); ok {
				for _, v := range vs {
					req.Header.Add(name, v)
				}
			}
		}
		req.ContentLength = int64(len(m.Data))
		req.RemoteAddr = "node " + m.Header.Get(hdrFrom)
		n.server.Handler.ServeHTTP(rec, req)
	}
	out := &nats.Msg{Header: nats.Header{}, Data: rec.body.Bytes()}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	out.Header.Set(hdrStatus, strconv.Itoa(rec.status))
	out.Header.Set(hdrFrom, n.cfg.Node)
	for k, vs := range rec.header {
		for _, v := range vs {
			out.Header.Add(hdrHTTP+k, v)
		}
	}
	_ = m.RespondMsg(out)
}

// bufferedResponse is an http.ResponseWriter that keeps what is written.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
