package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"unicode/utf8"

	"github.com/geogate/geogate/conflict"
)

// KeyRecord is one key's record, as a snapshot or a repair carries it.
type KeyRecord struct {
	Key    string
	Record conflict.Record
}

// size estimates the bytes a merged record adds to a transaction.
func (kr KeyRecord) size() int {
	n := 2*len(kr.Key) + 64 + 16*len(kr.Record.Seen)
	for _, v := range kr.Record.Versions {
		n += 2*min(len(v.Value), valueThreshold) + len(v.Dot.Actor) + len(v.Origin) + 32
	}
	return n
}

// lifecycleRequest is one writer request of the region lifecycle: records
// to merge, records to collect, and watermarks to raise, in that order.
type lifecycleRequest struct {
	merge []KeyRecord
	// onlyApplied merges a record only when this region has applied every
	// event it reflects (a repair; see MergeRecords).
	onlyApplied bool
	collect     []string
	bound       collectionBound
	raise       conflict.VV
}

func (r *lifecycleRequest) size() int {
	n := 64 * (len(r.collect) + len(r.raise))
	for _, kr := range r.merge {
		n += kr.size()
	}
	return n
}

// lifecycleResult counts what a lifecycleRequest did.
type lifecycleResult struct {
	// Changed counts merged records that changed this region's record.
	Changed int
	// Skipped counts records a repair left alone (not yet applied here).
	Skipped int
	// Collected counts records removed by collection.
	Collected int
}

// collectionBound is what tombstone collection may remove: records every
// version of which is a tombstone older than Cutoff (HLC wall, Unix ms)
// and whose context Safe covers (conflict.Collectable).
type collectionBound struct {
	Safe   conflict.VV
	Cutoff int64
}

// lifecycleCounters are cumulative since Open.
type lifecycleCounters struct {
	merged, collected atomic.Uint64
}

// SetCollectionBound sets the bound merged records are filtered by: a
// record a merge would leave collectable under it is removed (or never
// written) rather than kept, so that a repair from a region that has not
// collected it yet does not bring back a tombstone this region collected.
// CollectTombstones sets it too.
func (s *Store) SetCollectionBound(safe conflict.VV, cutoff int64) {
	s.collection.Store(&collectionBound{Safe: safe.Clone(), Cutoff: cutoff})
}

// MergeRecords merges each record into this region's record of its key
// (conflict.Record.Merge: a join, which adds what the peer has and never
// removes what only this region has), durably, in batches, and returns how
// many records changed. A record collectable under the collection bound is
// removed instead of kept. Records are checked first (CheckRecord); one a
// correct region cannot hold fails the whole call before anything is
// written.
//
// With onlyApplied, a record is merged only when this region has applied
// every event it reflects (its context is within this region's watermarks);
// others are skipped and counted. That is how anti-entropy repairs: a
// difference within what both regions applied is damage, one beyond it is
// an event still on its way, which the link delivers.
func (s *Store) MergeRecords(ctx context.Context, recs []KeyRecord, onlyApplied bool) (changed, skipped int, err error) {
	for _, kr := range recs {
		if err := s.CheckRecord(kr.Key, kr.Record); err != nil {
			return 0, 0, err
		}
	}
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && (n == 0 || size < s.batchBytes/2) {
			size += recs[n].size()
			n++
		}
		res, err := s.submitLifecycle(ctx, &lifecycleRequest{merge: recs[:n], onlyApplied: onlyApplied})
		changed += res.Changed
		skipped += res.Skipped
		if err != nil {
			return changed, skipped, err
		}
		recs = recs[n:]
	}
	return changed, skipped, nil
}

