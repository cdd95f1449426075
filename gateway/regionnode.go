package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology/link"
	"github.com/geogate/geogate/topology/region"
)

// A region of several nodes (config nodes). Each node embeds one server
// of the region's NATS cluster (or all use an external cluster), on which
// live the region log (region.Log, replicated on every node), the leader
// lease (region.Lease) and the region's stream GEO_<region>. One node
// leads: its store appends every commit to the region log before it
// commits (store.Replicator), and it runs the leader's duties (duty.go).
// The others follow: they apply the log to their stores (store.ApplyLog),
// serve reads, forward everything else to the leader (forward.go), and
// stand by. The Elector moves the lease when the leader is lost; the new
// leader first applies the log to its end, then appends a term marker
// that fences the old one off.
//
// A node that joins, or whose position the log no longer holds, loads a
// copy of the leader's store (store.LoadCopy) over the node subject, then
// follows from the copy's position. A node whose store holds entries the
// log does not (only possible when a majority of the nodes lost power with
// nats.sync an interval, or the log was deleted) diverged: it does not
// follow nor lead, and says so in its status, until an operator moves its
// data aside.

// Node states in a region of several nodes (status node_state).
const (
	nodeStarting  = "starting"  // opening the region log and lease
	nodeFollowing = "following" // applying the region log
	nodeCopying   = "copying"   // loading a copy of the leader's store
	nodeWaiting   = "waiting"   // needs a copy, and no node leads to give one
	nodeDiverged  = "diverged"  // holds entries the log lacks: see above
	nodeLeading   = "leading"
)

// regionNode is a node's part in a region of several nodes.
type regionNode struct {
	n   *Node
	log *slog.Logger
	ctx context.Context // the node's; set by start

	rlog   *region.Log
	lease  *region.Lease
	roster *region.Roster
	el     *region.Elector

	// copies are the copy sessions this node serves while it leads.
	copies *snapServer

	mu     sync.Mutex
	state  string
	why    string // what the state waits for, or what diverged
	leader region.Holder
	term   uint64
	// leaderGone is closed when leader stops being the lease's holder
	// (replaced, or the lease expired), and replaced by a new channel:
	// requests forwarded to the old leader stop waiting for it.
	leaderGone chan struct{}
	// firstSince is when this node, starting with an empty store, found
	// the region log empty (zero otherwise): it stands in the region's
	// first election only as region.FirstLeaderAllowed says, so that a
	// node holding data (a region of one node converted to several, all
	// nodes started at once) becomes the first leader, not an empty one.
	firstSince time.Time
	// streamLeadersMoved: the leader's streams have their own leaders on
	// other nodes (read by status, hence atomic).
	streamLeadersMoved atomic.Bool
	// prev is the last other node this node saw lead.
	prev     string
	follow   *followRun
	fencedCh chan struct{} // closed when the log refused or lost an append this term
	fenceOne *sync.Once

	// through is the last region-log message the follower loop consumed;
	// lagEntries and lagSince describe how far behind the log's end it is.
	through    atomic.Uint64
	lagEntries atomic.Uint64
	lagSince   atomic.Int64 // unix ms of the oldest entry not applied; 0 when caught up
	copiesDone atomic.Uint64
	terms      atomic.Uint64 // leadership terms this node held
}

// followRun is one run of the follower loop.
type followRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func newRegionNode(n *Node) *regionNode {
	rn := &regionNode{n: n, log: n.log.With("node", n.cfg.Node), state: nodeStarting, leaderGone: make(chan struct{})}
	rn.copies = newSnapServer(rn.log)
	return rn
}

// routeSecret is the password of the routes between the region's nodes'
// servers: derived from the region's NATS seed, which only its nodes hold
// (empty without one: routes are then only as closed as the network).
func routeSecret(s *security, region string) string {
	if s.nkey == nil {
		return ""
	}
	seed, err := s.nkey.Seed()
	if err != nil {
		return ""
	}
	m := hmac.New(sha256.New, seed)
	m.Write([]byte("geogate routes of region " + region))
	return hex.EncodeToString(m.Sum(nil))
}

