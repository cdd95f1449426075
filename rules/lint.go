package rules

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"go.yaml.in/yaml/v3"
)

// Severity grades a diagnostic: errors make `geogate rules lint` fail,
// warnings are advice.
type Severity string

// The severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Diagnostic is one finding of Lint or Check, located in the rule file
// when there is one.
type Diagnostic struct {
	File     string
	Line     int // 1-based; 0 when the rules came without a file (Check)
	Column   int // 1-based, in characters
	Severity Severity
	Index    int    // the rule's position in the list, from 0; -1 for the file
	Rule     string // rule name, "" for file-level findings
	Field    string // config key, "" for the rule or file as a whole
	Message  string
	Source   string // the source line, for the caret display
}

// String renders the diagnostic as
//
//	rules.yaml:7:22: error: rule "carts": on_read: unknown name foo
//	    on_read: '{"items": foo}'
//	                        ^
//
// or, without a location (Check), as `error: rule "carts": on_read: ...`.
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.Line > 0 {
		fmt.Fprintf(&b, "%s:%d:%d: ", d.File, d.Line, d.Column)
	} else if d.File != "" {
		fmt.Fprintf(&b, "%s: ", d.File)
	}
	fmt.Fprintf(&b, "%s: ", d.Severity)
	if d.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", d.Rule)
	}
	if d.Field != "" {
		fmt.Fprintf(&b, "%s: ", d.Field)
	}
	b.WriteString(d.Message)
	if d.Source != "" {
		src := strings.ReplaceAll(d.Source, "\t", " ")
		fmt.Fprintf(&b, "\n    %s\n    %s^", src, strings.Repeat(" ", max(d.Column-1, 0)))
	}
	return b.String()
}

// HasErrors reports whether any diagnostic is an error.
func HasErrors(diags []Diagnostic) bool {
	return slices.ContainsFunc(diags, func(d Diagnostic) bool { return d.Severity == SeverityError })
}

// Errors returns the error diagnostics.
func Errors(diags []Diagnostic) []Diagnostic {
	return slices.DeleteFunc(slices.Clone(diags), func(d Diagnostic) bool { return d.Severity != SeverityError })
}

// Lint checks a rule file (a rules: list, or a full region config whose
// other keys are ignored) and returns its findings ordered by position.
// The checks (the same as Check's, located in the file):
//
//   - YAML errors (on the line they are on), unknown keys (with the
//     nearest known one), repeated keys, non-string values, a file
//     without a rules: key;
//   - everything Compile refuses, expressions located by line and column;
//   - rules that can never match: after a rule whose match is always true,
//     with the same match as an earlier rule, or inside an earlier rule's
//     broader key test (`key startsWith "cart"` before `key startsWith
//     "cart/eu/"`) (errors); a list without a catch-all rule (warning);
//   - a match that fails at run time on sample keys (warning: such keys
//     are held as siblings), or exceeds the memory budget (error);
//   - a home that reads value (warning: writes of one key can be placed
//     in different regions);
//   - convergence: select, merge and on_read are evaluated on generated
//     frontiers of 1 to 8 versions (documents built from the fields the
//     expression reads, by fixed families and by rapid generators: numbers
//     with ties, strings, booleans, arrays, objects, missing fields, nulls,
//     tombstones) in many orders (every order up to 4 versions); a result
//     that depends on the order is an error, results that differ only in
//     the order of array elements count as equal. A merge must be
//     idempotent: merging its own result again, alone or with any version
//     it merged, must give the same result (error). An on_read whose
//     result depends on the evaluating region is a warning. An expression
//     that exceeds the memory budget or the result limit on this input is
//     an error.
//
// When opts.Regions is empty and the file is a region config, the names
// of its regions: map are used. Lint never fails: problems are findings.
func Lint(src []byte, filename string, opts Options) []Diagnostic {
	rf := parseRuleFile(src, filename)
	if len(rf.specs) == 0 {
		if rf.rulesKey != nil && !HasErrors(rf.diags) {
			rf.add(SeverityError, rf.rulesKey.Line, rf.rulesKey.Column, "", "", "the rule list is empty")
		}
		return sortDiags(rf.diags)
	}
	if len(opts.Regions) == 0 {
		opts.Regions = rf.regions
	}
	rf.check(opts)
	return sortDiags(rf.diags)
}

// Check runs Lint's checks on a rule list given as specs, without a file:
// the findings carry the rule's Index and Field instead of a line. A
// region loads only a rule list without errors (gateway: at start and on
// every reload), so a list that passes `geogate rules lint` is exactly one
// a region accepts.
func Check(specs []Spec, opts Options) []Diagnostic {
	rf := &ruleFile{specs: specs}
	if len(specs) == 0 {
		rf.add(SeverityError, 0, 0, "", "", "the rule list is empty")
		return rf.diags
	}
	rf.check(opts)
	return sortDiags(rf.diags)
}

