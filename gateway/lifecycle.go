package gateway

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/store"
)

// The region lifecycle: what keeps a region whole over time, beyond
// replicating events.
//
//   - Positions (this file): every region learns every region's applied
//     positions by exchanging what it knows with the peers it pulls from
//     (gossip), so that in a star or a ring it hears of regions it has no
//     link with. Tombstone collection needs them (lifecycle_gc.go), and so
//     does re-seeding, which compares a peer's positions with its own.
//   - Re-seeding (reseed.go): a link whose peer's stream no longer holds
//     events this region needs merges a snapshot of the peer instead.
//   - Anti-entropy (antientropy.go): regions compare digest trees of their
//     records and repair what differs.
//   - Snapshots (snapshot_transfer.go): served to peers over NATS and to
//     `geogate backup` over HTTP.
//
// Everything a peer asks of this region arrives as a request on its own
// NATS server, on lifecycleSubject(region), which the topology plan lets
// every region that pulls from it use (topology.Names.Lifecycle), so it
// crosses the same path, proxies and credentials as the link.

// lifecycleSubject is where a region serves its peers' lifecycle requests.
func lifecycleSubject(region string) string { return "geogate.lifecycle." + region }

// Lifecycle request operations.
const (
	opGossip   = "gossip"        // exchange position tables
	opSnapOpen = "snapshot.open" // start a snapshot session
	opSnapNext = "snapshot.next" // the next segment of a session
	opNodes    = "ae.nodes"      // digests of the children of tree nodes
	opKeys     = "ae.keys"       // keys of buckets, with records that differ
	opPush     = "ae.push"       // records to merge (repair)
	opRecords  = "records"       // records of keys
)

// lifeRequest is a lifecycle request (JSON).
type lifeRequest struct {
	Op      string            `json:"op"`
	From    string            `json:"from"`
	Table   map[string]report `json:"table,omitempty"`
	Session string            `json:"session,omitempty"`
	Seq     int               `json:"seq,omitempty"`
	Level   int               `json:"level,omitempty"`
	IDs     []uint32          `json:"ids,omitempty"`
	Keys    []wireKeyHash     `json:"keys,omitempty"`
	Records []wireRecord      `json:"records,omitempty"`
	Names   []string          `json:"names,omitempty"`
}

// lifeReply is the answer to a lifeRequest (JSON; snapshot segments are
// raw bytes, see snapshot_transfer.go).
type lifeReply struct {
	Error   string            `json:"error,omitempty"`
	Table   map[string]report `json:"table,omitempty"`
	Session string            `json:"session,omitempty"`
	// Digests are tree node digests, 8 bytes each, little-endian.
	Digests []byte        `json:"digests,omitempty"`
	Keys    []wireKeyHash `json:"keys,omitempty"`
	Records []wireRecord  `json:"records,omitempty"`
	Changed int           `json:"changed,omitempty"`
	Skipped int           `json:"skipped,omitempty"`
}

type wireKeyHash struct {
	K string `json:"k"`
	H uint64 `json:"h"`
}

// wireRecord is a record in the store's own encoding (with its checksum).
type wireRecord struct {
	K string `json:"k"`
	R []byte `json:"r"`
}

func toWire(recs []store.KeyRecord) []wireRecord {
	out := make([]wireRecord, len(recs))
	for i, kr := range recs {
		out[i] = wireRecord{K: kr.Key, R: store.AppendRecord(nil, kr.Record)}
	}
	return out
}

func fromWire(recs []wireRecord) ([]store.KeyRecord, error) {
	out := make([]store.KeyRecord, len(recs))
	for i, w := range recs {
		rec, err := store.DecodeRecord(w.R)
		if err != nil {
			return nil, fmt.Errorf("record %q: %w", w.K, err)
		}
		out[i] = store.KeyRecord{Key: w.K, Record: rec}
	}
	return out, nil
}

// report is one region's applied positions as it reported them, stamped
// with its own clock (Unix ms): a newer stamp from the same region replaces
// an older one.
type report struct {
	Applied conflict.VV `json:"applied"`
	At      int64       `json:"at"`
}

// lifecycleTimeout bounds one lifecycle request's round trip.
const lifecycleTimeout = 10 * time.Second

