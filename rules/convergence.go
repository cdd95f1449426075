package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
)

// The convergence check of Lint: evaluate an expression over generated
// sibling sets in every order and compare. Regions see the frontier in dot
// order, so an order-dependent expression is still deterministic, but what
// it computes then hinges on region names and counters (siblings[0] is
// "whichever sibling has the smallest dot"), which is almost never what
// the operator meant, and a merge whose result depends on order is not a
// merge of the values.

// pathTrie is the set of document field paths an expression reads.
type pathTrie map[string]pathTrie

func (t pathTrie) add(path []string) {
	for _, p := range path {
		next, ok := t[p]
		if !ok || next == nil {
			next = pathTrie{}
			t[p] = next
		}
		t = next
	}
}

// docPaths collects the document fields an expression reads: member
// chains on value, version.value, siblings[i], versions[i].value and #,
// and the path arguments of maxBy/minBy.
func docPaths(n ast.Node) pathTrie {
	t := pathTrie{}
	ast.Walk(&n, pathCollector(t))
	return t
}

type pathCollector pathTrie

// Visit implements ast.Visitor.
func (c pathCollector) Visit(node *ast.Node) {
	t := pathTrie(c)
	switch n := (*node).(type) {
	case *ast.MemberNode:
		root, props := memberChain(n)
		for len(props) > 0 && props[0] == "" {
			props = props[1:]
		}
		if i := slices.Index(props, ""); i >= 0 {
			props = props[:i]
		}
		if len(props) == 0 {
			return
		}
		id, _ := root.(*ast.IdentifierNode)
		versionRoot := id != nil && (id.Value == "version" || id.Value == "versions")
		if props[0] == "value" && len(props) > 1 {
			t.add(props[1:])
		}
		if !versionRoot {
			t.add(props)
		}
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && (id.Value == "maxBy" || id.Value == "minBy") && len(n.Arguments) == 2 {
			if s, ok := n.Arguments[1].(*ast.StringNode); ok && s.Value != "" {
				parts := strings.Split(s.Value, ".")
				if parts[0] == "value" && len(parts) > 1 {
					t.add(parts[1:])
				}
				if !slices.Contains([]string{"value", "origin", "hlc", "deleted"}, parts[0]) {
					t.add(parts)
				}
			}
		}
	}
}

// memberChain unwinds a.b[0].c into its root and properties ("" for a
// non-string property such as an index).
func memberChain(n *ast.MemberNode) (ast.Node, []string) {
	var props []string
	var cur ast.Node = n
	for {
		switch x := cur.(type) {
		case *ast.MemberNode:
			if s, ok := x.Property.(*ast.StringNode); ok {
				props = append(props, s.Value)
			} else {
				props = append(props, "")
			}
			cur = x.Node
			continue
		case *ast.ChainNode:
			cur = x.Node
			continue
		}
		slices.Reverse(props)
		return cur, props
	}
}

// docFamily generates one kind of plausible document.
type docFamily struct {
	name string
	leaf func(i, salt int) (any, bool) // false: leave the field out
}

var docFamilies = []docFamily{
	{"numbers", func(i, salt int) (any, bool) { return float64((i*7+salt*3)%5 + 1), true }},
	{"tied numbers", func(i, salt int) (any, bool) { return float64((i+salt)%2 + 1), true }},
	{"strings", func(i, salt int) (any, bool) { return fmt.Sprintf("s%d", (i*7+salt*3)%5), true }},
	{"arrays", func(i, salt int) (any, bool) {
		a := []any{"shared", fmt.Sprintf("e%d", i)}
		if i%2 == 0 {
			a = append(a, fmt.Sprintf("x%d", salt))
		}
		return a, true
	}},
	{"objects", func(i, salt int) (any, bool) {
		return map[string]any{"shared": float64(salt), fmt.Sprintf("k%d", i): float64(i), "other": fmt.Sprintf("v%d", i)}, true
	}},
	{"sparse arrays", func(i, salt int) (any, bool) {
		return []any{fmt.Sprintf("e%d", i%2), "shared"}, (i+salt)%3 != 0
	}},
}

// genDoc builds version i's document for the paths in t.
func genDoc(t pathTrie, fam docFamily, i int) any {
	if len(t) == 0 {
		v, _ := fam.leaf(i, 0)
		return v
	}
	salt := 0
	var build func(t pathTrie) map[string]any
	build = func(t pathTrie) map[string]any {
		// A field the expression does not name, different in every
		// version: it exposes expressions that pass whole documents on
		// in an order-dependent way (merge(siblings) over conflicting
		// fields, siblings[0]).
		out := map[string]any{"lint_other": fmt.Sprintf("v%d", i)}
		for _, k := range slices.Sorted(maps.Keys(t)) {
			salt++
			if len(t[k]) > 0 {
				out[k] = build(t[k])
				continue
			}
			if v, ok := fam.leaf(i, salt); ok {
				out[k] = v
			}
		}
		return out
	}
	return build(t)
}

