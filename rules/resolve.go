package rules

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/expr-lang/expr/vm"
	"github.com/geogate/geogate/conflict"
)

// Outcome is what a read of a key shows under its rule: nothing, one
// value, or concurrent values. The gateway maps it to its protocol (HTTP
// 404, 200, 300); the rules package knows no protocol.
type Outcome uint8

// The outcomes. The zero Outcome is OutcomeNone.
const (
	// OutcomeNone: no live version (none at all, or the visible one is a
	// tombstone).
	OutcomeNone Outcome = iota
	// OutcomeOne: one visible document (Resolution.Value).
	OutcomeOne
	// OutcomeSiblings: concurrent values left unresolved
	// (Resolution.Siblings).
	OutcomeSiblings
)

// String returns "none", "one" or "siblings".
func (o Outcome) String() string {
	switch o {
	case OutcomeOne:
		return "one"
	case OutcomeSiblings:
		return "siblings"
	}
	return "none"
}

// Resolution is what a read of a key shows under its rule.
type Resolution struct {
	// Outcome says which of Value and Siblings is set.
	Outcome Outcome
	// Value is the visible document for OutcomeOne: a stored value as is,
	// or the encoding of an on_read result.
	Value json.RawMessage
	// Siblings are the live values for OutcomeSiblings, ordered by dot.
	Siblings []json.RawMessage
	// Kept is the winner of a collapse (lww, select, home_region under
	// lww fallback) when the frontier held more than one version; nil
	// otherwise. It may be a tombstone (then Outcome is OutcomeNone).
	Kept *conflict.Version
	// Discarded are the losers of that collapse, in dot order, for the
	// conflict log.
	Discarded []conflict.Version
}

// effective returns the strategy that resolves a frontier under r: a
// home_region rule's conflicts only arise under its fallback, and are
// resolved by lww when the fallback is reject (they can then only come
// from a change of rules).
func (r *Rule) effective() Strategy {
	if r.strategy != StrategyHomeRegion {
		return r.strategy
	}
	if r.fallback == "" {
		return StrategyLWW
	}
	return r.fallback
}

// Resolve computes what a read of key shows at region, given the key's
// frontier (tombstones included; any order, it is sorted by dot here).
//
//   - lww, and home_region (its fallback's strategy; lww when reject):
//     the greatest version under conflict.CompareLWW; a tombstone -> 404.
//   - siblings: no live version -> 404, one -> 200, more -> 300 with all
//     of them, or 200 with the on_read result when on_read is set.
//   - custom: select scores every version and keeps the greatest under
//     conflict.CompareScored; without select the live versions are shown
//     as under siblings (on_read, else 300 until the resolver's merged
//     version arrives).
//
// The result depends on the set of versions alone, never on their order
// or on the region, except for an on_read expression that reads region.
// When an expression fails at run time Resolve never loses a version: it
// returns the live versions as siblings (OutcomeSiblings, OutcomeOne for
// one, OutcomeNone for none), collapses nothing (Kept and Discarded stay
// empty) and returns a non-nil error (*EvalError) for the caller to log
// and count. A held rule (see Set.Match) resolves the same way, without
// an error: its failure was reported by Match.
func (r *Rule) Resolve(key, region string, versions []conflict.Version) (Resolution, error) {
	vs := byDot(versions)
	if len(vs) == 0 {
		return Resolution{Outcome: OutcomeNone}, nil
	}
	switch r.effective() {
	case StrategyLWW:
		return collapse(vs, conflict.CompareLWW), nil
	case StrategyCustom:
		if r.sel != nil {
			return r.resolveSelect(key, vs)
		}
	}
	return r.resolveSiblings(key, region, vs)
}

// byDot returns versions in dot order without modifying them: a record's
// frontier already is (conflict.Record keeps it sorted), so usually no copy.
// Callers only read the result.
func byDot(versions []conflict.Version) []conflict.Version {
	cmp := func(a, b conflict.Version) int { return a.Dot.Compare(b.Dot) }
	if slices.IsSortedFunc(versions, cmp) {
		return versions
	}
	vs := slices.Clone(versions)
	slices.SortStableFunc(vs, cmp)
	return vs
}

