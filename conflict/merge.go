package conflict

import (
	"bytes"
	"slices"
)

// Merge returns the join of two records of one key: Seen is the join of
// both Seens, and the frontier is every version of either frontier that the
// joined Seen does not cover. It is the state-based form of Apply: merging
// the record that a set of events built into the record another set built
// gives the record of both sets applied in any order (see
// TestMergeAgreesWithApply). Merge is commutative, associative and
// idempotent, and neither input is modified; a snapshot or an anti-entropy
// repair merges a peer's record this way, so it can add what this region
// lacks but never overwrite or remove anything it holds that the peer's
// contexts do not supersede.
//
// Two records never hold different versions under one dot (a dot names one
// write); should corrupt input do so, Merge keeps the greater by
// compareSameDot, so the result still does not depend on the argument
// order.
func (r Record) Merge(o Record) Record {
	seen := r.Seen.Merge(o.Seen)
	out := Record{Seen: seen, Versions: make([]Version, 0, len(r.Versions)+len(o.Versions))}
	i, j := 0, 0
	add := func(v Version) {
		if !seen.Covers(v.Dot) {
			out.Versions = append(out.Versions, v)
		}
	}
	a, b := sortedByDot(r.Versions), sortedByDot(o.Versions)
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Dot.Compare(b[j].Dot) < 0):
			add(a[i])
			i++
		case i == len(a) || a[i].Dot.Compare(b[j].Dot) > 0:
			add(b[j])
			j++
		default: // the same dot in both
			v := a[i]
			if compareSameDot(b[j], v) > 0 {
				v = b[j]
			}
			add(v)
			i++
			j++
		}
	}
	return out
}

// sortedByDot returns vs sorted by dot (vs itself when it already is, as
// every Record's frontier is).
func sortedByDot(vs []Version) []Version {
	if slices.IsSortedFunc(vs, func(a, b Version) int { return a.Dot.Compare(b.Dot) }) {
		return vs
	}
	out := slices.Clone(vs)
	slices.SortFunc(out, func(a, b Version) int { return a.Dot.Compare(b.Dot) })
	return out
}

// compareSameDot totally orders versions that share a dot (only corrupt
// input has two): HLC, then deleted, then origin, then value bytes.
func compareSameDot(a, b Version) int {
	if c := a.HLC.Compare(b.HLC); c != 0 {
		return c
	}
	if a.Deleted != b.Deleted {
		if a.Deleted {
			return 1
		}
		return -1
	}
	if c := bytes.Compare([]byte(a.Origin), []byte(b.Origin)); c != 0 {
		return c
	}
	return bytes.Compare(a.Value, b.Value)
}
