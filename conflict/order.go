package conflict

import (
	"cmp"
	"slices"
	"strings"
)

// CompareLWW is the last-write-wins total order: HLC, then origin region
// name, then dot. It depends on the versions alone, so every region picks
// the same winner from the same frontier whatever the arrival order.
func CompareLWW(a, b Version) int {
	if c := a.HLC.Compare(b.HLC); c != 0 {
		return c
	}
	if c := strings.Compare(a.Origin, b.Origin); c != 0 {
		return c
	}
	return a.Dot.Compare(b.Dot)
}

// Scored pairs a version with a rule's score for it.
type Scored struct {
	Version Version
	Score   float64
}

// CompareScored orders by score, then by CompareLWW: the deterministic
// tie-break of a select rule.
func CompareScored(a, b Scored) int {
	if c := cmp.Compare(a.Score, b.Score); c != 0 {
		return c
	}
	return CompareLWW(a.Version, b.Version)
}

// Collapse picks the greatest version of the frontier under order and
// returns it with the others (the losers, in frontier order). It panics on an
// empty frontier. Collapse is deterministic: the same set of versions gives
// the same winner whatever their order in the slice.
func Collapse(versions []Version, order func(a, b Version) int) (winner Version, losers []Version) {
	i := 0
	for j := range versions {
		if order(versions[j], versions[i]) > 0 {
			i = j
		}
	}
	winner = versions[i]
	losers = slices.Concat(versions[:i:i], versions[i+1:])
	return winner, losers
}
