package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/topology/link"
)

// Re-seeding. A link pulls its peer's stream from where its durable
// consumer stands; when the stream no longer holds what this region needs
// (trimmed by replication.stream_max_age, stream_max_bytes or the outbox's
// max_hold while the region was away; a region started on an empty disk
// whose consumer on the peer is ahead of it; a region restored from an
// older backup), the events it waits for never arrive: JetStream delivers
// from the stream's first sequence, and the applier leaves what follows
// the gap waiting for ever, or there is nothing left to deliver at all.
//
// The region notices by comparing the peer's applied positions (which it
// hears every heartbeat, lifecycle.go) with its own: while the peer has
// applied events of the link's origins (or of this region's own earlier
// actors, which no link carries) that this region has not, and this
// region's positions for those actors do not move for
// replication.reseed_after, the events are not coming. The link then shows
// state "reseeding", the region fetches a snapshot of the peer
// (snapshot_transfer.go), merges it (store.MergeSnapshot: a join, so
// nothing this region holds is lost and nothing is duplicated) and raises
// its watermarks to the snapshot's positions; the link then goes on from
// there, events the snapshot reflected being duplicates. A region started
// empty in a running deployment does exactly this. `geogate reseed --from
// PEER` (POST /v1/admin/links/{peer}/reseed) forces it.
//
// In a star or a ring, a relay that re-seeds does not forward the events
// the snapshot covered; the regions downstream of it notice the same way
// and re-seed from it in turn.

// reseedState is one inbound link's re-seeding state (under lifecycle.mu).
type reseedState struct {
	// stuck holds each actor this region is behind the peer on, with its
	// position here and since when that position has not moved; empty
	// when not behind. Each actor is judged on its own, so that progress
	// on one origin of the link cannot hide another that is stuck.
	stuck   map[string]stuckActor
	running bool
	status  ReseedStatus
}

// queuedStuckFactor multiplies replication.reseed_after for a link that
// still has events to deliver when an actor looks stuck.
const queuedStuckFactor = 4

// stuckActor is one actor this region is behind the peer on.
type stuckActor struct {
	at    uint64    // this region's position of the actor
	since time.Time // when at was first seen
}

// track takes the actors this region is behind the peer on, with its
// positions of them, seen at now: an actor whose position did not move
// keeps its time, any other starts at now, and actors no longer behind
// are dropped.
func (st *reseedState) track(behind map[string]uint64, now time.Time) {
	stuck := make(map[string]stuckActor, len(behind))
	for actor, at := range behind {
		if prev, ok := st.stuck[actor]; ok && prev.at == at {
			stuck[actor] = prev
		} else {
			stuck[actor] = stuckActor{at: at, since: now}
		}
	}
	st.stuck = stuck
}

// oldest returns the actor stuck the longest and since when ("" and the
// zero time when none is).
func (st *reseedState) oldest() (actor string, since time.Time) {
	for a, sa := range st.stuck {
		if actor == "" || sa.since.Before(since) || sa.since.Equal(since) && a < actor {
			actor, since = a, sa.since
		}
	}
	return actor, since
}

// ReseedStatus is one link's re-seeding in GET /v1/status (lifecycle).
type ReseedStatus struct {
	// State is "reseeding" while a snapshot is merged, "behind" while the
	// peer has applied events this region waits for without progress,
	// else "ok".
	State string `json:"state"`
	// BehindSeconds is how long it has been behind without progress.
	BehindSeconds float64 `json:"behind_seconds,omitempty"`
	// Reseeds counts the re-seeds from this peer that succeeded.
	Reseeds int `json:"reseeds"`
	// Last describes the latest re-seed.
	Last *ReseedRun `json:"last,omitempty"`
}

// ReseedRun is one re-seed.
type ReseedRun struct {
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"`
	Records int64     `json:"records"`
	Changed int64     `json:"changed"`
	Bytes   int64     `json:"bytes"`
	Seconds float64   `json:"seconds"`
	Error   string    `json:"error,omitempty"`
}

func (lc *lifecycle) reseedOf(peer string) *reseedState {
	st := lc.reseeds[peer]
	if st == nil {
		st = &reseedState{}
		lc.reseeds[peer] = st
	}
	return st
}

// reseedLoop watches every inbound link once a heartbeat and re-seeds the
// ones that need it, one at a time; a forced re-seed (lc.kick) runs at
// once.
func (lc *lifecycle) reseedLoop(ctx context.Context) {
	t := time.NewTicker(lc.n.cfg.Replication.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case peer := <-lc.kick:
			lc.reseed(ctx, peer, "forced by an operator")
		case <-t.C:
			for _, peer := range lc.pullPeers() {
				if reason := lc.needsReseed(peer, time.Now()); reason != "" {
					lc.reseed(ctx, peer, reason)
				}
			}
		}
	}
}