// Bounds of the convergence check: frontiers of up to maxFrontier
// versions; every order of frontiers of up to exhaustiveOrders versions,
// sampledOrders orders of larger ones; rapidFrontiers frontiers drawn by
// rapid generators; at most evalBudget evaluations per expression, so
// lint stays well under a second for a typical rule set.
const (
	maxFrontier            = 8
	exhaustiveOrders       = 4
	sampledOrders          = 8
	rapidFrontiers         = 64
	evalBudget             = 4000
	lintHLCBase      int64 = 1_700_000_000_000
)

// genSets returns the frontiers of the fixed families: 1 to maxFrontier
// versions of every family, and 3- and 5-version sets with a tombstone.
// HLCs are distinct (HLC ties are broken by the dot order, which an
// expression sorting by hlc would otherwise be blamed for).
func genSets(t pathTrie, regions []string) [][]conflict.Version {
	var sets [][]conflict.Version
	for _, fam := range docFamilies {
		for size := 1; size <= maxFrontier; size++ {
			for _, tomb := range []bool{false, true} {
				if tomb && size != 3 && size != 5 {
					continue
				}
				set := make([]conflict.Version, size)
				for i := range size {
					v := lintVersion(regions, i)
					if tomb && i == 1 {
						v.Deleted = true
					} else {
						v.Value, _ = json.Marshal(genDoc(t, fam, i))
					}
					set[i] = v
				}
				sets = append(sets, set)
			}
		}
	}
	return sets
}

// lintVersion is the i-th version of a generated frontier, without value.
func lintVersion(regions []string, i int) conflict.Version {
	origin := regions[i%len(regions)]
	return conflict.Version{
		Dot:    conflict.Dot{Actor: origin, Counter: uint64(i/len(regions) + 1)},
		HLC:    conflict.HLC{Wall: lintHLCBase + int64(i)*1000},
		Origin: origin,
	}
}

// leafKinds are the kinds of value a generated field takes; within one
// frontier a field keeps its kind, as real documents do.
var leafKinds = []string{"small int", "number", "string", "bool", "strings", "object"}

// rapidSets draws frontiers of 1 to maxFrontier versions with rapid: each
// field the expression reads gets a kind per frontier, and per version a
// value of that kind (small numbers and strings tie often), null, or no
// field at all; some versions are tombstones. Example(seed) makes the
// draws deterministic, so lint gives the same findings every run.
func rapidSets(t pathTrie, regions []string) [][]conflict.Version {
	gen := rapid.Custom(func(rt *rapid.T) []conflict.Version {
		kinds := map[string]string{}
		size := rapid.IntRange(1, maxFrontier).Draw(rt, "size")
		set := make([]conflict.Version, size)
		for i := range size {
			v := lintVersion(regions, i)
			if size > 1 && rapid.IntRange(0, 7).Draw(rt, "tombstone") == 0 {
				v.Deleted = true
			} else {
				v.Value, _ = json.Marshal(drawDoc(rt, t, "", kinds))
			}
			set[i] = v
		}
		return set
	})
	sets := make([][]conflict.Version, 0, rapidFrontiers)
	for seed := range rapidFrontiers {
		sets = append(sets, gen.Example(seed+1))
	}
	return sets
}

// drawDoc draws a document with the fields of t (a leaf when t is empty).
func drawDoc(rt *rapid.T, t pathTrie, path string, kinds map[string]string) any {
	if len(t) == 0 {
		return drawLeaf(rt, path, kinds)
	}
	out := map[string]any{"lint_other": rapid.SampledFrom([]string{"x", "y", "z"}).Draw(rt, "other")}
	for _, k := range slices.Sorted(maps.Keys(t)) {
		switch rapid.IntRange(0, 9).Draw(rt, "presence") {
		case 0:
			continue // the field is missing
		case 1:
			out[k] = nil
			continue
		}
		out[k] = drawDoc(rt, t[k], path+"."+k, kinds)
	}
	return out
}

