package gateway

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology/link"
)

// startNATS starts the embedded server (or settles on the external URL) and
// connects this region's own client.
func (n *Node) startNATS() error {
	n.natsURL = n.cfg.NATS.URL
	if n.cfg.NATS.Embedded {
		host, portS, err := net.SplitHostPort(n.cfg.NATS.Listen)
		if err != nil {
			return fmt.Errorf("nats.listen %q: %w", n.cfg.NATS.Listen, err)
		}
		port, err := strconv.Atoi(portS)
		if err != nil {
			return fmt.Errorf("nats.listen %q: bad port", n.cfg.NATS.Listen)
		}
		if port == 0 {
			port = -1 // NATS: pick a free port
		}
		var cluster *link.ClusterOptions
		if n.cfg.Clustered() {
			cluster = n.clusterOptions() // regionnode.go
		}
		n.nats, err = link.StartServer(n.natsServerOptions(link.ServerOptions{
			Name: "geogate-" + n.cfg.Node, Host: host, Port: port, StoreDir: n.cfg.NATS.StoreDir, Cluster: cluster,
			SyncAlways: n.cfg.NATS.Sync == config.NATSSyncAlways, SyncInterval: n.cfg.NATS.SyncInterval(),
			MaxPayload: int32(n.cfg.HTTP.MaxValueBytes + config.EventReserve),
			Logger:     n.log.With("component", "nats"),
		}))
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		n.natsURL = n.nats.ClientURL()
	}
	own := n.natsConn("geogate-"+n.cfg.Region, "")
	own.Background = true
	conn, err := link.Connect(n.ownNATSURL(), own)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	n.conn = conn
	return n.checkPayload()
}

// checkPayload refuses a NATS server whose max_payload cannot carry the
// largest event this region accepts: a document of http.max_value_bytes
// plus config.EventReserve (the embedded server is configured so; an
// external one may not be). Every value the API accepts can then be
// replicated.
func (n *Node) checkPayload() error {
	if err := wait.Until(context.Background(), 10*time.Second, "the connection", n.conn.IsConnected); err != nil {
		return fmt.Errorf("connect nats %s: not connected after 10s", n.natsURL)
	}
	have := n.conn.MaxPayload()
	want := int64(n.cfg.HTTP.MaxValueBytes + config.EventReserve)
	if have < want {
		return fmt.Errorf("http.max_value_bytes (%d) plus the %d bytes a replicated event needs besides its document do not fit the NATS server's max_payload (%d) at %s: lower http.max_value_bytes to at most %d, or raise max_payload on the server",
			n.cfg.HTTP.MaxValueBytes, config.EventReserve, have, n.natsURL, have-int64(config.EventReserve))
	}
	return nil
}

// startReplication launches the publisher and one link per inbound edge of
// the plan. The store wakes the publisher after each commit that added
// outbox entries (notifyPublisher).
func (n *Node) startReplication(ctx context.Context) error {
	mode, err := link.ParseMode(n.cfg.Replication.LogMode)
	if err != nil {
		return fmt.Errorf("replication.log_mode: %w", err)
	}
	// Outbox mode keeps an entry until the consumer of every region that
	// pulls from this region's stream has finished it, by the plan in
	// effect: a follower takes topology reloads too, and applies them
	// here when it comes to lead.
	plan := n.currentPlan()
	var downstream []string
	for _, e := range plan.Outbound(n.cfg.Region) {
		downstream = append(downstream, link.ConsumerName(n.cfg.Region, e.To))
	}
	pub, err := link.NewPublisher(link.PublisherConfig{
		Region: n.cfg.Region, Conn: n.conn, Outbox: outbox{n.store},
		Mode: mode, Downstream: downstream, MaxHold: n.cfg.Replication.MaxHold,
		MaxAge: n.cfg.Replication.StreamMaxAge, MaxBytes: int64(n.cfg.Replication.StreamMaxBytes),
		Heartbeat: n.cfg.Replication.Heartbeat, Clock: n.opts.Clock, Replicas: n.cfg.NATS.Replicas,
		Logger: n.log.With("component", "publisher"),
	})
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	n.publisher.Store(pub)
	n.spawn(ctx, func() {
		if err := pub.Run(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("publisher stopped", "err", err)
		}
	})
	for _, edge := range plan.Inbound(n.cfg.Region) {
		if err := n.startLink(ctx, edge.From, plan); err != nil { // topology_reload.go
			return err
		}
	}
	// Consumers of regions the plan no longer sends to, left by reloads
	// this node took while it did not lead.
	n.spawn(ctx, func() { n.pruneConsumers(ctx, plan) })
	return nil
}

