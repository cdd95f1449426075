package rules

import (
	"cmp"
	"fmt"
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

// Diagnostic is one finding of Lint, located in the rule file.
type Diagnostic struct {
	File     string
	Line     int // 1-based
	Column   int // 1-based, in characters
	Severity Severity
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
func (d Diagnostic) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: %s: ", d.File, d.Line, d.Column, d.Severity)
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

// Lint checks a rule file (a rules: list, or a full region config whose
// other keys are ignored) and returns its findings ordered by position:
//
//   - YAML errors, unknown or repeated keys, non-string values;
//   - everything Compile refuses, expressions located by line and column;
//   - rules that can never match: after a rule whose match is always true,
//     or with the same match as an earlier rule (errors); a list without a
//     catch-all rule (warning);
//   - convergence: select, merge and on_read are evaluated on generated
//     sibling sets (documents built from the fields the expression reads:
//     numbers, strings, arrays, objects, missing fields, tombstones) in
//     every order; a result that depends on the order is an error. Results
//     that differ only in the order of array elements count as equal.
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
	cfg, err := newConfig(opts)
	if err != nil {
		rf.add(SeverityError, rf.rulesKey.Line, rf.rulesKey.Column, "", "", err.Error())
		return sortDiags(rf.diags)
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
	for i, r := range rules {
		if !clean[i] {
			continue
		}
		for _, k := range []struct {
			kind exprKind
			src  string
		}{{kindSelect, r.spec.Select}, {kindMerge, r.spec.Merge}, {kindOnRead, r.spec.OnRead}} {
			if k.src == "" {
				continue
			}
			sev, msg := checkConvergence(r, k.kind, cfg)
			if msg != "" {
				line, col := rf.fieldPos(i, string(k.kind), 0)
				rf.add(sev, line, col, r.spec.Name, string(k.kind), msg)
			}
		}
	}
	return sortDiags(rf.diags)
}

func sortDiags(d []Diagnostic) []Diagnostic {
	slices.SortStableFunc(d, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return d
}

// fieldPos locates a field of rule i: the rune offset inside its value for
// an expression, else the value; the key when the value is missing; the
// rule when the key is.
func (rf *ruleFile) fieldPos(i int, field string, offset int) (int, int) {
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
	if rf.nodes[e.Index].bad[e.Field] {
		return // the field's value was unusable; already reported
	}
	msg := e.Err.Error()
	offset := 0
	if fe := e.ExprError(); fe != nil {
		msg = fe.Message
		offset = runeOffset(rf.specs[e.Index], e.Field, fe.Line, fe.Column)
	}
	line, col := rf.fieldPos(e.Index, e.Field, offset)
	rf.add(SeverityError, line, col, e.Rule, e.Field, msg)
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

// checkReachability reports repeated names, rules that can never match,
// and a list without a catch-all rule.
func (rf *ruleFile) checkReachability(rules []*Rule) {
	names := map[string]int{}
	matches := map[string]int{}
	catchAll := -1
	for i, r := range rules {
		if prev, dup := names[r.spec.Name]; dup && r.spec.Name != "" {
			line, col := rf.fieldPos(i, "name", 0)
			rf.add(SeverityError, line, col, r.spec.Name, "name", fmt.Sprintf("name already used by rule #%d", prev+1))
		} else {
			names[r.spec.Name] = i
		}
		if r.match == nil {
			continue
		}
		line, col := rf.fieldPos(i, "match", 0)
		switch {
		case catchAll >= 0:
			rf.add(SeverityError, line, col, r.spec.Name, "match",
				fmt.Sprintf("rule can never match: rule %q (#%d) before it matches every key", rules[catchAll].spec.Name, catchAll+1))
			continue
		case matches[r.match.Node().String()] > 0:
			prev := matches[r.match.Node().String()] - 1
			rf.add(SeverityError, line, col, r.spec.Name, "match",
				fmt.Sprintf("rule can never match: rule %q (#%d) has the same match", rules[prev].spec.Name, prev+1))
			continue
		}
		matches[r.match.Node().String()] = i + 1
		if b, ok := r.match.Node().(*ast.BoolNode); ok {
			if b.Value {
				catchAll = i
			} else {
				rf.add(SeverityWarning, line, col, r.spec.Name, "match", "match is always false: the rule never applies")
			}
		}
	}
	if catchAll < 0 && len(rules) > 0 {
		last := len(rules) - 1
		line, col := rf.fieldPos(last, "match", 0)
		rf.add(SeverityWarning, line, col, rules[last].spec.Name, "match",
			"no rule matches every key: a key no rule matches is refused; end the list with match: 'true'")
	}
}