// lifecycle is one node's lifecycle machinery.
type lifecycle struct {
	n   *Node
	log *slog.Logger
	m   *lifecycleMetrics

	mu sync.Mutex
	// table is what this region knows of every region's positions.
	table map[string]report
	// peers' positions as their own replies said, with when they came.
	heard map[string]heardReport
	// reseeds tracks each inbound link's re-seeding (reseed.go).
	reseeds map[string]*reseedState
	// ae is the anti-entropy state per peer (antientropy.go).
	ae aeState
	// gc is the tombstone collection state (lifecycle_gc.go).
	gc gcState

	snaps *snapServer // snapshot sessions served (snapshot_transfer.go)
	// reseedMu serialises re-seeds: one snapshot merged at a time.
	reseedMu sync.Mutex
	// reseedBegun, if set (by tests), runs once a re-seed shows its link
	// "reseeding", before it fetches the snapshot.
	reseedBegun atomic.Pointer[func(peer string)]
	// kick wakes the re-seed watcher (a forced re-seed).
	kick chan string
	// busy bounds the peers' requests served at once.
	busy chan struct{}
}

// maxServing bounds the lifecycle requests a region serves at once (a
// request beyond it waits for one to finish).
const maxServing = 8

type heardReport struct {
	report
	received time.Time
}

func newLifecycle(n *Node) *lifecycle {
	lc := &lifecycle{
		n: n, log: n.log.With("component", "lifecycle"),
		table: map[string]report{}, heard: map[string]heardReport{}, reseeds: map[string]*reseedState{},
		kick: make(chan string, 16), busy: make(chan struct{}, maxServing),
	}
	lc.m = newLifecycleMetrics(n, lc)
	lc.snaps = newSnapServer(lc.log)
	return lc
}

// start serves peers' requests and runs the loops, until ctx ends.
func (lc *lifecycle) start(ctx context.Context) error {
	lc.snaps.reopen() // closed when the previous run of duties ended
	sub, err := lc.n.conn.Subscribe(lifecycleSubject(lc.n.cfg.Region), lc.serve)
	if err != nil {
		return fmt.Errorf("serve lifecycle requests: %w", err)
	}
	lc.n.spawn(ctx, func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
		lc.snaps.closeAll()
	})
	run := func(f func(context.Context)) { lc.n.spawn(ctx, func() { f(ctx) }) }
	run(lc.gossipLoop)
	run(lc.reseedLoop)
	run(lc.aeLoop)
	run(lc.gcLoop)
	run(lc.scrubLoop)
	run(lc.snaps.reap)
	return nil
}

// serve answers one lifecycle request. Snapshot segments go to their
// session's goroutine (in order); everything else runs on a goroutine of
// its own, so a slow scan never holds up the others.
func (lc *lifecycle) serve(m *nats.Msg) {
	var req lifeRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		respondJSON(m, lifeReply{Error: "bad request: " + err.Error()})
		return
	}
	if !slices.Contains(lc.n.current().cfg.Peers(), req.From) {
		respondJSON(m, lifeReply{Error: fmt.Sprintf("%q is not a region of this deployment", req.From)})
		return
	}
	if req.Op == opSnapNext {
		lc.snaps.next(m, req)
		return
	}
	go func() {
		lc.busy <- struct{}{}
		defer func() { <-lc.busy }()
		rep, err := lc.handle(req)
		if err != nil {
			rep = lifeReply{Error: err.Error()}
		}
		respondJSON(m, rep)
	}()
}

func respondJSON(m *nats.Msg, rep lifeReply) {
	b, err := json.Marshal(rep)
	if err != nil {
		b, _ = json.Marshal(lifeReply{Error: err.Error()}) //nolint:errchkjson // a string
	}
	_ = m.Respond(b)
}

func (lc *lifecycle) handle(req lifeRequest) (lifeReply, error) {
	s := lc.n.store
	switch req.Op {
	case opGossip:
		lc.mergeTable(req.Table)
		return lifeReply{Table: lc.snapshotTable()}, nil
	case opSnapOpen:
		peer := req.From
		id, err := lc.snaps.open(peer, func(ctx context.Context, w io.Writer) error {
			start := time.Now()
			info, err := lc.n.store.WriteSnapshot(ctx, w)
			if err != nil {
				lc.log.Warn("snapshot to a peer ended early", "peer", peer, "err", err)
				return err
			}
			lc.m.snapshotsServed.Inc()
			lc.log.Info("snapshot served", "peer", peer, "records", info.Records, "bytes", info.Bytes, "took", time.Since(start).Round(time.Millisecond))
			return nil
		})
		return lifeReply{Session: id}, err
	case opNodes:
		if len(req.IDs) > maxNodesPerRequest/store.MerkleFanout {
			return lifeReply{}, fmt.Errorf("%d parents asked, at most %d", len(req.IDs), maxNodesPerRequest/store.MerkleFanout)
		}
		d, err := s.TreeNodes(req.Level, children(req.IDs))
		b := make([]byte, 0, 8*len(d))
		for _, x := range d {
			b = binary.LittleEndian.AppendUint64(b, x)
		}
		return lifeReply{Digests: b}, err
	case opKeys:
		return lc.serveKeys(req)
	case opPush:
		recs, err := fromWire(req.Records)
		if err != nil {
			return lifeReply{}, err
		}
		changed, skipped, err := s.MergeRecords(context.Background(), recs, true)
		lc.m.repaired.Add(uint64(changed))
		return lifeReply{Changed: changed, Skipped: skipped}, err
	case opRecords:
		recs, err := s.Records(req.Names)
		return lifeReply{Records: toWire(recs)}, err
	}
	return lifeReply{}, fmt.Errorf("unknown lifecycle operation %q", req.Op)
}

