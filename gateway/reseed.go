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
	// behindSince is when this region was last seen behind the peer with
	// the behind actors' positions at progress; zero when not behind.
	behindSince time.Time
	progress    uint64
	running     bool
	status      ReseedStatus
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
		st.behindSince = time.Time{}
		return ""
	}
	behind, progress, first := lc.behind(peer, h.Applied)
	if len(behind) == 0 {
		st.behindSince = time.Time{}
		return ""
	}
	if st.behindSince.IsZero() || progress != st.progress {
		st.behindSince, st.progress = now, progress
		return ""
	}
	if now.Sub(st.behindSince) < lc.n.cfg.Replication.ReseedAfter {
		return ""
	}
	return fmt.Sprintf("%s has applied %s up to %d, this region only up to %d, with no progress for %s: its stream no longer holds those events",
		peer, first, h.Applied[first], lc.n.store.Applied()[first], now.Sub(st.behindSince).Round(time.Second))
}

// behind returns the actors of which the peer has applied more than this
// region, among those the link from peer carries (their region is one of
// the link's origins) and this region's own earlier actors (which no link
// carries); progress is the sum of this region's positions of those actors.
func (lc *lifecycle) behind(peer string, peerApplied conflict.VV) (actors []string, progress uint64, first string) {
	origins := lc.n.currentPlan().FilterOrigins(lc.n.cfg.Region, peer)
	local := lc.n.store.Applied()
	own := lc.n.store.Actor()
	for _, actor := range peerApplied.Actors() {
		region := conflict.RegionOf(actor)
		if actor == own || (region != lc.n.cfg.Region && !slices.Contains(origins, region)) {
			continue
		}
		if peerApplied[actor] > local[actor] {
			actors = append(actors, actor)
			progress += local[actor]
		}
	}
	if len(actors) > 0 {
		first = actors[0]
	}
	return actors, progress, first
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
	st.behindSince = time.Time{}
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
		case !st.behindSince.IsZero():
			rs.State = "behind"
			rs.BehindSeconds = now.Sub(st.behindSince).Seconds()
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