// RaiseWatermarks raises this region's applied watermark of each actor to
// its position, durably; a watermark already higher stays. It is the last
// step of merging a snapshot: every event at or below the positions is
// then a duplicate. Positions naming this region's own actor are ignored
// when within its log and refused beyond it (its dots would be reused).
func (s *Store) RaiseWatermarks(ctx context.Context, positions conflict.VV) error {
	if err := positions.Check(); err != nil {
		return fmt.Errorf("raise watermarks: %w", err)
	}
	if own := s.Actor(); positions[own] > s.Seq() {
		return fmt.Errorf("raise watermarks: the positions name %s:%d, beyond this region's own log (%d): they come from another store of this actor", own, positions[own], s.Seq())
	}
	_, err := s.submitLifecycle(ctx, &lifecycleRequest{raise: positions})
	return err
}

// CollectKeys removes the records of keys that are collectable under
// (safe, cutoff) when the writer reads them (conflict.Collectable), and
// returns how many it removed.
func (s *Store) CollectKeys(ctx context.Context, keys []string, safe conflict.VV, cutoff int64) (int, error) {
	total := 0
	for len(keys) > 0 {
		n := min(len(keys), s.opts.MaxBatch)
		res, err := s.submitLifecycle(ctx, &lifecycleRequest{collect: keys[:n], bound: collectionBound{Safe: safe, Cutoff: cutoff}})
		total += res.Collected
		if err != nil {
			return total, err
		}
		keys = keys[n:]
	}
	return total, nil
}

func (s *Store) submitLifecycle(ctx context.Context, lr *lifecycleRequest) (lifecycleResult, error) {
	r := requestPool.Get().(*request)
	r.lifecycle = lr
	resp, err := s.submit(ctx, r)
	s.lifeStats.merged.Add(uint64(resp.lifecycle.Changed))
	s.lifeStats.collected.Add(uint64(resp.lifecycle.Collected))
	return resp.lifecycle, err
}

// doLifecycle runs one lifecycle request inside the writer's transaction.
func (s *Store) doLifecycle(st *batchState, lr *lifecycleRequest, stats *Stats) (lifecycleResult, error) {
	var res lifecycleResult
	bound := s.collection.Load()
	for _, kr := range lr.merge {
		if lr.onlyApplied && !s.appliedCovers(kr.Record.Context()) {
			res.Skipped++
			continue
		}
		before, err := s.record(st, kr.Key)
		if err != nil && !errors.Is(err, ErrChecksum) {
			return res, err
		}
		after := before.Merge(kr.Record)
		if bound != nil && conflict.Collectable(after, bound.Safe, bound.Cutoff) {
			after = conflict.Record{}
		}
		if len(after.Versions) == 0 && len(before.Versions) == 0 && !st.tree.isCorrupt(kr.Key) {
			continue // nothing here, nothing to keep
		}
		if after.Equal(before) && !st.tree.isCorrupt(kr.Key) {
			continue
		}
		st.records[kr.Key], st.dirty[kr.Key] = after, true
		res.Changed++
		// Every version the merge brought is a change a watcher sees,
		// and a new sibling is a conflict the rules judge, as if the
		// events that made them had been applied.
		added := false
		for _, v := range after.Versions {
			if !slices.ContainsFunc(before.Versions, func(b conflict.Version) bool { return b.Dot == v.Dot }) {
				s.logChange(st, kr.Key, v.Dot.Actor, v.Dot.Counter)
				added = true
			}
		}
		if added && len(after.Versions) > 1 {
			if err := s.observe(st, Change{Key: kr.Key, Before: before, After: after, Outcome: conflict.Outcome{Added: true}}); err != nil {
				return res, err
			}
		}
	}
	for _, key := range lr.collect {
		rec, err := s.record(st, key)
		if err != nil {
			if errors.Is(err, ErrChecksum) {
				continue // repaired first, collected later
			}
			return res, err
		}
		if conflict.Collectable(rec, lr.bound.Safe, lr.bound.Cutoff) {
			st.records[key], st.dirty[key] = conflict.Record{}, true
			res.Collected++
		}
	}
	for actor, p := range lr.raise {
		if actor == s.actor || p <= s.wm[actor] {
			continue
		}
		if _, ok := st.wmOld[actor]; !ok {
			st.wmOld[actor] = s.wm[actor]
		}
		s.wm[actor] = p
	}
	return res, nil
}

