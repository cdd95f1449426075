package conflict

// Tombstone collection. A delete leaves a tombstone version, and a record
// whose frontier is all tombstones reads as "not found" but still takes
// space. Such a record can be removed once nothing can ever make it visible
// again, that is once it is causally stable: every region has applied every
// event the record reflects (its Context) and no event concurrent with them
// can still arrive anywhere. Then:
//
//   - a late or duplicate copy of any of those events is dropped by the
//     origin's watermark, in every region;
//   - every other region holds the same tombstones or has removed them too,
//     so a merge of a peer's record (snapshot, anti-entropy) brings back at
//     most a tombstone, never the deleted value;
//   - any event still to come was written after its region applied the
//     tombstones, so it was written with them in view.
//
// Stability tracks the second condition from the positions the regions
// report (Store.Applied: per actor, the highest log position applied).
// Region c may have written events concurrent with a tombstone t only
// before it applied t, that is at positions of c at most what c reported
// applied of itself in the first report that covers t. So when the
// pointwise minimum of all reports of a round j covers a record's context,
// and the minimum of a later round k covers the join of round j's reports
// (every region has applied whatever any region had applied at j, including
// each region's own writes up to then), no event concurrent with the
// record's events is still in flight: the minimum of round j is safe from
// round k on.

// Stability computes the safe vector of tombstone collection from rounds of
// applied positions reported by every region. It is a value owned by one
// caller (not safe for concurrent use); the zero value is ready.
type Stability struct {
	// rounds are the (minimum, join) pairs of earlier rounds not yet
	// overtaken, oldest first.
	rounds []stabilityRound
	safe   VV
}

type stabilityRound struct{ min, join VV }

// maxStabilityRounds bounds the rounds a Stability remembers; the oldest is
// dropped beyond it (collection then waits longer, never less).
const maxStabilityRounds = 256

// Round takes one round of reports, one applied vector per region of the
// deployment (all of them: a region with no report must be passed as an
// empty vector, which keeps everything unstable), and returns the safe
// vector: every dot it covers is causally stable, as described above. The
// result only grows while the reports do; a report that goes back (a region
// restored from a backup) lowers the minimum of the rounds to come.
func (s *Stability) Round(reports []VV) VV {
	if len(reports) == 0 {
		return s.safe.Clone()
	}
	lo, join := reports[0].Clone(), reports[0].Clone()
	for _, r := range reports[1:] {
		for a, c := range lo {
			if r[a] < c {
				lo[a] = r[a]
			}
		}
		join = join.Merge(r)
	}
	for a, c := range lo {
		if c == 0 {
			delete(lo, a)
		}
	}
	s.rounds = append(s.rounds, stabilityRound{min: lo, join: join})
	if len(s.rounds) > maxStabilityRounds {
		s.rounds = s.rounds[1:]
	}
	// The latest earlier round whose join this round's minimum covers.
	last := -1
	for j := range len(s.rounds) - 1 {
		if lo.Descends(s.rounds[j].join) {
			last = j
		}
	}
	if last >= 0 {
		s.safe = s.rounds[last].min
		s.rounds = s.rounds[last+1:]
	}
	return s.safe.Clone()
}

// Collectable reports whether the record may be removed by tombstone
// collection: it has versions, every one a tombstone whose HLC wall time is
// before cutoff (the grace period), and safe (a Stability result) covers
// its whole context. A tombstone beside a live sibling is kept: removing it
// could change which version a last-write-wins read shows.
func Collectable(r Record, safe VV, cutoff int64) bool {
	if len(r.Versions) == 0 {
		return false
	}
	for _, v := range r.Versions {
		if !v.Deleted || v.HLC.Wall >= cutoff {
			return false
		}
	}
	return safe.Descends(r.Context())
}