// check runs every check on rf.specs under opts.
func (rf *ruleFile) check(opts Options) {
	cfg, err := newConfig(opts)
	if err != nil {
		line, col := 0, 0
		if rf.rulesKey != nil {
			line, col = rf.rulesKey.Line, rf.rulesKey.Column
		}
		rf.add(SeverityError, line, col, "", "", err.Error())
		return
	}
	rules := make([]*Rule, len(rf.specs))
	clean := make([]bool, len(rf.specs))
	for i, spec := range rf.specs {
		r, errs := compileRule(i, spec, cfg)
		rules[i], clean[i] = r, len(errs) == 0
		for _, e := range errs {
			rf.addCompileError(e)
		}
	}
	rf.checkReachability(rules)
	keys := sampleKeys(rules)
	for i, r := range rules {
		if !clean[i] {
			continue
		}
		rf.checkMatch(r, keys)
		rf.checkHome(r)
		for _, k := range []struct {
			kind exprKind
			src  string
		}{{kindSelect, r.spec.Select}, {kindMerge, r.spec.Merge}, {kindOnRead, r.spec.OnRead}} {
			if strings.TrimSpace(k.src) == "" {
				continue
			}
			for _, f := range checkConvergence(r, k.kind, cfg) {
				rf.addRule(i, f.severity, string(k.kind), 0, f.message)
			}
		}
	}
}

func sortDiags(d []Diagnostic) []Diagnostic {
	slices.SortStableFunc(d, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column), cmp.Compare(a.Index, b.Index))
	})
	return d
}

// fieldPos locates a field of rule i: the rune offset inside its value for
// an expression, else the value; the key when the value is missing; the
// rule when the key is.
func (rf *ruleFile) fieldPos(i int, field string, offset int) (int, int) {
	if i < 0 || i >= len(rf.nodes) {
		return 0, 0 // no file (Check)
	}
	n := rf.nodes[i]
	if v := n.values[field]; v != nil {
		if v.Kind == yaml.ScalarNode {
			return scalarPos(rf.lines, v, offset)
		}
		return v.Line, v.Column
	}
	if k := n.keys[field]; k != nil {
		return k.Line, k.Column
	}
	if n.rule != nil {
		return n.rule.Line, n.rule.Column
	}
	return 1, 1
}

// addCompileError turns a compile error into a located diagnostic.
func (rf *ruleFile) addCompileError(e *CompileError) {
	if e.Index < len(rf.nodes) && rf.nodes[e.Index].bad[e.Field] {
		return // the field's value was unusable; already reported
	}
	msg := e.Err.Error()
	offset := 0
	if fe := e.ExprError(); fe != nil {
		msg = fe.Message
		if fe.Line > 0 && len(rf.nodes) == 0 {
			msg += fmt.Sprintf(" (at line %d, column %d of the expression)", fe.Line, fe.Column+1)
		}
		offset = runeOffset(rf.specs[e.Index], e.Field, fe.Line, fe.Column)
	}
	rf.addRule(e.Index, SeverityError, e.Field, offset, msg)
}

// addRule records a finding about a field of rule i, located at the rune
// offset inside the field's value (see fieldPos).
func (rf *ruleFile) addRule(i int, sev Severity, field string, offset int, msg string) {
	line, col := rf.fieldPos(i, field, offset)
	name := ""
	if i >= 0 && i < len(rf.specs) {
		name = rf.specs[i].Name
	}
	rf.add(sev, line, col, name, field, msg)
	rf.diags[len(rf.diags)-1].Index = i
}

// runeOffset converts an expression's 1-based line and 0-based column to
// a rune offset in the field's source.
func runeOffset(spec Spec, field string, line, col int) int {
	var src string
	switch field {
	case "match":
		src = spec.Match
	case "home":
		src = spec.Home
	case "select":
		src = spec.Select
	case "merge":
		src = spec.Merge
	case "on_read":
		src = spec.OnRead
	}
	off, l := 0, 1
	for _, r := range src {
		if l == line {
			break
		}
		off++
		if r == '\n' {
			l++
		}
	}
	return off + col
}