// drawLeaf draws a value of the kind path has in this frontier.
func drawLeaf(rt *rapid.T, path string, kinds map[string]string) any {
	kind, ok := kinds[path]
	if !ok {
		kind = rapid.SampledFrom(leafKinds).Draw(rt, "kind")
		kinds[path] = kind
	}
	word := rapid.SampledFrom([]string{"a", "b", "c", "shared"})
	switch kind {
	case "small int":
		return float64(rapid.IntRange(0, 3).Draw(rt, "int"))
	case "number":
		// Quarters: exact in binary, so sums do not depend on the order
		// of rounding (float addition is not associative).
		return float64(rapid.IntRange(-4_000_000, 4_000_000).Draw(rt, "number")) / 4
	case "string":
		return word.Draw(rt, "string")
	case "bool":
		return rapid.Bool().Draw(rt, "bool")
	case "strings":
		words := rapid.SliceOfN(word, 0, 4).Draw(rt, "strings")
		out := make([]any, len(words))
		for i, w := range words {
			out[i] = w
		}
		return out
	default:
		return map[string]any{word.Draw(rt, "field"): float64(rapid.IntRange(0, 3).Draw(rt, "value")), "shared": true}
	}
}

// orders returns the orders a frontier is evaluated in: every order up to
// exhaustiveOrders versions, else the given order, its reverse and
// shuffles from a fixed seed.
func orders(vs []conflict.Version) [][]conflict.Version {
	var out [][]conflict.Version
	if len(vs) <= exhaustiveOrders {
		permutations(vs, func(o []conflict.Version) bool { out = append(out, o); return true })
		return out
	}
	out = append(out, slices.Clone(vs))
	rev := slices.Clone(vs)
	slices.Reverse(rev)
	out = append(out, rev)
	rng := rand.New(rand.NewPCG(uint64(len(vs)), 7))
	for range sampledOrders - 2 {
		o := slices.Clone(vs)
		rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
		out = append(out, o)
	}
	return out
}

// permutations calls f with every ordering of vs (Heap's algorithm).
func permutations(vs []conflict.Version, f func([]conflict.Version) bool) {
	a := slices.Clone(vs)
	c := make([]int, len(a))
	if !f(slices.Clone(a)) {
		return
	}
	for i := 0; i < len(a); {
		if c[i] < i {
			if i%2 == 0 {
				a[0], a[i] = a[i], a[0]
			} else {
				a[c[i]], a[i] = a[i], a[c[i]]
			}
			if !f(slices.Clone(a)) {
				return
			}
			c[i]++
			i = 0
		} else {
			c[i] = 0
			i++
		}
	}
}

// outcome is one evaluation's result for comparison: an error, or the
// canonical form (array order ignored) of the result, or the winner.
type outcome struct {
	err  error
	form string // compared
	show string // displayed
}

func (o outcome) String() string {
	if o.err != nil {
		return "an error (" + shortError(o.err) + ")"
	}
	return o.show
}

// shortError renders an evaluation error on one line, without the rule
// and key (the diagnostic names them) or expr's snippet.
func shortError(err error) string {
	var ee *EvalError
	if errors.As(err, &ee) {
		err = ee.Err
	}
	var fe *file.Error
	if errors.As(err, &fe) {
		return truncate(fmt.Sprintf("%s at column %d", fe.Message, fe.Column+1), 160)
	}
	return truncate(err.Error(), 160)
}

// evalOrdered evaluates the rule's expression of kind over vs in the given
// order (no sorting).
func evalOrdered(r *Rule, kind exprKind, key, region string, vs []conflict.Version) outcome {
	if kind == kindSelect {
		scores, err := r.scores(key, vs)
		if err != nil {
			return outcome{err: err}
		}
		byDot := map[conflict.Dot]float64{}
		for i, v := range vs {
			byDot[v.Dot] = scores[i]
		}
		w, _ := conflict.Collapse(vs, func(a, b conflict.Version) int {
			return conflict.CompareScored(conflict.Scored{Version: a, Score: byDot[a.Dot]}, conflict.Scored{Version: b, Score: byDot[b.Dot]})
		})
		return outcome{form: w.Dot.String(), show: "version " + w.Dot.String()}
	}
	prog := r.merge
	if kind == kindOnRead {
		prog = r.onRead
	}
	raw, err := r.evalDoc(kind, prog, key, region, vs)
	if err != nil {
		return outcome{err: err}
	}
	var v any
	_ = json.Unmarshal(raw, &v) // evalDoc's output is valid JSON
	return outcome{form: canonical(setForm(v)), show: truncate(string(raw), 160)}
}

