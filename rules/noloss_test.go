package rules

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
)

// The law "a failing rule never loses a write", checked on pure code: rule
// sets drawn at random, some of whose expressions fail on some keys or
// values, govern random concurrent histories of three regions (local
// writes with and without a context, resolver merges, replicated events
// delivered in any order, with duplicates), played with conflict.Record
// the way the gateway plays them (the write semantics of
// SupersedesWithoutContext, the conflict log of the Resolutions'
// Discarded and of merges). After every step, at every region, every
// acknowledged version that reached the region is
//
//   - visible: in the frontier and not collapsed away by the rule, or
//   - superseded by a causal context that covered it and that somebody was
//     entitled to write with: a client's or a merge's context, or a write
//     without context under a rule that Match returned without a failure
//     and whose strategy supersedes (lww, home_region), or
//   - in the region's conflict log.
//
// A rule that let a failing match fall through to a later lww rule breaks
// it (the write supersedes what the operator wanted kept, and nothing is
// logged), and so does a failing select or on_read that collapsed anyway.

// lossTemplates are the rule shapes drawn: each with an expression that
// works and one that fails on some data (a string where a number is
// expected).
var lossTemplates = []struct {
	strategy          string
	field             string // the expression field, "" for none
	good, bad         string
	resolver, homeStr string
	fallback          string
}{
	{strategy: "lww"},
	{strategy: "siblings"},
	{strategy: "siblings", field: "on_read", good: `{"n": len(siblings)}`, bad: `{"n": sum(map(siblings, #.n))}`},
	{strategy: "custom", field: "select", good: `version.hlc`, bad: `version.value.n + 1`},
	{strategy: "custom", field: "on_read", good: `{"n": len(siblings)}`, bad: `{"n": sum(map(siblings, #.n))}`},
	{strategy: "custom", field: "merge", good: `{"n": len(siblings)}`, bad: `{"n": sum(map(siblings, #.n))}`, resolver: "r1"},
	{strategy: "home_region", homeStr: `"r1"`, fallback: "lww"},
}

var lossRegions = []string{"r1", "r2", "r3"}

// drawRuleSet draws 1 to 4 rules over the prefixes a/, b/, c/ (or every
// key), each with a working or a failing expression and a match that may
// fail for keys that are not numbers.
func drawRuleSet(t *rapid.T) []Spec {
	n := rapid.IntRange(1, 4).Draw(t, "rules")
	var specs []Spec
	for i := range n {
		tp := lossTemplates[rapid.IntRange(0, len(lossTemplates)-1).Draw(t, fmt.Sprintf("template%d", i))]
		prefix := rapid.SampledFrom([]string{"a/", "b/", "c/", ""}).Draw(t, fmt.Sprintf("prefix%d", i))
		match := fmt.Sprintf("key startsWith %q", prefix)
		if rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("failingMatch%d", i)) == 0 {
			// int(key) fails for every key that is not a number.
			match = fmt.Sprintf("int(key) > 100 || key startsWith %q", prefix)
		}
		spec := Spec{Name: fmt.Sprintf("rule%d", i), Match: match, Strategy: tp.strategy, Resolver: tp.resolver, Home: tp.homeStr, Fallback: tp.fallback}
		expr := tp.good
		if tp.field != "" && rapid.Bool().Draw(t, fmt.Sprintf("failingExpr%d", i)) {
			expr = tp.bad
		}
		switch tp.field {
		case "on_read":
			spec.OnRead = expr
		case "select":
			spec.Select = expr
		case "merge":
			spec.Merge = expr
		}
		specs = append(specs, spec)
	}
	return append(specs, Spec{Name: "default", Match: "true", Strategy: "lww"})
}

// lossEvent is one acknowledged write and the part of its context it was
// entitled to supersede with.
type lossEvent struct {
	ev   conflict.Event
	auth conflict.VV
}

// lossReplica is one region's state of one key.
type lossReplica struct {
	rec      conflict.Record
	authSeen conflict.VV             // join of the entitled contexts applied here
	arrived  map[conflict.Dot]bool   // versions that reached this region
	logged   map[conflict.Dot]bool   // versions in this region's conflict log
	applied  map[conflict.Dot]bool   // events applied (for delivery choice)
	values   map[conflict.Dot]string // for messages
}

