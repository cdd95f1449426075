package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology/link"
)

// forwardTimeout bounds a forwarded write's round trip to its home region.
const forwardTimeout = 3 * time.Second

// forwardRequest is a write forwarded to the key's home region over NATS
// request/reply.
type forwardRequest struct {
	From    string          `json:"from"`
	Key     string          `json:"key"`
	Value   json.RawMessage `json:"value,omitempty"`
	Deleted bool            `json:"deleted,omitempty"`
	Context string          `json:"context,omitempty"`
	Session string          `json:"session,omitempty"`
}

// forwardReply is the home region's answer: the HTTP status and body it
// would have answered the client with.
type forwardReply struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

var errHomeUnreachable = errors.New("home region unreachable")

// routeHome handles a write for a key governed by a home_region rule. At
// the home region (or when the rule has no home) it returns handled=false
// and the write proceeds locally. Elsewhere it forwards the write to the
// home over NATS and relays the answer, redirects (307) or rejects (421),
// per the rule's home_mode; when the home is unreachable the rule's
// fallback applies: reject (503) or a local write under lww or siblings.
func (n *Node) routeHome(w http.ResponseWriter, r *http.Request, rule *rules.Rule, mut *store.Mutation, session conflict.VV) (bool, error) {
	if rule.Strategy() != rules.StrategyHomeRegion || !rule.HasHome() {
		return false, nil
	}
	home, err := n.homeOf(rule, mut)
	if err != nil {
		n.ruleError(mut.Key, err)
		return true, errorf(http.StatusBadRequest, "bad_home", "rule %s cannot place key %q: %v", rule.Name(), mut.Key, err)
	}
	if home == n.cfg.Region {
		return false, nil
	}
	mode := rule.HomeMode() // rules defaults it to forward
	reachable := n.peerReachable(home)
	if reachable {
		switch mode {
		case rules.HomeRedirect:
			n.metrics.forwards.WithLabelValues(mode, "ok").Inc()
			url := n.peerAddr(home).HTTP + r.URL.RequestURI()
			w.Header().Set("Location", url)
			writeJSON(w, http.StatusTemporaryRedirect, map[string]string{
				"error": fmt.Sprintf("key %q belongs to region %s; repeat the request there", mut.Key, home),
				"code":  "redirect", "home": home, "url": url,
			})
			return true, nil
		case rules.HomeReject:
			n.metrics.forwards.WithLabelValues(mode, "ok").Inc()
			return true, &apiError{status: http.StatusMisdirectedRequest, code: "wrong_region",
				msg:     fmt.Sprintf("key %q belongs to region %s; write it there", mut.Key, home),
				details: map[string]any{"home": home, "url": n.peerAddr(home).HTTP + r.URL.RequestURI()}}
		default:
			reply, err := n.forward(r.Context(), home, mut, r.Header.Get(HeaderContext), n.tokens.encodeSession(session))
			if err == nil {
				n.metrics.forwards.WithLabelValues(mode, "ok").Inc()
				relay(w, reply)
				return true, nil
			}
			n.log.Warn("forwarding to home region failed", "home", home, "key", mut.Key, "err", err)
			if !errors.Is(err, errHomeUnreachable) {
				return true, err
			}
		}
	}
	n.metrics.forwards.WithLabelValues(mode, "unreachable").Inc()
	return n.fallback(w, r, rule, home, mut, session)
}

// homeOf evaluates the rule's home for a mutation. A delete has no value:
// the key's current visible value stands in, so a home computed from the
// document stays where the document lives.
func (n *Node) homeOf(rule *rules.Rule, mut *store.Mutation) (string, error) {
	value := mut.Value.JSON()
	if mut.Deleted {
		if rec, ok, err := n.store.Get(mut.Key); err == nil && ok {
			if res, err := rule.Resolve(mut.Key, n.cfg.Region, rec.Versions); err == nil && res.Outcome == rules.OutcomeOne {
				value = res.Value
			}
		}
	}
	return rule.Home(mut.Key, value)
}