// clusterOptions makes the embedded server one node of the region's NATS
// cluster.
func (n *Node) clusterOptions() *link.ClusterOptions {
	c := &link.ClusterOptions{Name: "geogate-" + n.cfg.Region, Listen: n.cfg.NATS.ClusterListen, TLS: n.sec.natsClusterTLS,
		Secret: routeSecret(n.sec, n.cfg.Region)}
	for _, name := range n.cfg.NodeNames() {
		if name == n.cfg.Node {
			continue
		}
		c.Routes = append(c.Routes, "nats-route://"+hostOf(n.cfg.Nodes[name].Cluster))
	}
	return c
}

// start runs the node's part in the region until ctx ends.
func (rn *regionNode) start(ctx context.Context) {
	rn.ctx = ctx
	rn.n.spawn(ctx, func() { rn.run(ctx) })
}

func (rn *regionNode) run(ctx context.Context) {
	cfg := rn.n.cfg
	js, err := jetstream.New(rn.n.conn)
	if err != nil {
		rn.setState(nodeStarting, err.Error())
		rn.log.Error("region log: jetstream", "err", err)
		return
	}
	replicas := cfg.NATS.Replicas
	// A new cluster elects its JetStream leader a moment after its nodes
	// meet: until then no stream can be made.
	err = wait.Until(ctx, 365*24*time.Hour, "the region's JetStream cluster", func() bool {
		if rn.rlog == nil {
			l, err := region.OpenLog(ctx, js, cfg.Region, replicas, cfg.RegionLog.MaxAge, int64(cfg.RegionLog.MaxBytes))
			if err != nil {
				rn.setState(nodeStarting, "opening the region log: "+err.Error())
				return false
			}
			l.SetMaxMessage(int(cfg.HTTP.MaxValueBytes) + int(eventReserveForLog))
			rn.rlog = l
		}
		lease, err := region.OpenLease(ctx, js, cfg.Region, cfg.Node, replicas, cfg.Election.LeaseTTL)
		if err != nil {
			rn.setState(nodeStarting, "opening the leader lease: "+err.Error())
			return false
		}
		rn.lease = lease
		if rn.roster == nil {
			roster, err := region.OpenRoster(ctx, js, cfg.Region, replicas)
			if err != nil {
				rn.setState(nodeStarting, "opening the region's roster: "+err.Error())
				return false
			}
			pos, _ := rn.n.store.LogPosition()
			if err := roster.Announce(ctx, cfg.Node, rn.n.store.Actor() != "" || pos > 0); err != nil {
				rn.setState(nodeStarting, err.Error())
				return false
			}
			rn.roster = roster
		}
		return true
	})
	if err != nil {
		return
	}
	rn.log.Info("region log and lease open", "replicas", replicas, "lease_ttl", cfg.Election.LeaseTTL)
	rn.startFollowing()
	rn.el = region.NewElector(region.ElectorConfig{Node: cfg.Node, Lease: rn.lease, Log: rn.rlog, Logger: rn.log,
		Hooks: region.Hooks{Promote: rn.promote, Lead: rn.lead, Abandon: rn.abandon, Observe: rn.observe, Ready: rn.ready}})
	rn.el.Run(ctx)
	rn.stopFollowing()
}

// eventReserveForLog is the room a region-log message keeps below the
// servers' max_payload (sized for the largest event) for its headers.
const eventReserveForLog = 32 << 10

func (rn *regionNode) setState(state, why string) {
	rn.mu.Lock()
	changed := rn.state != state
	rn.state, rn.why = state, why
	rn.mu.Unlock()
	if changed {
		rn.log.Info("node state", "state", state, "why", why)
	}
}

// diverged records that this node's store cannot follow the region log,
// and why, and returns the reason as an error.
func (rn *regionNode) diverged(why string) error {
	rn.setState(nodeDiverged, why)
	return errors.New(why)
}

func (rn *regionNode) observe(h region.Holder) {
	rn.mu.Lock()
	if h.Node != "" && h.Node != rn.n.cfg.Node {
		rn.prev = h.Node
	}
	if h != rn.leader {
		close(rn.leaderGone)
		rn.leaderGone = make(chan struct{})
	}
	rn.leader = h
	if h.Term > rn.term {
		rn.term = h.Term
	}
	rn.mu.Unlock()
	if h.Node != "" {
		rn.log.Info("the region's leader", "leader", h.Node, "term", h.Term)
	}
}