// request sends one lifecycle request to peer's server and decodes the
// reply.
func (lc *lifecycle) request(ctx context.Context, peer string, req lifeRequest) (lifeReply, error) {
	c, _, err := lc.n.peerConn(peer)
	if err != nil {
		return lifeReply{}, err
	}
	req.From = lc.n.cfg.Region
	b, err := json.Marshal(req)
	if err != nil {
		return lifeReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, lifecycleTimeout)
	defer cancel()
	msg, err := c.RequestWithContext(ctx, lifecycleSubject(peer), b)
	if err != nil {
		return lifeReply{}, fmt.Errorf("%s to %s: %w", req.Op, peer, err)
	}
	var rep lifeReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return lifeReply{}, fmt.Errorf("%s to %s: bad reply: %w", req.Op, peer, err)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("%s to %s: %s", req.Op, peer, rep.Error)
	}
	return rep, nil
}

// pullPeers are the regions this region pulls from: the peers it serves
// lifecycle requests to (re-seeding, anti-entropy, gossip).
func (lc *lifecycle) pullPeers() []string {
	var out []string
	for _, e := range lc.n.currentPlan().Inbound(lc.n.cfg.Region) {
		out = append(out, e.From)
	}
	return out
}

// ownReport is this region's report now.
func (lc *lifecycle) ownReport() report {
	return report{Applied: lc.n.store.Applied(), At: lc.n.opts.Clock().UnixMilli()}
}

// mergeTable folds a peer's table into this region's: per region, the
// newer report wins. Regions not in the deployment are ignored.
func (lc *lifecycle) mergeTable(t map[string]report) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for r, rep := range t {
		if _, ok := lc.n.current().cfg.Regions[r]; !ok || r == lc.n.cfg.Region || rep.Applied.Check() != nil {
			continue
		}
		if cur, ok := lc.table[r]; !ok || rep.At > cur.At {
			lc.table[r] = rep
		}
	}
}

// snapshotTable returns the table with this region's own report fresh.
func (lc *lifecycle) snapshotTable() map[string]report {
	own := lc.ownReport()
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.table[lc.n.cfg.Region] = own
	return maps.Clone(lc.table)
}

// gossipLoop exchanges tables with every peer this region pulls from,
// every replication.heartbeat.
func (lc *lifecycle) gossipLoop(ctx context.Context) {
	t := time.NewTicker(lc.n.cfg.Replication.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, peer := range lc.pullPeers() {
			rep, err := lc.request(ctx, peer, lifeRequest{Op: opGossip, Table: lc.snapshotTable()})
			if err != nil {
				lc.log.Debug("gossip", "peer", peer, "err", err)
				continue
			}
			if own, ok := rep.Table[peer]; ok {
				lc.mu.Lock()
				lc.heard[peer] = heardReport{report: own, received: time.Now()}
				lc.mu.Unlock()
			}
			lc.mergeTable(rep.Table)
		}
		lc.stabilityRound()
	}
}

// heardFrom returns peer's own latest report and when it arrived.
func (lc *lifecycle) heardFrom(peer string) (heardReport, bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	h, ok := lc.heard[peer]
	return h, ok
}

// LifecycleStatus is the lifecycle part of StatusReport.
type LifecycleStatus struct {
	// Reseeds shows each inbound link's re-seeding: its state and the
	// latest re-seed.
	Reseeds map[string]ReseedStatus `json:"reseeds"`
	// AntiEntropy shows the comparisons with peers.
	AntiEntropy AntiEntropyStatus `json:"anti_entropy"`
	// Tombstones shows tombstone collection.
	Tombstones TombstoneStatus `json:"tombstones"`
	// Known maps every region to the applied positions this region last
	// heard it report, and when (its clock, Unix ms).
	Known map[string]report `json:"known"`
}

// status reports the lifecycle's state.
func (lc *lifecycle) status() LifecycleStatus {
	st := LifecycleStatus{Reseeds: lc.reseedStatus(), AntiEntropy: lc.aeStatus(), Tombstones: lc.gcStatus()}
	lc.mu.Lock()
	st.Known = maps.Clone(lc.table)
	lc.mu.Unlock()
	return st
}

var errNotReady = errors.New("not ready")