// checkReachability reports repeated names, rules that can never match
// (after a catch-all, with the same match as an earlier rule, or inside
// an earlier rule's broader key test), and a list without a catch-all.
func (rf *ruleFile) checkReachability(rules []*Rule) {
	names := map[string]int{}
	matches := map[string]int{}
	catchAll := -1
	for i, r := range rules {
		if prev, dup := names[r.spec.Name]; dup && r.spec.Name != "" {
			rf.addRule(i, SeverityError, "name", 0, fmt.Sprintf("name %q is already used by rule #%d; names must be unique", r.spec.Name, prev+1))
		} else {
			names[r.spec.Name] = i
		}
		if r.match == nil {
			continue
		}
		never := func(format string, args ...any) {
			rf.addRule(i, SeverityError, "match", 0, "rule can never match: "+fmt.Sprintf(format, args...))
		}
		switch text := r.match.Node().String(); {
		case catchAll >= 0:
			never("rule %q (#%d) before it matches every key", rules[catchAll].spec.Name, catchAll+1)
			continue
		case matches[text] > 0:
			prev := matches[text] - 1
			never("rule %q (#%d) has the same match", rules[prev].spec.Name, prev+1)
			continue
		default:
			if prev, why := shadowedBy(rules[:i], r); prev != nil {
				never("rule %q (#%d) before it matches %s, which includes every key this rule matches; put the narrower rule first",
					prev.spec.Name, prev.index+1, why)
				continue
			}
			matches[text] = i + 1
		}
		if b, ok := r.match.Node().(*ast.BoolNode); ok {
			if b.Value {
				catchAll = i
			} else {
				rf.addRule(i, SeverityWarning, "match", 0, "match is always false: the rule never applies")
			}
		}
	}
	if catchAll < 0 && len(rules) > 0 {
		rf.addRule(len(rules)-1, SeverityWarning, "match",
			0, "no rule matches every key: a key no rule matches is refused; end the list with match: 'true'")
	}
}