// ready reports whether this node could lead: it follows the log, has
// applied it to its end, and its storage has not failed. A follower's log
// consumer lives on one of the region's servers, picked at random: when
// that is the lost leader's, the follower stops receiving entries without
// knowing it until its consumer is found dead. Such a node must leave the
// lease to one that holds every entry, rather than take it and fail to
// catch up (which held a failover up by a lease TTL per attempt).
func (rn *regionNode) ready() bool {
	rn.mu.Lock()
	following, since := rn.state == nodeFollowing, rn.firstSince
	rn.mu.Unlock()
	if !following || rn.n.store.Storage().State == store.StorageFailed {
		return false
	}
	ctx, cancel := context.WithTimeout(rn.ctx, time.Second)
	defer cancel()
	last, _, err := rn.rlog.Last(ctx)
	if err != nil {
		return false
	}
	if since.IsZero() || last > 0 {
		if !since.IsZero() { // another node started the log: this one follows it
			rn.mu.Lock()
			rn.firstSince = time.Time{}
			rn.mu.Unlock()
		}
		return rn.through.Load() >= last
	}
	// The region's first election: an empty node defers to a node that
	// announced data, and waits to hear from every node (or long enough).
	announced, err := rn.roster.Read(ctx)
	if err != nil {
		return false
	}
	patient := time.Since(since) > firstPatience*rn.n.cfg.Election.LeaseTTL
	if region.FirstLeaderAllowed(announced, rn.n.cfg.NodeNames(), patient) {
		return true
	}
	for node, data := range announced {
		if data {
			rn.setState(nodeFollowing, fmt.Sprintf("waiting for node %s, which holds the region's data, to start the region log: start it "+
				"(if it is gone for good, delete its entry %q from the key-value bucket %s)", node, node, region.RosterBucket(rn.n.cfg.Region)))
			return false
		}
	}
	rn.setState(nodeFollowing, "the region log is empty: waiting for every node to start (or for "+
		(firstPatience*rn.n.cfg.Election.LeaseTTL).String()+") before an empty node starts it")
	return false
}

// firstPatience is how many lease TTLs an empty node waits, in a region
// whose log is empty, for every node to announce itself before it stands
// for election without having heard from them all.
const firstPatience = 10

// leaderNow returns the node the lease names (zero while nobody holds it).
func (rn *regionNode) leaderNow() region.Holder {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.leader
}

// startFollowing starts the follower loop (no-op if it runs).
func (rn *regionNode) startFollowing() {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.follow != nil || rn.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(rn.ctx)
	fr := &followRun{cancel: cancel, done: make(chan struct{})}
	rn.follow = fr
	rn.n.spawn(rn.ctx, func() {
		defer close(fr.done)
		rn.followLoop(ctx)
	})
}

// stopFollowing stops the follower loop and waits for it.
func (rn *regionNode) stopFollowing() {
	rn.mu.Lock()
	fr := rn.follow
	rn.follow = nil
	rn.mu.Unlock()
	if fr != nil {
		fr.cancel()
		<-fr.done
	}
}

