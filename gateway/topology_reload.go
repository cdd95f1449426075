package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/topology"
	"github.com/geogate/geogate/topology/link"
)

// Adding and removing regions while running. The regions and topology
// sections of a region's config file are reloaded as its rules are
// (WatchRules): when they change, the region checks the new sections
// (the whole config validates with them, this region is still one of the
// regions, the rules compile under the new regions) and then, without a
// restart:
//
//   - starts a link for every new inbound edge of the new plan, stops the
//     links of edges that are gone, and restarts a link whose origins
//     changed (its durable consumer is updated with the new filters);
//   - in log_mode outbox, holds outbox entries for every region that pulls
//     from it (a new region's consumer does not exist yet, so every entry
//     is held for it, up to replication.max_hold) and releases the holds of
//     a region no longer in the plan, whose consumer on this region's
//     stream it deletes;
//   - admits the new plan's users on its embedded NATS server (the nkeys
//     and permissions topology.Plan.Grants derives), refusing removed
//     regions from then on;
//   - recompiles the rules under the new regions, and uses the new regions
//     for tombstone stability, gossip and clock probes.
//
// Anything else that fails the checks keeps the current topology and logs
// why. Settings other than regions, topology and rules still need a
// restart.

// topoState is the regions and plan in effect: the config the region
// started with, or one whose regions and topology a reload replaced.
type topoState struct {
	cfg  *config.Config
	plan *topology.Plan
}

// current returns the regions and plan in effect.
func (n *Node) current() *topoState {
	if t := n.topo.Load(); t != nil {
		return t
	}
	return &topoState{cfg: n.cfg, plan: n.plan}
}

// currentPlan returns the replication plan in effect.
func (n *Node) currentPlan() *topology.Plan { return n.current().plan }

// peerAddr returns where region is reached.
func (n *Node) peerAddr(region string) Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peers[region]
}

// runningLink is a link started by startLink.
type runningLink struct {
	link    *link.Link
	origins []string
	stop    context.CancelFunc
	done    chan struct{}
}

