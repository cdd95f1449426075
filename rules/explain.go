package rules

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/geogate/geogate/conflict"
)

// MatchStep is one rule Explain tried for a key, in list order.
type MatchStep struct {
	Rule string
	// Result is "no match", "match" (this rule governs the key) or
	// "failed" (the match expression failed: the key is held here).
	Result string
	Err    error // for "failed"
}

// Explanation says how a rule set treats one key: which rules were tried,
// which one governs the key (and whether it holds the key after a
// failure), and what a read at the given region shows of the given
// versions. It is what `GET /v1/admin/rules/explain` and `geogate rules
// plan` show.
type Explanation struct {
	Key    string
	Region string
	Steps  []MatchStep
	// Rule governs the key; nil when no rule matches (Err wraps
	// ErrNoRule).
	Rule *Rule
	// Resolution is what a read of the versions shows under Rule
	// (zero when Rule is nil).
	Resolution Resolution
	// Merged is the document the resolver would write (rules with merge,
	// two or more live versions), nil otherwise.
	Merged json.RawMessage
	// Resolver is the region that merges (rules with merge), "" otherwise.
	Resolver string
	// Err joins every failure met: of match (the key is held), of
	// select, on_read, merge or the resolver's home. Each is an
	// *EvalError naming its rule and field.
	Err error
}

// Explain evaluates everything the set does for key at region over the
// key's versions (its frontier; any order): the match of each rule in
// turn until one governs the key, the read's resolution and, for a rule
// with merge, the resolver and the merged document. It is pure and, like
// Match and Resolve, never loses a version: a failure is reported in Err
// and the versions are shown as siblings.
func (s *Set) Explain(key, region string, versions []conflict.Version) Explanation {
	ex := Explanation{Key: key, Region: region}
	var errs []error
	for _, r := range s.rules {
		governs, err := r.matches(key)
		switch {
		case err != nil:
			ee := &EvalError{Rule: r.spec.Name, Field: string(kindMatch), Key: key, Err: err}
			ex.Steps = append(ex.Steps, MatchStep{Rule: r.spec.Name, Result: "failed", Err: ee})
			ex.Rule = r.hold(ee)
			errs = append(errs, ee)
		case governs:
			ex.Steps = append(ex.Steps, MatchStep{Rule: r.spec.Name, Result: "match"})
			ex.Rule = r
		default:
			ex.Steps = append(ex.Steps, MatchStep{Rule: r.spec.Name, Result: "no match"})
			continue
		}
		break
	}
	if ex.Rule == nil {
		ex.Err = fmt.Errorf("%w: %q", ErrNoRule, key)
		return ex
	}
	res, err := ex.Rule.Resolve(key, region, versions)
	ex.Resolution = res
	if err != nil {
		errs = append(errs, err)
	}
	if ex.Rule.HasMerge() {
		resolver, err := ex.Rule.Resolver(key, nil)
		ex.Resolver = resolver
		if err != nil {
			errs = append(errs, err)
		} else if merged, ok, err := ex.Rule.MergeOnWrite(key, resolver, versions); err != nil {
			errs = append(errs, err)
		} else if ok {
			ex.Merged = merged
		}
	}
	ex.Err = errors.Join(errs...)
	return ex
}

// matches evaluates the rule's match for key alone.
func (r *Rule) matches(key string) (bool, error) {
	if r.matchKey != nil {
		return r.matchKey(key), nil
	}
	out, err := r.cfg.run(r.match, matchEnv{Key: key})
	if err != nil {
		return false, err
	}
	ok, _ := out.(bool)
	return ok, nil
}