// followLoop keeps the store following the log until ctx ends.
func (rn *regionNode) followLoop(ctx context.Context) {
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := rn.followOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, region.ErrFollowStalled):
			rn.log.Warn("following the region log stalled; following again", "err", err)
		case err != nil:
			rn.log.Debug("following the region log", "err", err)
		}
		if wait.Sleep(ctx, pause+rand.N(pause)) != nil {
			return
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// errNoLeader is returned when a node needs a copy and nobody leads.
var errNoLeader = errors.New("no node leads the region")

// followOnce settles what the store needs (a copy, or nothing) and follows
// the log from the store's position until ctx ends or following fails.
func (rn *regionNode) followOnce(ctx context.Context) error {
	st := rn.n.store
	first, err := rn.rlog.First(ctx)
	if err != nil {
		return err
	}
	last, _, err := rn.rlog.Last(ctx)
	if err != nil {
		return err
	}
	pos, term := st.LogPosition()
	switch {
	case st.Copying():
		return rn.copyFromLeader(ctx, "its last copy was cut off")
	case st.Actor() == "" && first > 1:
		return rn.copyFromLeader(ctx, "it joins the region, whose log no longer starts at its beginning")
	case st.Actor() == "" && last == 0:
		rn.mu.Lock()
		if rn.firstSince.IsZero() {
			rn.firstSince = time.Now()
		}
		rn.mu.Unlock()
		rn.setState(nodeFollowing, "the region log is empty: the first leader starts it")
	case st.Actor() == "":
		rn.setState(nodeFollowing, "an empty store: following the region log from its start")
	case pos == 0 && last > 0:
		return rn.diverged("this node's store holds writes of its own but never followed the region log, which other nodes started: " +
			"start the node that holds the region's data first, or move this node's data aside to seed it from the leader")
	case pos > last:
		return rn.diverged(fmt.Sprintf("this node's store holds region-log entries up to %d, beyond the log's end (%d): the log lost entries (a majority of the nodes lost power with nats.sync an interval?); move this node's data aside to seed it from the leader", pos, last))
	case pos+1 < first:
		return rn.copyFromLeader(ctx, fmt.Sprintf("the region log no longer holds the entries after %d (it starts at %d)", pos, first))
	case pos > 0:
		t, ok, err := rn.rlog.TermAt(ctx, pos)
		if err != nil {
			return err
		}
		if ok && t != term {
			return rn.diverged(fmt.Sprintf("this node's store holds entry %d of term %d; the region log's entry %d is of term %d: move this node's data aside to seed it from the leader", pos, term, pos, t))
		}
		rn.setState(nodeFollowing, "")
	default:
		rn.setState(nodeFollowing, "")
	}
	rn.through.Store(pos)
	rn.lagEntries.Store(last - min(last, pos))
	err = rn.rlog.Follow(ctx, pos, func(es []region.Entry, through, pending uint64) error {
		if len(es) > 0 {
			entries := make([]store.LogEntry, len(es))
			for i, e := range es {
				entries[i] = store.LogEntry{Seq: e.Seq, Term: e.Term, Effects: e.Data}
			}
			if err := st.ApplyLog(ctx, entries); err != nil {
				return err
			}
		}
		rn.through.Store(through)
		rn.noteLag(pending)
		return nil
	})
	switch {
	case errors.Is(err, region.ErrTrimmed):
		return rn.copyFromLeader(ctx, err.Error())
	case errors.Is(err, store.ErrNeedsCopy):
		return rn.copyFromLeader(ctx, "the region's first leader started its log from data it already held")
	}
	return err
}

// noteLag records how far behind the log's end the follower is, from the
// count of entries the log held past the last one delivered (no request
// to the stream: this runs after every batch a follower applies).
func (rn *regionNode) noteLag(behind uint64) {
	rn.lagEntries.Store(behind)
	switch {
	case behind == 0:
		rn.lagSince.Store(0)
	case rn.lagSince.Load() == 0:
		rn.lagSince.Store(time.Now().UnixMilli())
	}
}

// copyFromLeader replaces the store with a copy of the leader's.
func (rn *regionNode) copyFromLeader(ctx context.Context, why string) error {
	leader := rn.leaderNow()
	if leader.Node == "" || leader.Node == rn.n.cfg.Node {
		rn.setState(nodeWaiting, "needs a copy of the leader's store ("+why+"); no other node leads")
		return errNoLeader
	}
	rn.setState(nodeCopying, why)
	start := time.Now()
	r, err := rn.fetchCopy(ctx, leader.Node)
	if err != nil {
		return err
	}
	defer r.Close()
	info, err := rn.n.store.LoadCopy(ctx, r)
	if err != nil {
		return fmt.Errorf("copy from %s: %w", leader.Node, err)
	}
	rn.copiesDone.Add(1)
	rn.log.Info("loaded a copy of the leader's store", "leader", leader.Node, "log_position", info.Header.LogSeq,
		"keys", info.Records, "bytes", info.Bytes, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// promote runs when this node took the lease for term: it applies the log
// to its end, then makes its store lead after it (the store appends the
// term marker, which fences off any earlier leader).
func (rn *regionNode) promote(ctx context.Context, term uint64) error {
	st := rn.n.store
	rn.mu.Lock()
	state, why := rn.state, rn.why
	rn.mu.Unlock()
	switch state {
	case nodeDiverged, nodeCopying, nodeWaiting, nodeStarting:
		return fmt.Errorf("cannot lead while %s: %s", state, why)
	}
	last, _, err := rn.rlog.Last(ctx)
	if err != nil {
		return err
	}
	if st.Actor() == "" && last > 0 {
		return errors.New("cannot lead: this node holds none of the region's data yet")
	}
	// Catch up: the follower loop applies what the log holds.
	err = wait.Until(ctx, rn.n.cfg.Election.LeaseTTL, "catching up with the region log", func() bool { return rn.through.Load() >= last })
	if err != nil {
		return fmt.Errorf("the follower is at %d, the log at %d: %w", rn.through.Load(), last, err)
	}
	rn.stopFollowing()
	after := max(last, rn.through.Load())
	once := &sync.Once{}
	fenced := make(chan struct{})
	rn.mu.Lock()
	rn.fencedCh, rn.fenceOne = fenced, once
	rn.mu.Unlock()
	if err := st.Lead(ctx, term, after, logAppender{rn: rn, term: term, fence: func() { once.Do(func() { close(fenced) }) }}); err != nil {
		rn.startFollowing()
		return err
	}
	rn.mu.Lock()
	rn.term = term
	rn.mu.Unlock()
	return nil
}

// storageCheck is how often a leader looks at its storage's health.
const storageCheck = time.Second

// abandon undoes a promotion the elector could not follow with lead (the
// lease was lost while promote ran): the store stops acknowledging and the
// node follows the log again, from the store's position.
func (rn *regionNode) abandon(term uint64) {
	rn.log.Warn("the lease was lost as this node finished catching up; following again", "term", term)
	rn.stopAcknowledging(rn.ctx)
	rn.followAgain()
}

// stopAcknowledging puts the store back to following: from its return the
// store refuses writes.
func (rn *regionNode) stopAcknowledging(ctx context.Context) {
	if err := rn.n.store.Follow(context.WithoutCancel(ctx)); err != nil {
		rn.log.Error("store: follow", "err", err)
	}
}

// followAgain shows the node as following and starts its follower loop.
func (rn *regionNode) followAgain() {
	rn.setState(nodeFollowing, "")
	rn.startFollowing()
}

// lead runs the leader's duties for term until ctx ends (the lease is
// lost, the node stops) or the log fences this node off.
func (rn *regionNode) lead(ctx context.Context, term uint64) {
	n := rn.n
	rn.mu.Lock()
	fenced := rn.fencedCh
	rn.mu.Unlock()
	rn.terms.Add(1)
	rn.setState(nodeLeading, "")
	d, err := n.startDuties(ctx)
	var stopServing func()
	if err == nil {
		stopServing, err = rn.serveNode(d.ctx)
	}
	if err != nil {
		rn.log.Error("could not start the leader's duties; stepping down", "term", term, "err", err)
	} else {
		// The streams' own leaders move off this node, so that losing it
		// later costs no JetStream election on the way to the next
		// leader: every second while one cannot move yet (no follower
		// replica is current, as right after the region starts), then
		// every 10 s (a follower's loss may put one back here). Not
		// before this node takes writes (asking a stream led by a stalled
		// server waits out a timeout, which would lengthen the failover
		// under way), and in the term's first 10 s never to the previous
		// leader: stopping or lost, it may still look like a current
		// replica.
		mctx, stopMoving := context.WithCancel(ctx)
		rn.streamLeadersMoved.Store(false)
		rn.mu.Lock()
		prev := rn.prev
		rn.mu.Unlock()
		began := time.Now()
		n.spawn(mctx, func() {
			for {
				pause := 10 * time.Second
				avoid := ""
				if time.Since(began) < 10*time.Second {
					avoid = prev
				}
				pending := rn.moveStreamLeaders(mctx, avoid)
				if mctx.Err() != nil {
					return // the term ended: its flag is no longer this node's to set
				}
				rn.streamLeadersMoved.Store(!pending)
				if pending {
					pause = time.Second
				}
				if wait.Sleep(mctx, pause) != nil {
					return
				}
			}
		})
		// A leader whose storage failed (an I/O error, a filesystem
		// turned read-only: it refuses everything until a restart) hands
		// the region to a node whose disk works. Low space does not: the
		// nodes hold the same data, so theirs is likely as low, and the
		// leader's trims go on meanwhile.
		check := time.NewTicker(storageCheck)
	watch:
		for {
			select {
			case <-ctx.Done():
				break watch
			case <-fenced:
				rn.log.Warn("the region log refused or lost an append: another node leads, or may; stepping down", "term", term)
				break watch
			case <-check.C:
				if st := n.store.Storage(); st.State == store.StorageFailed {
					rn.log.Warn("this node's storage failed; stepping down so that another node leads", "term", term, "reason", st.Reason)
					break watch
				}
			}
		}
		check.Stop()
		stopMoving()
	}
	// Stop acknowledging first: from here the store refuses writes.
	rn.stopAcknowledging(ctx)
	if stopServing != nil {
		stopServing()
	}
	if d != nil {
		n.stopDuties(d)
	}
	rn.copies.closeAll()
	rn.followAgain()
}

// logAppender is the leading store's Replicator: it appends to the region
// log under the node's term, fenced on the store's last position.
type logAppender struct {
	rn    *regionNode
	term  uint64
	fence func()
}

func (a logAppender) Append(after uint64, effects []byte) (uint64, error) {
	ctx, cancel := context.WithTimeout(a.rn.ctx, a.rn.n.cfg.RegionLog.AppendTimeout)
	defer cancel()
	seq, err := a.rn.rlog.Append(ctx, after, a.term, effects)
	switch {
	case err == nil:
		return seq, nil
	case errors.Is(err, region.ErrFenced):
		a.fence()
		return 0, fmt.Errorf("%w: %w", store.ErrNotLeader, err)
	default:
		a.fence()
		return 0, fmt.Errorf("%w: %w", store.ErrLogUnknown, err)
	}
}

// NodeStatus is a node's part in its region, in /v1/status: the node's
// name, its role ("leader" or "follower"), the leader's name and the
// leadership term (0 for a region of one node, which always leads).
type NodeStatus struct {
	Node   string `json:"node"`
	Role   string `json:"role"`
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
	// State is the node's state in a region of several nodes (following,
	// copying, waiting, diverged, leading, starting), with Why.
	State string `json:"node_state,omitempty"`
	Why   string `json:"node_state_reason,omitempty"`
	// Log is the node's position in the region log and how far behind its
	// end it is (regions of several nodes).
	Log *RegionLogStatus `json:"region_log,omitempty"`
	// Nodes lists the region's nodes (regions of several nodes).
	Nodes []string `json:"nodes,omitempty"`
}

// RegionLogStatus is a node's position in its region's log: the last
// entry it holds and its term, how many entries and seconds it is behind
// the log's end (a follower), the copies of the leader's store it loaded,
// the terms it led, and whether it could lead now.
type RegionLogStatus struct {
	Position    uint64  `json:"position"`
	Term        uint64  `json:"term"`
	LagEntries  uint64  `json:"lag_entries"`
	LagSeconds  float64 `json:"lag_seconds"`
	Copies      uint64  `json:"copies"`
	TermsLed    uint64  `json:"terms_led"`
	ReadyToLead bool    `json:"ready_to_lead"`
	// FailoverReady (the leader) is true once no JetStream stream of the
	// region has its own leader on this node: losing it then costs only
	// the lease's expiry, not also JetStream's elections (4 to 9 s).
	FailoverReady bool `json:"failover_ready"`
}

// nodeStatus reports the node's part in its region.
func (n *Node) nodeStatus() NodeStatus {
	rn := n.rn
	if rn == nil {
		return NodeStatus{Node: n.cfg.Node, Role: "leader", Leader: n.cfg.Node}
	}
	rn.mu.Lock()
	st := NodeStatus{Node: n.cfg.Node, Role: "follower", Leader: rn.leader.Node, Term: max(rn.term, rn.leader.Term), State: rn.state, Why: rn.why,
		Nodes: n.cfg.NodeNames()}
	rn.mu.Unlock()
	if n.store.Role() == store.Leading && n.leading() {
		st.Role, st.Leader = "leader", n.cfg.Node
	}
	pos, term := n.store.LogPosition()
	ls := &RegionLogStatus{Position: pos, Term: term, LagEntries: rn.lagEntries.Load(), Copies: rn.copiesDone.Load(), TermsLed: rn.terms.Load()}
	if since := rn.lagSince.Load(); since > 0 && st.Role == "follower" {
		ls.LagSeconds = time.Since(time.UnixMilli(since)).Seconds()
	}
	if st.Role == "leader" {
		ls.LagEntries = 0
	}
	ls.ReadyToLead = st.State == nodeFollowing || st.State == nodeLeading
	ls.FailoverReady = st.Role == "leader" && rn.streamLeadersMoved.Load()
	st.Log = ls
	return st
}

// fetchCopy asks the leader for a copy of its store over the node subject
// and returns the stream.
func (rn *regionNode) fetchCopy(ctx context.Context, leader string) (io.ReadCloser, error) {
	rep, err := rn.nodeRequest(ctx, nodeRequest{Op: opCopyOpen, From: rn.n.cfg.Node})
	if err != nil {
		return nil, fmt.Errorf("copy from %s: %w", leader, err)
	}
	return fetchStream(ctx, rn.n.conn, func(seq int) (*nats.Msg, error) {
		b, err := encodeNodeRequest(nodeRequest{Op: opCopyNext, From: rn.n.cfg.Node, Session: rep.Session, Seq: seq})
		return &nats.Msg{Subject: nodeSubject(rn.n.cfg.Region), Data: b, Header: nats.Header{hdrOp: {opCopyNext}}}, err
	}, "copy from "+leader)
}

// moveStreamLeaders asks each replicated stream of the region whose
// JetStream leader is this node's server (the region log, the lease's
// bucket, the region's stream) to hand its leadership to a current
// follower replica. A JetStream stream whose leader is lost elects another
// only after its election timeout (4 to 9 seconds); with those leaders on
// the followers, losing the leader node costs only the lease's TTL. Best
// effort: failures are logged. It reports whether a stream it leads could
// not be moved (no current follower replica but the server of node avoid,
// or the request failed).
func (rn *regionNode) moveStreamLeaders(ctx context.Context, avoid string) (pending bool) {
	n := rn.n
	js, err := jetstream.New(n.conn)
	if err != nil {
		return false
	}
	own := "geogate-" + n.cfg.Node
	for _, name := range []string{region.LogStream(n.cfg.Region), "KV_" + region.LeaseBucket(n.cfg.Region), link.StreamName(n.cfg.Region)} {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := js.Stream(ictx, name)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = st.Info(ictx)
		}
		cancel()
		if err != nil {
			pending = true // not known: try again soon
			continue
		}
		if info.Cluster == nil || info.Cluster.Leader != own {
			continue
		}
		// A replica still counts as current for a while after its server
		// died, stopped or stalled: only one heard from within the last
		// 1.5 s (raft heartbeats come every second) is a target, or the
		// move would leave the stream without a leader until its next
		// election.
		to := ""
		for _, p := range info.Cluster.Replicas {
			if p.Current && !p.Offline && p.Active < 1500*time.Millisecond && (avoid == "" || p.Name != "geogate-"+avoid) {
				to = p.Name
				break
			}
		}
		if to == "" {
			pending = true
			continue
		}
		body, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": to}}) //nolint:errchkjson // a map of strings
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = n.conn.RequestWithContext(rctx, "$JS.API.STREAM.LEADER.STEPDOWN."+name, body)
		rcancel()
		if err != nil {
			rn.log.Debug("move a stream's leader", "stream", name, "to", to, "err", err)
			pending = true
			continue
		}
		rn.log.Info("moved a stream's leader off this node", "stream", name, "to", to)
	}
	return pending
}