// fallback applies a home_region rule's fallback when the home region is
// unreachable.
func (n *Node) fallback(w http.ResponseWriter, r *http.Request, rule *rules.Rule, home string, mut *store.Mutation, session conflict.VV) (bool, error) {
	fb := rule.Fallback()
	if fb == "" {
		fb = "reject"
	}
	n.metrics.fallbacks.WithLabelValues(rule.Name(), string(fb)).Inc()
	n.log.Warn("home region unreachable; applying the rule's fallback", "rule", rule.Name(), "home", home, "key", mut.Key, "fallback", fb)
	switch fb {
	case rules.StrategyLWW, rules.StrategySiblings:
		mut.Supersede = mut.Context == nil && fb == rules.StrategyLWW
		res, err := n.writeMutation(r.Context(), rule, *mut)
		if err != nil {
			return true, err
		}
		n.answerWrite(w, mut.Key, res, session)
		return true, nil
	}
	return true, &apiError{status: http.StatusServiceUnavailable, code: "home_unreachable",
		msg:     fmt.Sprintf("key %q belongs to region %s, which is unreachable; retry later (rule %s has fallback: reject)", mut.Key, home, rule.Name()),
		details: map[string]any{"home": home}}
}

func relay(w http.ResponseWriter, reply forwardReply) {
	var ans writeAnswer
	if reply.Status == http.StatusOK && json.Unmarshal(reply.Body, &ans) == nil {
		w.Header().Set(HeaderContext, ans.Context)
		w.Header().Set(HeaderSession, ans.Session)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(reply.Status)
	w.Write(append(reply.Body, '\n')) //nolint:errcheck // client gone
}

// errClosing refuses new peer connections once the node began to close.
var errClosing = errors.New("the region is shutting down")

// peerConn returns this region's connection to a peer's NATS server,
// created on first use and reconnecting on its own afterwards.
func (n *Node) peerConn(peer string) (c *nats.Conn, created bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.peerConns[peer]; ok {
		return c, false, nil
	}
	if n.closing.Load() { // a connection made now would outlive the node
		return nil, false, fmt.Errorf("connect to %s: %w", peer, errClosing)
	}
	cc := n.natsConn("geogate-"+n.cfg.Region+"-to-"+peer, peer)
	cc.Background, cc.Timeout = true, time.Second
	c, err = link.Connect(n.peers[peer].NATS, cc)
	if err != nil {
		return nil, false, fmt.Errorf("connect to %s: %w", peer, err)
	}
	n.peerConns[peer] = c
	return c, true, nil
}

// peerReachable reports whether this region's connection to the peer's
// NATS is up. Only a connection just created gets a moment (500 ms) to come
// up; an established one that is down answers at once, so writes during a
// home outage fall back without waiting.
func (n *Node) peerReachable(peer string) bool {
	c, created, err := n.peerConn(peer)
	if err != nil {
		return false
	}
	if !created {
		return c.IsConnected()
	}
	up := func() bool { return c.IsConnected() || c.IsClosed() }
	return wait.Until(context.Background(), 500*time.Millisecond, "the connection", up) == nil && c.IsConnected()
}

// forward sends a write to its home region and returns the home's answer.
// The write is acknowledged to the client only with the home's answer.
func (n *Node) forward(ctx context.Context, home string, mut *store.Mutation, ctxToken, session string) (forwardReply, error) {
	c, _, err := n.peerConn(home)
	if err != nil {
		return forwardReply{}, fmt.Errorf("%w: %v", errHomeUnreachable, err)
	}
	req, err := json.Marshal(forwardRequest{From: n.cfg.Region, Key: mut.Key, Value: mut.Value.JSON(), Deleted: mut.Deleted, Context: ctxToken, Session: session})
	if err != nil {
		return forwardReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	msg, err := c.RequestWithContext(ctx, forwardSubject(home), req)
	if err != nil {
		// No responders, a timeout or a closed connection: the home did
		// not answer. (After a timeout the home may still have applied
		// the write; a retry makes a second version, never a lost one.)
		return forwardReply{}, fmt.Errorf("%w: %v", errHomeUnreachable, err)
	}
	var reply forwardReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil || reply.Status == 0 {
		return forwardReply{}, fmt.Errorf("bad reply from %s: %v", home, err)
	}
	return reply, nil
}

// serveForwards answers writes other regions forward to this one. Each is
// handled in its own goroutine (bounded) so forwarded writes group-commit
// like local ones.
func (n *Node) serveForwards(ctx context.Context) error {
	sem := make(chan struct{}, 256)
	// closed is set (under mu) before the node's WaitGroup can reach zero,
	// so no handler is added to it while Close waits.
	var mu sync.Mutex
	closed := false
	sub, err := n.conn.QueueSubscribe(forwardSubject(n.cfg.Region), "geogate", func(m *nats.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			<-sem
			return
		}
		n.wg.Add(1)
		mu.Unlock()
		go func() {
			defer n.wg.Done()
			defer func() { <-sem }()
			reply := n.handleForward(ctx, m.Data)
			b, _ := json.Marshal(reply) //nolint:errchkjson // plain struct
			m.Respond(b)                //nolint:errcheck // the requester times out and falls back
		}()
	})
	if err != nil {
		return fmt.Errorf("serve forwards: %w", err)
	}
	n.spawn(ctx, func() {
		<-ctx.Done()
		mu.Lock()
		closed = true
		mu.Unlock()
		sub.Unsubscribe() //nolint:errcheck // connection closing
	})
	return nil
}

// handleForward applies a forwarded write as if a client had sent it here.
// A write whose home is not this region (rules that differ between regions)
// is refused with 421 rather than forwarded again: no forwarding loops.
func (n *Node) handleForward(ctx context.Context, data []byte) forwardReply {
	answer := func(status int, v any) forwardReply {
		b, _ := json.Marshal(v) //nolint:errchkjson // plain values
		return forwardReply{Status: status, Body: b}
	}
	fail := func(err error) forwardReply { return answer(errorBody(err)) }
	var req forwardRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return fail(errorf(http.StatusBadRequest, "bad_forward", "malformed forwarded write: %v", err))
	}
	if err := validateKey(req.Key); err != nil {
		return fail(err)
	}
	ctxVV, err := n.tokens.decodeContext(req.Key, req.Context)
	if err != nil {
		return fail(n.badToken(conflict.TokenContext, err))
	}
	session, err := n.tokens.decodeSession(req.Session)
	if err != nil {
		return fail(n.badToken(conflict.TokenSession, err))
	}
	rule, err := n.matchRule(req.Key)
	if err != nil {
		return fail(err)
	}
	mut := store.Mutation{Key: req.Key, Deleted: req.Deleted, Context: ctxVV}
	if !req.Deleted {
		if mut.Value, err = store.ParseDoc(req.Value); err != nil {
			return fail(errorf(http.StatusBadRequest, "bad_json", "forwarded value of %q is not a JSON document: %v", req.Key, err))
		}
	}
	if rule.Strategy() == rules.StrategyHomeRegion && rule.HasHome() {
		if home, err := n.homeOf(rule, &mut); err != nil || home != n.cfg.Region {
			return fail(&apiError{status: http.StatusMisdirectedRequest, code: "wrong_region",
				msg: fmt.Sprintf("region %s received a write for key %q forwarded by %s, but its rules place the key in %q (%v); check that every region has the same rules", n.cfg.Region, req.Key, req.From, home, err)})
		}
	}
	res, err := n.write(ctx, rule, mut)
	if err != nil {
		return fail(err)
	}
	return answer(http.StatusOK, n.writeAnswerFor(req.Key, res, session))
}