func TestPropFailingRuleNeverLosesAWrite(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		specs := drawRuleSet(t)
		set, err := Compile(specs, Options{Regions: lossRegions})
		if err != nil {
			t.Fatalf("compile %+v: %v", specs, err)
		}
		keys := []string{"a/1", "b/2", "c/3", "7"}
		state := map[string]map[string]*lossReplica{} // region -> key
		logPos := map[string]uint64{}                 // region -> its log's last position
		for _, r := range lossRegions {
			state[r] = map[string]*lossReplica{}
			for _, k := range keys {
				state[r][k] = &lossReplica{authSeen: conflict.VV{}, arrived: map[conflict.Dot]bool{}, logged: map[conflict.Dot]bool{},
					applied: map[conflict.Dot]bool{}, values: map[conflict.Dot]string{}}
			}
		}
		var events []lossEvent
		hlc := int64(0)

		// observe is the gateway's conflict-log observer.
		observe := func(region, key string, after conflict.Record, merged bool, superseded []conflict.Version) {
			rp := state[region][key]
			if merged {
				for _, v := range superseded {
					rp.logged[v.Dot] = true
				}
				return
			}
			if len(after.Versions) < 2 {
				return
			}
			rule, _ := set.Match(key)
			res, err := rule.Resolve(key, region, after.Versions)
			if err != nil {
				if res.Kept != nil || len(res.Discarded) > 0 {
					t.Fatalf("a failed Resolve collapsed: %+v", res)
				}
				return
			}
			for _, v := range res.Discarded {
				rp.logged[v.Dot] = true
			}
		}
		// write makes a local write the way the gateway does.
		write := func(region, key string, ctx conflict.VV, explicit bool, value json.RawMessage, deleted, merged bool) {
			rp := state[region][key]
			rule, matchErr := set.Match(key)
			auth := conflict.VV{}
			if explicit {
				auth = ctx
			} else if rule.SupersedesWithoutContext() {
				ctx = rp.rec.Context()
				if matchErr == nil {
					auth = ctx // the operator chose lww / home_region for this key
				}
			}
			hlc++
			logPos[region]++ // a region's dots are positions in its own log
			next, ev, out, err := rp.rec.Write(conflict.Dot{Actor: region, Counter: logPos[region]}, ctx, value, deleted, conflict.HLC{Wall: hlc})
			if err != nil {
				t.Fatalf("write %s at %s: %v", key, region, err)
			}
			rp.rec = next
			rp.authSeen = rp.authSeen.Merge(auth)
			rp.arrived[ev.Version.Dot], rp.applied[ev.Version.Dot] = true, true
			rp.values[ev.Version.Dot] = string(value)
			ev.Key = key
			events = append(events, lossEvent{ev: ev, auth: auth})
			observe(region, key, next, merged, out.Superseded)
		}

		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		for step := range steps {
			region := rapid.SampledFrom(lossRegions).Draw(t, fmt.Sprintf("region%d", step))
			key := rapid.SampledFrom(keys).Draw(t, fmt.Sprintf("key%d", step))
			rp := state[region][key]
			switch op := rapid.IntRange(0, 9).Draw(t, fmt.Sprintf("op%d", step)); {
			case op < 4: // a write: without a context, or with the context of a read here
				var value json.RawMessage
				deleted := rapid.IntRange(0, 5).Draw(t, fmt.Sprintf("delete%d", step)) == 0
				if !deleted {
					if rapid.Bool().Draw(t, fmt.Sprintf("stringN%d", step)) {
						value = json.RawMessage(fmt.Sprintf(`{"n": "s%d"}`, step))
					} else {
						value = json.RawMessage(fmt.Sprintf(`{"n": %d}`, step))
					}
				}
				if rapid.Bool().Draw(t, fmt.Sprintf("withContext%d", step)) {
					write(region, key, rp.rec.Context(), true, value, deleted, false)
				} else {
					write(region, key, nil, false, value, deleted, false)
				}
			case op < 5: // the resolver merges
				rule, _ := set.Match(key)
				if !rule.HasMerge() {
					continue
				}
				if res, err := rule.Resolver(key, nil); err != nil || res != region {
					continue
				}
				doc, ok, err := rule.MergeOnWrite(key, region, rp.rec.Versions)
				if err != nil && (ok || doc != nil) {
					t.Fatalf("a failed merge returned a value")
				}
				if ok {
					write(region, key, rp.rec.Context(), true, doc, false, true)
				}
			default: // deliver an event (maybe again) to a region
				if len(events) == 0 {
					continue
				}
				e := events[rapid.IntRange(0, len(events)-1).Draw(t, fmt.Sprintf("event%d", step))]
				to := state[region][e.ev.Key]
				next, out := to.rec.Apply(e.ev)
				to.rec = next
				to.authSeen = to.authSeen.Merge(e.auth)
				to.arrived[e.ev.Version.Dot], to.applied[e.ev.Version.Dot] = true, true
				to.values[e.ev.Version.Dot] = string(e.ev.Version.Value)
				observe(region, e.ev.Key, next, false, out.Superseded)
				key = e.ev.Key
			}
			checkNoLoss(t, set, state, step)
		}
	})
}

// checkNoLoss asserts the law at every region for every key.
func checkNoLoss(t *rapid.T, set *Set, state map[string]map[string]*lossReplica, step int) {
	for _, region := range lossRegions {
		for key, rp := range state[region] {
			rule, matchErr := set.Match(key)
			res, _ := rule.Resolve(key, region, rp.rec.Versions)
			for dot := range rp.arrived {
				inFrontier := slices.ContainsFunc(rp.rec.Versions, func(v conflict.Version) bool { return v.Dot == dot })
				visible := inFrontier && (res.Kept == nil || res.Kept.Dot == dot)
				if visible || rp.authSeen.Covers(dot) || rp.logged[dot] {
					continue
				}
				t.Fatalf("step %d: region %s key %q: version %s (%s) disappeared: not visible (frontier %v, kept %v), "+
					"not covered by an entitled context (%v; the record's %v), not in the conflict log; rule %s (match error: %v)",
					step, region, key, dot, rp.values[dot], dots(rp.rec.Versions), res.Kept, rp.authSeen, rp.rec.Seen, rule.Name(), matchErr)
			}
		}
	}
}

func dots(vs []conflict.Version) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Dot.String()
	}
	return out
}
