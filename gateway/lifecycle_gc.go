package gateway

import (
	"context"
	"time"

	"github.com/geogate/geogate/conflict"
)

// Tombstone collection. A delete leaves a tombstone so that it replicates
// and supersedes the value everywhere; once every region has applied it
// and nothing concurrent with it can still arrive (conflict.Stability,
// from the positions every region reports and this region hears by gossip,
// lifecycle.go), and it is older than tombstones.grace, the record is
// removed: ?meta=true then answers 404. A late or duplicate copy of any of
// its events is dropped by its origin's watermark, and a merge of a peer's
// copy not collected yet is filtered by the same bound
// (store.SetCollectionBound), so the deleted value never comes back.

// gcState is tombstone collection's state (under lifecycle.mu).
type gcState struct {
	stab      conflict.Stability // owned by the gossip loop
	safe      conflict.VV
	held      int
	collected int
	lastScan  time.Time
	lastErr   string
	scans     int
	// missing lists the regions no report has been heard from yet
	// (nothing is stable until every region has reported).
	missing []string
}

// TombstoneStatus is the tombstone part of the lifecycle status.
type TombstoneStatus struct {
	GraceSeconds float64 `json:"grace_seconds"`
	// Held counts tombstones stored at the last scan.
	Held int `json:"held"`
	// Collected counts records collected since start.
	Collected int `json:"collected"`
	// Stable is the causally stable vector: every dot it covers every
	// region has applied, with nothing concurrent still on its way.
	Stable   conflict.VV `json:"stable"`
	LastScan *time.Time  `json:"last_scan,omitempty"`
	Error    string      `json:"error,omitempty"`
	// Waiting lists the regions whose positions this region has not heard
	// yet.
	Waiting []string `json:"waiting,omitempty"`
}

// stabilityRound takes one round of every region's reports (the gossip
// loop calls it each heartbeat) and sets the collection bound merges are
// filtered by.
func (lc *lifecycle) stabilityRound() {
	table := lc.snapshotTable()
	reports := make([]conflict.VV, 0, len(lc.n.current().cfg.Regions))
	var missing []string
	for _, r := range lc.n.current().cfg.Order() {
		rep, ok := table[r]
		if !ok {
			missing = append(missing, r)
		}
		reports = append(reports, rep.Applied) // nil for a silent region: nothing is stable
	}
	lc.mu.Lock()
	safe := lc.gc.stab.Round(reports)
	lc.gc.safe, lc.gc.missing = safe, missing
	lc.mu.Unlock()
	lc.n.store.SetCollectionBound(safe, lc.cutoff())
}

// cutoff is the HLC wall time before which a tombstone is old enough.
func (lc *lifecycle) cutoff() int64 {
	return lc.n.opts.Clock().UnixMilli() - lc.n.cfg.Tombstones.Grace.Milliseconds()
}

// gcLoop scans for collectable records every tombstones.interval.
func (lc *lifecycle) gcLoop(ctx context.Context) {
	t := time.NewTicker(lc.n.cfg.Tombstones.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lc.mu.Lock()
		safe := lc.gc.safe.Clone()
		lc.mu.Unlock()
		scan, err := lc.n.store.CollectTombstones(ctx, safe, lc.cutoff())
		lc.mu.Lock()
		lc.gc.scans++
		lc.gc.lastScan = time.Now()
		lc.gc.held = scan.Held
		lc.gc.collected += scan.Collected
		lc.gc.lastErr = ""
		if err != nil {
			lc.gc.lastErr = err.Error()
		}
		lc.mu.Unlock()
		lc.m.tombstonesHeld.Set(float64(scan.Held))
		if err != nil && ctx.Err() == nil {
			lc.log.Error("tombstone collection", "err", err)
		} else if scan.Collected > 0 {
			lc.log.Info("tombstones collected", "records", scan.Collected, "held", scan.Held)
		}
	}
}

func (lc *lifecycle) gcStatus() TombstoneStatus {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	st := TombstoneStatus{GraceSeconds: lc.n.cfg.Tombstones.Grace.Seconds(), Held: lc.gc.held, Collected: lc.gc.collected,
		Stable: lc.gc.safe.Clone(), Error: lc.gc.lastErr, Waiting: lc.gc.missing}
	if !lc.gc.lastScan.IsZero() {
		t := lc.gc.lastScan
		st.LastScan = &t
	}
	return st
}

// scrubLoop rebuilds the digest tree from the data every
// anti_entropy.scrub_interval (store.Scrub), finding records changed behind
// the store's back.
func (lc *lifecycle) scrubLoop(ctx context.Context) {
	every := lc.n.cfg.AntiEntropy.ScrubInterval
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := lc.n.store.Scrub()
		if err != nil {
			if ctx.Err() == nil {
				lc.log.Error("scrub", "err", err)
			}
			continue
		}
		lc.log.Debug("scrub", "records", res.Records, "moved", res.Moved, "corrupt", len(res.Corrupt), "took", res.Took)
	}
}