// setForm sorts every array by its elements' canonical encodings, so that
// values differing only in array order compare equal.
func setForm(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = setForm(e)
		}
		slices.SortFunc(out, func(a, b any) int { return strings.Compare(canonical(a), canonical(b)) })
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = setForm(e)
		}
		return out
	}
	return v
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func describeVersions(vs []conflict.Version) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		if v.Deleted {
			parts[i] = v.Dot.String() + "=<deleted>"
		} else {
			parts[i] = v.Dot.String() + "=" + truncate(string(v.Value), 60)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// finding is one result of checkConvergence.
type finding struct {
	severity Severity
	message  string
}

// checkConvergence evaluates one expression of r on generated frontiers
// in many orders (see Lint). It returns an error when the result depends
// on the order, when a merge is not idempotent, or when an evaluation
// exceeds the memory budget or the result limit; a warning when an
// on_read depends on the region, or when no generated frontier could be
// evaluated; nothing when the expression looks sound.
func checkConvergence(r *Rule, kind exprKind, cfg *config) []finding {
	var prog *vm.Program
	switch kind {
	case kindSelect:
		prog = r.sel
	case kindMerge:
		prog = r.merge
	case kindOnRead:
		prog = r.onRead
	}
	if prog == nil {
		return nil
	}
	t := docPaths(prog.Node())
	regions := cfg.regions
	if len(regions) < 2 {
		regions = []string{"r1", "r2", "r3", "r4"}
	}
	region := regions[0]
	if kind == kindMerge {
		if res, err := r.Resolver("lint/key", nil); err == nil && res != "" {
			region = res
		}
	}
	key := "lint/key"
	var out []finding
	evals, evaluated := 0, 0
	var firstErr error
	regionWarned, idempotenceChecked := false, false
	for _, set := range append(genSets(t, regions), rapidSets(t, regions)...) {
		if evals >= evalBudget {
			break
		}
		if (kind == kindSelect && len(set) < 2) || (kind != kindSelect && liveCount(set) < 2) {
			continue
		}
		var first outcome
		var firstOrder []conflict.Version
		for _, order := range orders(set) {
			evals++
			o := evalOrdered(r, kind, key, region, order)
			if firstOrder == nil {
				first, firstOrder = o, order
				if o.err != nil && budgetExceeded(o.err) {
					return append(out, finding{SeverityError, fmt.Sprintf("exceeds the memory budget or the size limit on sample input %s: %s",
						describeVersions(order), shortError(o.err))})
				}
				continue
			}
			if (o.err == nil) != (first.err == nil) || o.form != first.form {
				return append(out, finding{SeverityError, fmt.Sprintf("result depends on the order of the siblings: over %s it is %s, over %s it is %s",
					describeVersions(firstOrder), first, describeVersions(order), o)})
			}
		}
		if first.err != nil {
			if firstErr == nil {
				firstErr = first.err
			}
			continue
		}
		evaluated++
		if kind == kindOnRead && !regionWarned {
			evals++
			if o := evalOrdered(r, kind, key, regions[1], firstOrder); o.err != nil || o.form != first.form {
				regionWarned = true
				out = append(out, finding{SeverityWarning, fmt.Sprintf(
					"on_read depends on the evaluating region: over %s it is %s at %s and %s at %s; regions show different values for the same versions",
					describeVersions(firstOrder), first, region, o, regions[1])})
			}
		}
		if kind == kindMerge && !idempotenceChecked {
			n, msg := checkIdempotent(r, key, region, firstOrder, first)
			evals += n
			if msg != "" {
				idempotenceChecked = true
				out = append(out, finding{SeverityError, msg})
			}
		}
	}
	if evaluated == 0 && firstErr != nil {
		out = append(out, finding{SeverityWarning, "convergence not checked: the expression failed on every generated sibling set, e.g. " +
			shortError(firstErr)})
	}
	return out
}

// checkIdempotent checks a merge's result M over vs: merging M with a copy
// of itself (the resolver's own output met again) must give M again
// (arrays compared as sets). A merge that counts (sum, len) fails. It
// returns the evaluations made and a message for a failure.
func checkIdempotent(r *Rule, key, region string, vs []conflict.Version, merged outcome) (int, string) {
	var top int64
	for _, v := range vs {
		top = max(top, v.HLC.Wall)
	}
	m, err := r.evalDoc(kindMerge, r.merge, key, region, vs)
	if err != nil {
		return 1, ""
	}
	mv := conflict.Version{Dot: conflict.Dot{Actor: region, Counter: 1000}, HLC: conflict.HLC{Wall: top + 1000}, Origin: region, Value: m}
	again := mv
	again.Dot, again.HLC = conflict.Dot{Actor: region, Counter: 1001}, conflict.HLC{Wall: top + 2000}
	o := evalOrdered(r, kindMerge, key, region, []conflict.Version{mv, again})
	if o.err == nil && o.form == merged.form {
		return 2, ""
	}
	return 2, fmt.Sprintf("merge is not idempotent: over %s it is %s, but merging that result with a copy of itself gives %s "+
		"(a value counted twice, e.g. sum(...) or len(siblings)?); a merged value met again must merge to itself",
		describeVersions(vs), merged, o)
}
