package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
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

// genSets returns the generated frontiers: 2, 3 and 4 versions of every
// family, and a 3-version set with a tombstone.
func genSets(t pathTrie, regions []string) [][]conflict.Version {
	if len(regions) == 0 {
		regions = []string{"r1", "r2", "r3", "r4"}
	}
	var sets [][]conflict.Version
	for _, fam := range docFamilies {
		for _, size := range []int{2, 3, 4} {
			for _, tomb := range []bool{false, true} {
				if tomb && size != 3 {
					continue
				}
				set := make([]conflict.Version, size)
				for i := range size {
					origin := regions[i%len(regions)]
					v := conflict.Version{
						Dot:    conflict.Dot{Actor: origin, Counter: uint64(i + 1)},
						HLC:    conflict.HLC{Wall: 1_700_000_000_000 + int64(i)*1000},
						Origin: origin,
					}
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

// checkConvergence evaluates one expression of r on generated frontiers
// in every order. It returns an error message when the result depends on
// the order, a warning when no generated frontier could be evaluated, and
// "" when the expression looks order-independent.
func checkConvergence(r *Rule, kind exprKind, cfg *config) (Severity, string) {
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
		return "", ""
	}
	t := docPaths(prog.Node())
	region := "r1"
	if len(cfg.regions) > 0 {
		region = cfg.regions[0]
	}
	key := "lint/key"
	evaluated := 0
	var firstErr error
	for _, set := range genSets(t, cfg.regions) {
		if kind != kindSelect && liveCount(set) < 2 {
			continue
		}
		var first outcome
		var firstOrder []conflict.Version
		var problem string
		permutations(set, func(order []conflict.Version) bool {
			o := evalOrdered(r, kind, key, region, order)
			if firstOrder == nil {
				first, firstOrder = o, order
				return true
			}
			if (o.err == nil) != (first.err == nil) || o.form != first.form {
				problem = fmt.Sprintf("result depends on the order of the siblings: over %s it is %s, over %s it is %s",
					describeVersions(firstOrder), first, describeVersions(order), o)
				return false
			}
			return true
		})
		if problem != "" {
			return SeverityError, problem
		}
		if first.err == nil {
			evaluated++
		} else if firstErr == nil {
			firstErr = first.err
		}
	}
	if evaluated == 0 && firstErr != nil {
		return SeverityWarning, "convergence not checked: the expression failed on every generated sibling set, e.g. " +
			shortError(firstErr)
	}
	return "", ""
}