// sampleKeys are the keys a match expression is tried on: plain and odd
// keys, and for every string literal of every rule's match, the literal
// itself and it extended on both sides.
func sampleKeys(rules []*Rule) []string {
	keys := []string{"", "a", "7", "-1", "3.5", "user/1", "cart/eu/42", "a b", `quo"te`, "ключ/ü", strings.Repeat("k", 1024)}
	for _, r := range rules {
		if r.match == nil {
			continue
		}
		n := r.match.Node()
		ast.Walk(&n, stringCollector(func(s string) {
			keys = append(keys, s, s+"x", s+"/1", "x"+s)
		}))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// stringCollector calls its function for every string literal of a tree.
type stringCollector func(string)

// Visit implements ast.Visitor.
func (f stringCollector) Visit(node *ast.Node) {
	if s, ok := (*node).(*ast.StringNode); ok {
		f(s.Value)
	}
}

// checkMatch runs a rule's match on the sample keys (matches that the
// keyTest compiler took cannot fail): one exceeding the memory budget is
// an error, one failing otherwise a warning (such keys are held as
// siblings under the rule).
func (rf *ruleFile) checkMatch(r *Rule, keys []string) {
	if r.matchKey != nil {
		return
	}
	for _, k := range keys {
		_, err := r.matches(k)
		if err == nil {
			continue
		}
		if budgetExceeded(err) {
			rf.addRule(r.index, SeverityError, "match", 0, fmt.Sprintf("exceeds the memory budget on sample key %q: %s", truncate(k, 40), shortError(err)))
			return
		}
		rf.addRule(r.index, SeverityWarning, "match", 0, fmt.Sprintf(
			"fails at run time for key %q (%s); such keys are held under this rule, every version kept as siblings: "+
				"guard the expression (e.g. key matches \"^[0-9]+$\" && int(key) > 3)", truncate(k, 40), shortError(err)))
		return
	}
}

// checkHome warns about a home that reads value, and reports one that
// exceeds the memory budget on sample documents.
func (rf *ruleFile) checkHome(r *Rule) {
	if r.home == nil {
		return
	}
	if readsIdentifier(r.home.Node(), "value") {
		msg := "home reads value: two writes of one key with different documents can be placed in different regions; " +
			"each of those homes accepts its own write, and the key gets concurrent versions, resolved like a conflict " +
			"(by the fallback, lww when it is reject). Derive the home from the key alone to give every key one home."
		if r.strategy == StrategyCustom {
			msg = "home reads value, but the region that merges is chosen without a value (value is null there): " +
				"derive the home from the key alone"
		}
		rf.addRule(r.index, SeverityWarning, "home", 0, msg)
	}
	t := docPaths(r.home.Node())
	for i, fam := range docFamilies {
		doc := genDoc(t, fam, i)
		raw, err := encodeDoc(doc)
		if err != nil {
			continue
		}
		if _, err := r.Home("lint/key", raw); err != nil && budgetExceeded(err) {
			rf.addRule(r.index, SeverityError, "home", 0, "exceeds the memory budget on sample input: "+shortError(err))
			return
		}
	}
}

// readsIdentifier reports whether an expression names the variable id.
func readsIdentifier(n ast.Node, id string) bool {
	found := false
	ast.Walk(&n, identFinder{id: id, found: &found})
	return found
}

type identFinder struct {
	id    string
	found *bool
}

// Visit implements ast.Visitor.
func (f identFinder) Visit(node *ast.Node) {
	if x, ok := (*node).(*ast.IdentifierNode); ok && x.Value == f.id {
		*f.found = true
	}
}

// budgetExceeded reports whether an evaluation failed on a resource
// budget: expr's memory budget, or the input or result size limit.
func budgetExceeded(err error) bool {
	return errors.Is(err, ErrTooLarge) || strings.Contains(err.Error(), "memory budget exceeded")
}

// keySet describes the keys a match expression holds for, for shadowing:
// keys with a prefix, one key, or any key (nil parts for "unknown").
type keySet struct {
	prefix *string
	exact  []string
	any    bool
	and    []keySet // all of them hold
	or     []keySet // one of them holds
	// partial: an && with a part that is not a key test; the set is
	// only known to lie inside the parts given.
	partial bool
}

// describeKeys turns a match tree into a keySet, or ok=false when the
// expression is not a plain test of key.
func describeKeys(n ast.Node) (keySet, bool) {
	switch x := n.(type) {
	case *ast.BoolNode:
		return keySet{any: x.Value}, x.Value
	case *ast.BinaryNode:
		switch x.Operator {
		case "&&", "and", "||", "or":
			l, lok := describeKeys(x.Left)
			r, rok := describeKeys(x.Right)
			if x.Operator == "&&" || x.Operator == "and" {
				switch {
				case lok && rok:
					return keySet{and: []keySet{l, r}}, true
				case lok:
					return keySet{and: []keySet{l}, partial: true}, true // a subset of l
				case rok:
					return keySet{and: []keySet{r}, partial: true}, true
				}
				return keySet{}, false
			}
			if lok && rok {
				return keySet{or: []keySet{l, r}}, true
			}
			return keySet{}, false
		}
		if id, ok := x.Left.(*ast.IdentifierNode); !ok || id.Value != "key" {
			return keySet{}, false
		}
		if lit, ok := x.Right.(*ast.StringNode); ok {
			switch x.Operator {
			case "startsWith":
				p := lit.Value
				return keySet{prefix: &p}, true
			case "==":
				return keySet{exact: []string{lit.Value}}, true
			}
		}
		if x.Operator == "in" {
			if c, ok := x.Right.(*ast.ConstantNode); ok {
				if set, ok := c.Value.(map[string]struct{}); ok {
					return keySet{exact: slices.Sorted(maps.Keys(set))}, true
				}
			}
		}
	}
	return keySet{}, false
}

// coveredBy reports whether every key of s satisfies the earlier rule's
// key test.
func (s keySet) coveredBy(test keyTest, wider keySet, widerOK bool) bool {
	switch {
	case len(s.and) > 0:
		return slices.ContainsFunc(s.and, func(p keySet) bool { return p.coveredBy(test, wider, widerOK) })
	case len(s.or) > 0:
		return !slices.ContainsFunc(s.or, func(p keySet) bool { return !p.coveredBy(test, wider, widerOK) })
	case len(s.exact) > 0:
		return !slices.ContainsFunc(s.exact, func(k string) bool { return !test(k) })
	case s.prefix != nil:
		return widerOK && wider.coversPrefix(*s.prefix)
	}
	return false
}

// coversPrefix reports whether every key starting with p is in s.
func (s keySet) coversPrefix(p string) bool {
	switch {
	case s.partial:
		return false
	case s.any:
		return true
	case s.prefix != nil:
		return strings.HasPrefix(p, *s.prefix)
	case len(s.or) > 0:
		return slices.ContainsFunc(s.or, func(q keySet) bool { return q.coversPrefix(p) })
	case len(s.and) > 0:
		return !slices.ContainsFunc(s.and, func(q keySet) bool { return !q.coversPrefix(p) })
	}
	return false
}

// shadowedBy returns the first earlier rule whose key test holds for every
// key r's match can hold for, and a description of that test.
func shadowedBy(earlier []*Rule, r *Rule) (*Rule, string) {
	mine, ok := describeKeys(r.match.Node())
	if !ok {
		return nil, ""
	}
	for _, e := range earlier {
		if e.matchKey == nil || e.match == nil {
			continue
		}
		wider, wok := describeKeys(e.match.Node())
		if _, isBool := e.match.Node().(*ast.BoolNode); isBool {
			continue // catch-alls are reported as such
		}
		if mine.coveredBy(e.matchKey, wider, wok) {
			return e, "`" + e.spec.Match + "`"
		}
	}
	return nil, ""
}