// notifyPublisher tells the publisher, once there is one, that outbox
// entries were committed: the store's OnOutbox, called on its writer, so
// it only signals (link.Publisher.Notify never blocks).
func (n *Node) notifyPublisher() {
	if p := n.publisher.Load(); p != nil {
		p.Notify()
	}
}

func (n *Node) link(peer string) *link.Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[peer]
}

func (n *Node) linkStatuses() []link.LinkStatus {
	out := []link.LinkStatus{}
	for _, edge := range n.currentPlan().Inbound(n.cfg.Region) {
		if l := n.link(edge.From); l != nil {
			out = append(out, l.Status())
		}
	}
	return out
}

// StatusReport is the body of GET /v1/status.
type StatusReport struct {
	Region   string      `json:"region"`
	Actor    string      `json:"actor"`
	Topology string      `json:"topology"`
	Seq      uint64      `json:"seq"`
	Applied  conflict.VV `json:"applied"`
	// Outbox counts the outbox entries not yet trimmed; of those,
	// Unpublished are not yet stored in this region's stream (the rest are,
	// in log_mode outbox, held until every downstream region applied them).
	Outbox      uint64            `json:"outbox_pending"`
	Unpublished uint64            `json:"outbox_unpublished"`
	LogMode     string            `json:"log_mode"`
	Links       []link.LinkStatus `json:"links"`
	// Rules is the rule set in effect (rulebook.go).
	Rules RulesStatus `json:"rules"`
	// Storage is the health of the region's disk: ok, low_space (writes
	// refused, reads served) or failed (everything refused until restart).
	Storage store.StorageStatus `json:"storage"`
	// Publisher is the state of this region's publisher.
	Publisher PublisherStatus `json:"publisher"`
	// Clock is this region's clock measured against its peers'.
	Clock ClockStatus `json:"clock"`
	// Lifecycle shows re-seeding, anti-entropy and tombstone collection
	// (lifecycle.go).
	Lifecycle LifecycleStatus `json:"lifecycle"`
	// NodeStatus is this node's part in its region (regionnode.go).
	NodeStatus
}

// PublisherStatus is the publisher part of StatusReport.
type PublisherStatus struct {
	// State is "ok", or "stalled" when publishing to the region's stream
	// keeps failing (Reason is the last error, Since when it began); the
	// peers then see their lag grow.
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitempty"`
	// BehindSeconds is how long the oldest entry read from the outbox and
	// not yet acknowledged by the stream has waited.
	BehindSeconds float64 `json:"behind_seconds"`
}

// Status reports the region's replication state.
func (n *Node) Status() StatusReport {
	return StatusReport{
		Region: n.cfg.Region, Actor: n.store.Actor(), Topology: n.currentPlan().Describe(), Seq: n.store.Seq(),
		Applied: n.store.Applied(), Outbox: n.store.OutboxLen(), Unpublished: n.Unpublished(),
		LogMode: n.cfg.Replication.LogMode, Links: n.linkStatuses(), Rules: n.book.status(),
		Storage: n.store.Storage(), Publisher: n.publisherStatus(), Clock: n.clockStatus(),
		Lifecycle: n.life.status(), NodeStatus: n.nodeStatus(),
	}
}

// publisherStatus reports the publisher's state (ok before it exists).
func (n *Node) publisherStatus() PublisherStatus {
	p := n.publisher.Load()
	if p == nil {
		return PublisherStatus{State: link.PublisherOK}
	}
	st := p.Stats()
	return PublisherStatus{State: st.State, Reason: st.Reason, Since: st.Since, BehindSeconds: st.Behind.Seconds()}
}

