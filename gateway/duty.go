package gateway

import (
	"context"
	"sync"
)

// duties are what a node does only while it leads its region (all the
// time in a region of one node): the outbox publisher and the inbound
// links, serving writes forwarded by other regions, the region lifecycle
// (gossip, re-seeding, anti-entropy, tombstone collection, snapshots for
// peers) and the resolver's merges. They run in a context of their own;
// stopDuties ends them and waits until every goroutine they started has
// returned, so that a deposed leader applies, publishes and acks nothing
// more.
type duties struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	stopped bool // stopDuties began: spawn adds nothing to wg
}

// dutyKey marks the context of a run of duties.
type dutyKey struct{}

// spawn runs f in a goroutine the node waits for at Close and, when ctx is
// (derived from) the context of a run of duties, that run waits for too.
func (n *Node) spawn(ctx context.Context, f func()) {
	n.wg.Add(1)
	d, _ := ctx.Value(dutyKey{}).(*duties)
	if d != nil && !d.add() {
		d = nil // its context is cancelled: f returns soon, unwaited
	}
	go func() {
		defer n.wg.Done()
		if d != nil {
			defer d.wg.Done()
		}
		f()
	}()
}

// add counts a goroutine stopDuties waits for, unless stopDuties began
// (a goroutine spawned as the duties stop, e.g. a topology reload racing
// a step-down): then it reports false, so that no Add races the Wait.
func (d *duties) add() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return false
	}
	d.wg.Add(1)
	return true
}

// startDuties starts the leader's duties under parent. On error, what
// started is stopped.
func (n *Node) startDuties(parent context.Context) (*duties, error) {
	d := &duties{}
	ctx, cancel := context.WithCancel(parent)
	d.ctx, d.cancel = context.WithValue(ctx, dutyKey{}, d), cancel
	n.duty.Store(d)
	err := n.startReplication(d.ctx)
	if err == nil {
		err = n.serveForwards(d.ctx)
	}
	if err == nil {
		err = n.life.start(d.ctx)
	}
	if err != nil {
		n.stopDuties(d)
		return nil, err
	}
	n.spawn(d.ctx, func() { n.runMerges(d.ctx) })
	return d, nil
}

// stopDuties ends a run of duties and waits for all of it: the links stop
// (nothing they delivered is acked unapplied), the publisher stops, the
// subscriptions are gone.
func (n *Node) stopDuties(d *duties) {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	n.duty.CompareAndSwap(d, nil)
	n.publisher.Store(nil)
	n.mu.Lock()
	clear(n.links)
	clear(n.running)
	n.mu.Unlock()
}

// leading reports whether the node runs its region's duties now.
func (n *Node) leading() bool { return n.duty.Load() != nil }