// collapse keeps the greatest version under order.
func collapse(vs []conflict.Version, order func(a, b conflict.Version) int) Resolution {
	winner, losers := conflict.Collapse(vs, order)
	var res Resolution
	if len(vs) > 1 {
		res.Kept, res.Discarded = &winner, losers
	}
	if winner.Deleted {
		res.Outcome = OutcomeNone
		return res
	}
	res.Outcome, res.Value = OutcomeOne, winner.Value
	return res
}

// showLive is the sibling view of a frontier: 404, 200 or 300.
func showLive(vs []conflict.Version) Resolution {
	var live []json.RawMessage
	for _, v := range vs {
		if !v.Deleted {
			live = append(live, v.Value)
		}
	}
	switch len(live) {
	case 0:
		return Resolution{Outcome: OutcomeNone}
	case 1:
		return Resolution{Outcome: OutcomeOne, Value: live[0]}
	}
	return Resolution{Outcome: OutcomeSiblings, Siblings: live}
}

func liveCount(vs []conflict.Version) int {
	n := 0
	for _, v := range vs {
		if !v.Deleted {
			n++
		}
	}
	return n
}

// resolveSiblings shows the live versions, combined by on_read if set.
func (r *Rule) resolveSiblings(key, region string, vs []conflict.Version) (Resolution, error) {
	res := showLive(vs)
	if res.Outcome != OutcomeSiblings || r.onRead == nil {
		return res, nil
	}
	value, err := r.evalDoc(kindOnRead, r.onRead, key, region, vs)
	if err != nil {
		return res, err
	}
	return Resolution{Outcome: OutcomeOne, Value: value}, nil
}

// MergeOnWrite evaluates the rule's merge over the frontier and returns
// the merged document, to be written by the caller as a new version whose
// context is the frontier. Only the resolver region (see Resolver) may
// call it for a key; region is passed to the expression. It returns
// false, and no error, when the rule has no merge or the frontier has
// fewer than two live versions; on a run-time failure it returns false and
// an *EvalError, and the siblings stay as they are.
func (r *Rule) MergeOnWrite(key, region string, versions []conflict.Version) (json.RawMessage, bool, error) {
	if r.merge == nil || liveCount(versions) < 2 {
		return nil, false, nil
	}
	vs := byDot(versions)
	value, err := r.evalDoc(kindMerge, r.merge, key, region, vs)
	if err != nil {
		return nil, false, err
	}
	return value, true, nil
}

// frontierDocs decodes a frontier for an expression: the live documents
// and every version, in the given order, within the input size limit.
func (r *Rule) frontierDocs(vs []conflict.Version) (siblings []any, versions []versionDoc, err error) {
	total := 0
	for _, v := range vs {
		total += len(v.Value)
	}
	if total > r.cfg.maxInputBytes {
		return nil, nil, fmt.Errorf("%w: frontier of %d bytes (limit %d)", ErrTooLarge, total, r.cfg.maxInputBytes)
	}
	siblings = []any{}
	versions = make([]versionDoc, 0, len(vs))
	for _, v := range vs {
		d := versionDoc{Origin: v.Origin, HLC: float64(v.HLC.Wall), Deleted: v.Deleted}
		if !v.Deleted {
			doc, err := decodeDoc(v.Value)
			if err != nil {
				return nil, nil, fmt.Errorf("version %s: %w", v.Dot, err)
			}
			d.Value = doc
			siblings = append(siblings, doc)
		}
		versions = append(versions, d)
	}
	return siblings, versions, nil
}