// needsReseed decides whether the link from peer waits for events its
// peer's stream no longer holds, and says why ("" when not).
func (lc *lifecycle) needsReseed(peer string, now time.Time) string {
	l := lc.n.link(peer)
	h, heard := lc.heardFrom(peer)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	st := lc.reseedOf(peer)
	if l == nil || st.running {
		return ""
	}
	state := l.Status().State
	fresh := heard && now.Sub(h.received) < 3*lc.n.cfg.Replication.Heartbeat+lifecycleTimeout
	if (state != link.StateUp && state != link.StateReseeding) || !fresh {
		st.stuck = nil
		return ""
	}
	st.track(lc.behind(peer, h.Applied), now)
	// An actor that does not move while the link's consumer still has
	// events to deliver may only be queued behind other origins' events
	// (a large backlog): it must then stay stuck for longer. Events held
	// back behind a gap are delivered already and do not count.
	actor, since := st.oldest()
	wait := lc.n.cfg.Replication.ReseedAfter
	if l.Undelivered() > 0 {
		wait *= queuedStuckFactor
	}
	if actor == "" || now.Sub(since) < wait {
		return ""
	}
	return fmt.Sprintf("%s has applied %s up to %d, this region only up to %d, with no progress for %s: its stream no longer holds those events",
		peer, actor, h.Applied[actor], st.stuck[actor].at, now.Sub(since).Round(time.Second))
}

// behind returns the actors of which the peer has applied more than this
// region, among those the link from peer carries (their region is one of
// the link's origins) and this region's own earlier actors (which no link
// carries), each with this region's position of it.
func (lc *lifecycle) behind(peer string, peerApplied conflict.VV) map[string]uint64 {
	origins := lc.n.currentPlan().FilterOrigins(lc.n.cfg.Region, peer)
	local := lc.n.store.Applied()
	own := lc.n.store.Actor()
	out := map[string]uint64{}
	for _, actor := range peerApplied.Actors() {
		region := conflict.RegionOf(actor)
		if actor == own || (region != lc.n.cfg.Region && !slices.Contains(origins, region)) {
			continue
		}
		if peerApplied[actor] > local[actor] {
			out[actor] = local[actor]
		}
	}
	return out
}

// errReseedRunning is returned for a forced re-seed while one runs.
var errReseedRunning = errors.New("a re-seed from this peer is running")

// forceReseed queues a re-seed from peer.
func (lc *lifecycle) forceReseed(peer string) error {
	lc.mu.Lock()
	running := lc.reseedOf(peer).running
	lc.mu.Unlock()
	if running {
		return errReseedRunning
	}
	select {
	case lc.kick <- peer:
		return nil
	default:
		return errors.New("too many re-seeds queued; retry")
	}
}

// reseed fetches a snapshot of peer and merges it, showing the link as
// "reseeding" meanwhile.
func (lc *lifecycle) reseed(ctx context.Context, peer, reason string) {
	l := lc.n.link(peer)
	if l == nil {
		return
	}
	lc.reseedMu.Lock()
	defer lc.reseedMu.Unlock()
	lc.mu.Lock()
	st := lc.reseedOf(peer)
	st.running = true
	lc.mu.Unlock()
	l.SetReseeding(true)
	if f := lc.reseedBegun.Load(); f != nil {
		(*f)(peer)
	}
	lc.log.Warn("re-seeding from a snapshot of the peer", "peer", peer, "reason", reason)
	start := time.Now()
	run := ReseedRun{At: start, Reason: reason}
	err := func() error {
		rc, err := lc.fetchSnapshot(ctx, peer)
		if err != nil {
			return err
		}
		defer rc.Close()
		info, err := lc.n.store.MergeSnapshot(ctx, rc, nil)
		run.Records, run.Changed, run.Bytes = info.Records, info.Records-info.Unchanged, info.Bytes
		return err
	}()
	run.Seconds = time.Since(start).Seconds()
	l.SetReseeding(false)
	result := "ok"
	if err != nil {
		run.Error = err.Error()
		result = "error"
		lc.log.Error("re-seed failed; it is tried again if the link still needs it", "peer", peer, "err", err)
	} else {
		lc.log.Info("re-seeded from a snapshot of the peer", "peer", peer, "records", run.Records, "changed", run.Changed,
			"bytes", run.Bytes, "took", time.Since(start).Round(time.Millisecond))
	}
	lc.m.reseeds.WithLabelValues(peer, result).Inc()
	lc.mu.Lock()
	st.running = false
	st.stuck = nil
	st.status.Last = &run
	if err == nil {
		st.status.Reseeds++
	}
	lc.mu.Unlock()
}

// reseedStatus reports every inbound link's re-seeding.
func (lc *lifecycle) reseedStatus() map[string]ReseedStatus {
	now := time.Now()
	out := map[string]ReseedStatus{}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, peer := range lc.pullPeers() {
		st := lc.reseedOf(peer)
		rs := st.status
		switch {
		case st.running:
			rs.State = link.StateReseeding
		case len(st.stuck) > 0:
			_, since := st.oldest()
			rs.State = "behind"
			rs.BehindSeconds = now.Sub(since).Seconds()
		default:
			rs.State = "ok"
		}
		if rs.Last != nil {
			last := *rs.Last
			rs.Last = &last
		}
		out[peer] = rs
	}
	return out
}