// appliedCovers reports whether this region has applied every dot of v:
// its watermarks (its own log for its own actor) cover v. The writer's.
func (s *Store) appliedCovers(v conflict.VV) bool {
	for actor, c := range v {
		have := s.wm[actor]
		if actor == s.actor {
			have = s.oseq
		}
		if c > have {
			return false
		}
	}
	return true
}

// CheckRecord returns an error when rec is not a record a correct region
// holds for key: a key that is empty or not UTF-8, no versions,
// a version with an empty actor, a counter out of range, an origin that is
// not its actor's region, a tombstone with a value or a value that is not
// one JSON document in the store's form, or versions out of dot order or
// superseded by the record's own Seen, or a version of this region's own
// actor beyond its log. Records from peers (snapshots,
// repairs) pass it before they are merged. Keys are checked as events'
// are (DecodeEvent): the API checked them where they entered.
func (s *Store) CheckRecord(key string, rec conflict.Record) error {
	return checkRecord(key, rec, s.Actor(), s.Seq())
}

// checkRecord is CheckRecord for a region whose actor is own (empty: no
// own-actor check) at own log position ownSeq.
func checkRecord(key string, rec conflict.Record, own string, ownSeq uint64) error {
	if key == "" || !utf8.ValidString(key) {
		return fmt.Errorf("record %q: %w: the key is empty or not UTF-8", key, ErrMalformed)
	}
	if len(rec.Versions) == 0 {
		return fmt.Errorf("record %q: %w: no versions", key, ErrMalformed)
	}
	if err := rec.Seen.Check(); err != nil {
		return fmt.Errorf("record %q: %w: seen: %v", key, ErrMalformed, err)
	}
	for i, v := range rec.Versions {
		d := v.Dot
		switch {
		case d.Actor == "" || d.Counter == 0 || d.Counter > conflict.MaxCounter:
			return fmt.Errorf("record %q: %w: version %s: bad dot", key, ErrMalformed, d)
		case v.Origin != conflict.RegionOf(d.Actor):
			return fmt.Errorf("record %q: %w: version %s: origin %q is not its actor's region", key, ErrMalformed, d, v.Origin)
		case v.Deleted && len(v.Value) > 0:
			return fmt.Errorf("record %q: %w: version %s: a tombstone with a value", key, ErrMalformed, d)
		case !v.Deleted && (len(v.Value) == 0 || !json.Valid(v.Value) || !isCompactHTMLSafe(v.Value)):
			return fmt.Errorf("record %q: %w: version %s: the value is not a JSON document in the store's form", key, ErrMalformed, d)
		case rec.Seen.Covers(d):
			return fmt.Errorf("record %q: %w: version %s is superseded by the record's own context", key, ErrMalformed, d)
		case i > 0 && rec.Versions[i-1].Dot.Compare(d) >= 0:
			return fmt.Errorf("record %q: %w: versions out of dot order", key, ErrMalformed)
		case own != "" && d.Actor == own && d.Counter > ownSeq:
			return fmt.Errorf("record %q: %w: version %s is this region's own, beyond its log (%d): it comes from another store of this actor", key, ErrMalformed, d, ownSeq)
		}
	}
	return nil
}

// LifecycleStats are cumulative counts since Open.
type LifecycleStats struct {
	// Merged counts records a merge (snapshot or repair) changed.
	Merged uint64
	// Collected counts records tombstone collection removed.
	Collected uint64
}

// LifecycleStats returns the lifecycle counters.
func (s *Store) LifecycleStats() LifecycleStats {
	return LifecycleStats{Merged: s.lifeStats.merged.Load(), Collected: s.lifeStats.collected.Load()}
}