// evalDoc runs a merge or on_read expression over the frontier (in the
// given order) and encodes its result.
func (r *Rule) evalDoc(kind exprKind, prog *vm.Program, key, region string, vs []conflict.Version) (json.RawMessage, error) {
	fail := func(err error) (json.RawMessage, error) {
		return nil, &EvalError{Rule: r.spec.Name, Field: string(kind), Key: key, Err: err}
	}
	siblings, versions, err := r.frontierDocs(vs)
	if err != nil {
		return fail(err)
	}
	out, err := r.cfg.run(prog, siblingsEnv{Key: key, Region: region, Siblings: siblings, Versions: versions})
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return fail(errNull)
	}
	value, err := encodeDoc(out)
	if err != nil {
		return fail(err)
	}
	if len(value) > r.cfg.maxResultBytes {
		return fail(fmt.Errorf("%w: result of %d bytes (limit %d)", ErrTooLarge, len(value), r.cfg.maxResultBytes))
	}
	return value, nil
}

// resolveSelect scores every version and keeps the best.
func (r *Rule) resolveSelect(key string, vs []conflict.Version) (Resolution, error) {
	if len(vs) == 1 {
		return collapse(vs, conflict.CompareLWW), nil
	}
	scores, err := r.scores(key, vs)
	if err != nil {
		return showLive(vs), err
	}
	byDot := make(map[conflict.Dot]float64, len(vs))
	for i, v := range vs {
		byDot[v.Dot] = scores[i]
	}
	return collapse(vs, func(a, b conflict.Version) int {
		return conflict.CompareScored(
			conflict.Scored{Version: a, Score: byDot[a.Dot]},
			conflict.Scored{Version: b, Score: byDot[b.Dot]})
	}), nil
}

// scores evaluates select for each version of vs (in that order) and maps
// the results to comparable numbers: numbers as they are, booleans as 0
// and 1, strings by their rank in lexical order among the frontier's
// string scores (so ISO-8601 timestamps work), null as -Inf (lowest). A
// tombstone on which select fails scores null: the expression need not
// handle deletes. Mixing numbers and strings is an error.
func (r *Rule) scores(key string, vs []conflict.Version) ([]float64, error) {
	fail := func(err error) ([]float64, error) {
		return nil, &EvalError{Rule: r.spec.Name, Field: string(kindSelect), Key: key, Err: err}
	}
	siblings, versions, err := r.frontierDocs(vs)
	if err != nil {
		return fail(err)
	}
	raw := make([]any, len(vs))
	for i := range vs {
		out, err := r.cfg.run(r.sel, selectEnv{Key: key, Siblings: siblings, Versions: versions, Version: versions[i]})
		if err != nil {
			if vs[i].Deleted {
				continue
			}
			return fail(fmt.Errorf("version %s: %w", vs[i].Dot, err))
		}
		if raw[i], err = normalize(out); err != nil {
			return fail(fmt.Errorf("version %s: %w", vs[i].Dot, err))
		}
	}
	scores, err := rankScores(raw)
	if err != nil {
		return fail(err)
	}
	return scores, nil
}

// rankScores maps select results to numbers (see Rule.scores).
func rankScores(raw []any) ([]float64, error) {
	out := make([]float64, len(raw))
	var strs []string
	numbers := false
	for _, v := range raw {
		switch x := v.(type) {
		case string:
			strs = append(strs, x)
		case float64, bool:
			numbers = true
		case nil:
		default:
			return nil, fmt.Errorf("select yielded %s; want a number, string, bool or null", jsonType(v))
		}
	}
	if numbers && len(strs) > 0 {
		return nil, fmt.Errorf("select yielded both numbers and strings")
	}
	slices.Sort(strs)
	strs = slices.Compact(strs)
	for i, v := range raw {
		switch x := v.(type) {
		case nil:
			out[i] = math.Inf(-1)
		case float64:
			out[i] = x
			if math.IsNaN(x) {
				out[i] = math.Inf(-1)
			}
		case bool:
			out[i] = float64(boolNum(x))
		case string:
			rank, _ := slices.BinarySearchFunc(strs, x, cmp.Compare[string])
			out[i] = float64(rank)
		}
	}
	return out, nil
}