// Unpublished returns how many committed outbox entries the stream has not
// acknowledged yet.
func (n *Node) Unpublished() uint64 {
	p := n.publisher.Load()
	if p == nil {
		if n.cfg.Clustered() && !n.leading() {
			return 0 // the leader publishes; it reports its own
		}
		return n.store.OutboxHead()
	}
	committed, acked := n.store.OutboxHead(), p.Stats().Acked
	if acked >= committed {
		return 0
	}
	return committed - acked
}

// outbox adapts the store's outbox to the publisher.
type outbox struct{ s *store.Store }

func (o outbox) ReadOutbox(after uint64, max int) ([]link.OutboxEntry, error) {
	entries, err := o.s.ReadOutbox(after, max)
	if err != nil {
		return nil, err
	}
	out := make([]link.OutboxEntry, len(entries))
	for i, e := range entries {
		out[i] = link.OutboxEntry{Seq: e.Seq, Origin: e.Origin, OriginRegion: conflict.RegionOf(e.Origin), OSeq: e.OSeq, Path: e.Path, Data: e.Data}
	}
	return out, nil
}

func (o outbox) TrimOutbox(upTo uint64) error { return o.s.TrimOutbox(upTo) }

// applier applies a link's batches to the store, forwarding where the plan
// says this region relays the origin's events.
type applier struct{ n *Node }

func (a applier) Apply(ctx context.Context, from string, msgs []link.Message) ([]link.Result, error) {
	n := a.n
	results := make([]link.Result, len(msgs))
	batch := make([]store.Incoming, 0, len(msgs))
	index := make([]int, 0, len(msgs))
	for i, m := range msgs {
		ev, err := store.DecodeEvent(m.Data)
		switch {
		case err != nil:
		case ev.Origin() != m.Origin || ev.OSeq != m.OSeq:
			err = fmt.Errorf("event %s:%d arrived as message %s", ev.Origin(), ev.OSeq, link.MsgID(m.Origin, m.OSeq))
		}
		if err != nil {
			// Never acked, never skipped: the link retries it, then
			// stalls on it and says so.
			results[i] = link.Result{Verdict: link.Rejected, Reason: err}
			continue
		}
		batch = append(batch, store.Incoming{
			Event: ev, Raw: m.Data, Path: m.Path,
			Forward: n.currentPlan().Forwards(n.cfg.Region, from, conflict.RegionOf(ev.Origin())),
		})
		index = append(index, i)
	}
	res, err := n.store.Apply(ctx, batch)
	for j, r := range res {
		if r.Done {
			results[index[j]] = link.Result{Verdict: link.Applied}
		}
	}
	if err != nil {
		return results, fmt.Errorf("apply from %s: %w", from, err)
	}
	n.afterApply(batch, res)
	return results, nil
}

// PauseLink pauses the inbound link from peer (as the admin API does) and
// returns once the link stopped applying (link.Link.Pause), or after
// pauseWait with a warning logged; it reports whether such a link exists.
func (n *Node) PauseLink(peer string) bool {
	l := n.link(peer)
	if l != nil {
		if err := pauseLink(context.Background(), l); err != nil {
			n.log.Warn("pause link", "from", peer, "err", err)
		}
	}
	return l != nil
}

// pauseWait bounds how long a pause waits for an apply under way.
const pauseWait = 10 * time.Second

// pauseLink pauses l and waits, up to pauseWait, until it stopped applying
// (link.Link.Pause); the link stays paused either way.
func pauseLink(ctx context.Context, l *link.Link) error {
	ctx, cancel := context.WithTimeout(ctx, pauseWait)
	defer cancel()
	return l.Pause(ctx)
}

// ResumeLink resumes the inbound link from peer; it reports whether such a
// link exists.
func (n *Node) ResumeLink(peer string) bool {
	l := n.link(peer)
	if l != nil {
		l.Resume()
	}
	return l != nil
}