// startLink starts the inbound link from peer with plan's origins, in a
// context of its own (stopLink ends it).
func (n *Node) startLink(ctx context.Context, from string, plan *topology.Plan) error {
	origins := plan.FilterOrigins(n.cfg.Region, from)
	lc := link.LinkConfig{
		Region: n.cfg.Region, Peer: from, URL: n.peerAddr(from).NATS, Origins: origins,
		Applier: applier{n}, Batch: n.cfg.Replication.Batch, AckWait: n.cfg.Replication.AckWait, Logger: n.log.With("link", from),
		Conn: n.natsConn(fmt.Sprintf("geogate link %s<-%s", n.cfg.Region, from), from),
	}
	l, err := link.NewLink(lc)
	if err != nil {
		return fmt.Errorf("link from %s: %w", from, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	rl := &runningLink{link: l, origins: origins, stop: cancel, done: make(chan struct{})}
	n.mu.Lock()
	if ctx.Err() != nil {
		// The duties stopped (stopDuties cancels, then clears the
		// links): a link registered now would be listed forever.
		n.mu.Unlock()
		cancel()
		return nil
	}
	n.links[from] = l
	if n.running == nil {
		n.running = map[string]*runningLink{}
	}
	n.running[from] = rl
	n.mu.Unlock()
	n.spawn(ctx, func() {
		defer close(rl.done)
		if err := l.Run(lctx); err != nil && lctx.Err() == nil {
			n.log.Error("link "+from+" stopped", "err", err)
		}
	})
	return nil
}

// stopLink stops the inbound link from peer and waits for it (nothing it
// delivered is acked unapplied).
func (n *Node) stopLink(from string) {
	n.mu.Lock()
	rl := n.running[from]
	delete(n.running, from)
	delete(n.links, from)
	n.mu.Unlock()
	if rl != nil {
		rl.stop()
		<-rl.done
	}
}

// topologyKeys reports whether any of the changed keys is one a topology
// reload applies.
func topologyKeys(changed []string) bool {
	return slices.ContainsFunc(changed, func(k string) bool {
		return k == "regions" || k == "topology" || strings.HasPrefix(k, "regions.") || strings.HasPrefix(k, "topology.")
	})
}

// reloadTopology reads the regions and topology sections of path and puts
// them in effect (see above). It returns a description of what changed,
// or an error (nothing changed).
func (n *Node) reloadTopology(ctx context.Context, path string) (string, error) {
	n.reloading.Lock()
	defer n.reloading.Unlock()
	fc, err := config.Load(path, os.Environ(), nil)
	if err != nil {
		return "", err
	}
	cur := n.current()
	next := *cur.cfg
	next.Regions = maps.Clone(fc.Regions)
	next.Topology = fc.Topology
	next.SetRegionOrder(fc.Order())
	if next.Region != fc.Region {
		return "", fmt.Errorf("the file configures region %s; this process runs %s", fc.Region, next.Region)
	}
	if err := next.Validate(); err != nil {
		return "", err
	}
	if (n.cfg.Regions[n.cfg.Region].NKey == "") != (next.Regions[next.Region].NKey == "") {
		return "", errors.New("turning NATS credentials (regions.<r>.nkey) on or off needs a restart")
	}
	plan, err := next.Plan()
	if err != nil {
		return "", err
	}
	if !plan.Has(n.cfg.Region) {
		return "", fmt.Errorf("region %s is not in the new regions; stop it instead", n.cfg.Region)
	}
	set, err := rules.Compile(currentSpecs(n.rules()), next.RuleOptions())
	if err != nil {
		return "", fmt.Errorf("the rules in effect do not compile under the new regions: %w", err)
	}
	if n.nats != nil {
		if err := n.nats.SetUsers(natsUsers(&next, plan)); err != nil {
			return "", fmt.Errorf("embedded NATS users: %w", err)
		}
	}
	n.topo.Store(&topoState{cfg: &next, plan: plan})
	n.mu.Lock()
	for r, e := range next.Regions {
		if _, ok := n.peers[r]; !ok || cur.cfg.Regions[r] != e {
			n.peers[r] = Peer{HTTP: e.HTTP, NATS: e.NATS}
			if c := n.peerConns[r]; c != nil {
				c.Close()
				delete(n.peerConns, r)
			}
		}
	}
	for r := range n.peers {
		if _, ok := next.Regions[r]; !ok {
			delete(n.peers, r)
			if c := n.peerConns[r]; c != nil {
				c.Close()
				delete(n.peerConns, r)
			}
		}
	}
	n.mu.Unlock()
	n.setRules(set, n.book.status().Source)

	var did []string
	d := n.duty.Load()
	if d == nil {
		// A follower runs no links and holds nothing for peers: the
		// node that leads applies the new plan, and this one applies it
		// when it comes to lead.
		return plan.Describe() + ": links and outbox holds are the leader's", nil
	}
	ctx = d.ctx // the links run as long as the leader's duties
	// Links.
	want := map[string]bool{}
	for _, e := range plan.Inbound(n.cfg.Region) {
		want[e.From] = true
	}
	n.mu.Lock()
	have := maps.Clone(n.running)
	n.mu.Unlock()
	for from, rl := range have {
		if !want[from] {
			n.stopLink(from)
			did = append(did, "stopped the link from "+from)
		} else if !slices.Equal(rl.origins, plan.FilterOrigins(n.cfg.Region, from)) || cur.cfg.Regions[from] != next.Regions[from] {
			n.stopLink(from)
			if err := n.startLink(ctx, from, plan); err != nil {
				return strings.Join(did, "; "), err
			}
			did = append(did, "restarted the link from "+from)
		}
	}
	for _, e := range plan.Inbound(n.cfg.Region) {
		if _, ok := have[e.From]; !ok {
			if err := n.startLink(ctx, e.From, plan); err != nil {
				return strings.Join(did, "; "), err
			}
			did = append(did, "started a link from "+e.From)
		}
	}
	// Outbox holds.
	var downstream []string
	for _, e := range plan.Outbound(n.cfg.Region) {
		downstream = append(downstream, link.ConsumerName(n.cfg.Region, e.To))
	}
	if p := n.publisher.Load(); p != nil {
		p.SetDownstream(downstream)
	}
	for _, e := range cur.plan.Outbound(n.cfg.Region) {
		if !plan.HasLink(n.cfg.Region, e.To) {
			did = append(did, "released the outbox holds of "+e.To)
			n.deleteConsumer(ctx, link.ConsumerName(n.cfg.Region, e.To))
		}
	}
	for _, e := range plan.Outbound(n.cfg.Region) {
		if !cur.plan.HasLink(n.cfg.Region, e.To) {
			did = append(did, "holding the outbox for "+e.To)
		}
	}
	if len(did) == 0 {
		did = append(did, "no link changed")
	}
	return plan.Describe() + ": " + strings.Join(did, "; "), nil
}

// deleteConsumer removes a durable consumer of this region's stream (a
// region that left the plan); best effort.
func (n *Node) deleteConsumer(ctx context.Context, name string) {
	js, err := jetstream.New(n.conn)
	if err != nil {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(dctx, link.StreamName(n.cfg.Region), name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		n.log.Warn("delete the consumer of a region no longer in the plan", "consumer", name, "err", err)
	}
}

// pruneConsumers deletes the durable consumers of this region's stream
// that belong to regions plan does not send to: those a topology reload
// left behind when it was applied by a node that did not lead (the reload
// deletes them only at the leader) or when its deletion failed. It runs
// when a node comes to lead; best effort, so a failure is logged and the
// next lead tries again. Only link consumers (link.ConsumerName of this
// region) are touched.
func (n *Node) pruneConsumers(ctx context.Context, plan *topology.Plan) {
	js, err := jetstream.New(n.conn)
	if err != nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := js.Stream(lctx, link.StreamName(n.cfg.Region))
	if err != nil {
		if !errors.Is(err, jetstream.ErrStreamNotFound) && ctx.Err() == nil {
			n.log.Warn("list the consumers of this region's stream", "err", err)
		}
		return
	}
	names := st.ConsumerNames(lctx)
	var stale []string
	for name := range names.Name() {
		if to, ok := link.ConsumerTarget(n.cfg.Region, name); ok && !plan.HasLink(n.cfg.Region, to) {
			stale = append(stale, name)
		}
	}
	if err := names.Err(); err != nil && ctx.Err() == nil {
		n.log.Warn("list the consumers of this region's stream", "err", err)
	}
	for _, name := range stale {
		n.log.Info("deleting the consumer of a region no longer in the plan", "consumer", name)
		n.deleteConsumer(ctx, name)
	}
}
