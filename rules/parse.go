package rules

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/internal/schema"
)

// specFields maps each config key of Spec (its yaml tag) to the field
// index, so the parser follows spec.go.
var specFields = func() map[string]int {
	out := map[string]int{}
	for _, f := range schema.Fields(reflect.TypeFor[Spec](), "yaml") {
		out[f.Key] = f.Index
	}
	return out
}()

// knownKeys lists the config keys of a rule in Spec order, for messages.
func knownKeys() string {
	var keys []string
	for _, f := range schema.Fields(reflect.TypeFor[Spec](), "yaml") {
		keys = append(keys, f.Key)
	}
	return strings.Join(keys, ", ")
}

// ruleNodes are the YAML nodes of one rule, for positions.
type ruleNodes struct {
	bad    map[string]bool       // keys with a structural error already reported
	rule   *yaml.Node            // the rule's mapping
	keys   map[string]*yaml.Node // config key -> key node
	values map[string]*yaml.Node // config key -> value node
}

// ruleFile is a rule file parsed with positions.
type ruleFile struct {
	filename string
	lines    []string
	specs    []Spec
	nodes    []ruleNodes
	// rulesKey is the `rules:` key node (nil when absent).
	rulesKey *yaml.Node
	// regions are the keys of a region config's regions: map, in order.
	regions []string
	// noRules is set when the file has no rules: key.
	noRules bool
	diags   []Diagnostic
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlProblem splits a YAML error into the line it names (0 if none) and
// its message.
func yamlProblem(err error) (int, string) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, msg[len(m[0]):]
	}
	return 0, strings.TrimPrefix(msg, "yaml: ")
}

// yamlErrorLine finds the line a YAML error is really on. The parser often
// names the line where the enclosing block starts ("did not find expected
// '-' indicator" on the rules: line for a mis-indented key much further
// down), so the line is the first one at which the document, cut there,
// fails with the same message. Files over 2000 lines keep the parser's
// line.
func yamlErrorLine(lines []string, reported int, msg string) int {
	if len(lines) <= 2000 {
		for k := 1; k <= len(lines); k++ {
			var n yaml.Node
			err := yaml.Unmarshal([]byte(strings.Join(lines[:k], "\n")), &n)
			if err == nil {
				continue
			}
			if _, m := yamlProblem(err); m == msg {
				return k
			}
		}
	}
	return max(reported, 1)
}

// parseRuleFile reads a rule file: YAML with a top-level rules: list,
// possibly inside a full region config (other top-level keys are
// ignored, except regions, whose names are collected). Structural
// problems become diagnostics; the specs that could be read are returned.
func parseRuleFile(src []byte, filename string) *ruleFile {
	rf := &ruleFile{filename: filename, lines: strings.Split(string(src), "\n")}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line, msg := yamlProblem(err)
		rf.add(SeverityError, yamlErrorLine(rf.lines, line, msg), 1, "", "", msg)
		return rf
	}
	if len(doc.Content) == 0 {
		rf.add(SeverityError, 1, 1, "", "", "empty file: want a rules: list")
		return rf
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		rf.add(SeverityError, root.Line, root.Column, "", "", "want a mapping with a rules: list at the top level")
		return rf
	}
	var rules *yaml.Node
	var near *yaml.Node // a top-level key that looks like a misspelt rules:
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "rules":
			rf.rulesKey, rules = k, v
		case "regions":
			rf.regions = regionNames(v)
		default:
			if near == nil && didYouMean(strings.ToLower(k.Value), []string{"rules"}) != "" || strings.EqualFold(k.Value, "rules") {
				near = k
			}
		}
	}
	if rules == nil {
		rf.noRules = true
		// Never "no rules, so every key lww": a renamed or missing key
		// would silently replace the operator's rules.
		if near != nil {
			rf.add(SeverityError, near.Line, near.Column, "", "", fmt.Sprintf("no rules: key; found %q (did you mean \"rules\"?)", near.Value))
		} else {
			rf.add(SeverityError, root.Line, root.Column, "", "", "no rules: key: a rule file needs a rules: list (to keep every key last-write-wins, list one rule: {name: default, match: 'true', strategy: lww})")
		}
		return rf
	}
	if rules.Kind != yaml.SequenceNode {
		rf.add(SeverityError, rules.Line, rules.Column, "", "", "rules must be a list of rules")
		return rf
	}
	for i, item := range rules.Content {
		rf.parseRule(i, item)
	}
	return rf
}

// regionNames reads the names of a regions: map (or list).
func regionNames(v *yaml.Node) []string {
	var out []string
	switch v.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			out = append(out, v.Content[i].Value)
		}
	case yaml.SequenceNode:
		for _, n := range v.Content {
			if n.Kind == yaml.ScalarNode {
				out = append(out, n.Value)
			}
		}
	}
	return out
}

// parseRule reads one rule mapping into a Spec; unknown and repeated keys
// and non-scalar values are diagnosed.
func (rf *ruleFile) parseRule(i int, item *yaml.Node) {
	nodes := ruleNodes{bad: map[string]bool{}, rule: item, keys: map[string]*yaml.Node{}, values: map[string]*yaml.Node{}}
	var spec Spec
	if item.Kind != yaml.MappingNode {
		rf.add(SeverityError, item.Line, item.Column, "", "", fmt.Sprintf("rule #%d must be a mapping of %s", i+1, knownKeys()))
		rf.specs = append(rf.specs, spec)
		rf.nodes = append(rf.nodes, nodes)
		return
	}
	for j := 0; j+1 < len(item.Content); j += 2 {
		if k := item.Content[j]; k.Value == "name" {
			spec.Name = item.Content[j+1].Value
		}
	}
	sv := reflect.ValueOf(&spec).Elem()
	for j := 0; j+1 < len(item.Content); j += 2 {
		k, v := item.Content[j], item.Content[j+1]
		field, ok := specFields[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown field %q%s (known: %s)", k.Value, didYouMean(k.Value, slices.Collect(maps.Keys(specFields))), knownKeys())
			rf.add(SeverityError, k.Line, k.Column, spec.Name, k.Value, msg)
			continue
		}
		if _, dup := nodes.keys[k.Value]; dup {
			rf.add(SeverityError, k.Line, k.Column, spec.Name, k.Value, fmt.Sprintf("field %q repeated", k.Value))
			continue
		}
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		nodes.keys[k.Value], nodes.values[k.Value] = k, v
		if v.Kind != yaml.ScalarNode {
			nodes.bad[k.Value] = true
			rf.add(SeverityError, v.Line, v.Column, spec.Name, k.Value, fmt.Sprintf("%s must be a string", k.Value))
			continue
		}
		if v.Tag == "!!null" {
			continue
		}
		sv.Field(field).SetString(v.Value)
	}
	rf.specs = append(rf.specs, spec)
	rf.nodes = append(rf.nodes, nodes)
}

// add records a diagnostic at a 1-based line and column.
func (rf *ruleFile) add(sev Severity, line, col int, rule, field, msg string) {
	d := Diagnostic{File: rf.filename, Line: line, Column: col, Severity: sev, Index: -1, Rule: rule, Field: field, Message: msg}
	if line >= 1 && line <= len(rf.lines) {
		d.Source = strings.TrimRight(rf.lines[line-1], "\r")
	}
	rf.diags = append(rf.diags, d)
}

// ParseRules reads the rules: list of a rule file (or of a full region
// config, whose other keys are ignored) strictly: an unknown or repeated
// key, a non-string value, a YAML error or a file without a rules: key
// (missing, or misspelt) fails with every problem found, each as
// file:line:col with the source line and a caret.
// Expressions are not compiled here; see Compile and Lint.
func ParseRules(src []byte, filename string) ([]Spec, error) {
	rf := parseRuleFile(src, filename)
	var errs []error
	for _, d := range rf.diags {
		if d.Severity == SeverityError {
			errs = append(errs, errors.New(d.String()))
		}
	}
	if rf.noRules {
		return nil, fmt.Errorf("%w: %w", ErrNoRules, errors.Join(errs...))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return slices.Clone(rf.specs), nil
}

// scalarPos maps a rune offset inside a scalar's value to its 1-based
// line and column in the source, following YAML's quoting, escapes, block
// indentation and line folding. It is exact for single-line scalars and a
// close approximation otherwise.
func scalarPos(lines []string, n *yaml.Node, offset int) (int, int) {
	value := []rune(n.Value)
	l, c := n.Line-1, n.Column-1
	block := n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
	single := n.Style&yaml.SingleQuotedStyle != 0
	double := n.Style&yaml.DoubleQuotedStyle != 0
	indent := 0
	if block {
		l, c = n.Line, 0 // content starts on the line after the indicator
		for k := l; k < len(lines); k++ {
			if t := strings.TrimLeft(lines[k], " "); t != "" {
				indent = len(lines[k]) - len(t)
				break
			}
		}
		c = skipIndent(lines, l, indent)
	} else if single || double {
		c++
	}
	for vi := 0; vi < offset && l < len(lines); {
		src := []rune(lines[l])
		if c >= len(src) {
			l++
			if l >= len(lines) {
				break
			}
			if block {
				c = skipIndent(lines, l, indent)
			} else {
				c = len(lines[l]) - len(strings.TrimLeft(lines[l], " \t"))
			}
			if vi < len(value) && (value[vi] == '\n' || value[vi] == ' ') {
				vi++
			}
			continue
		}
		switch {
		case single && src[c] == '\'' && c+1 < len(src) && src[c+1] == '\'':
			c += 2
		case double && src[c] == '\\' && c+1 < len(src):
			c += escapeLen(src[c+1])
		default:
			c++
		}
		vi++
	}
	return l + 1, c + 1
}

// skipIndent returns the column after at most indent leading spaces.
func skipIndent(lines []string, l, indent int) int {
	if l >= len(lines) {
		return 0
	}
	c := 0
	for c < indent && c < len(lines[l]) && lines[l][c] == ' ' {
		c++
	}
	return c
}

// escapeLen is the source length of a double-quoted escape by its letter.
func escapeLen(r rune) int {
	switch r {
	case 'x':
		return 4
	case 'u':
		return 6
	case 'U':
		return 10
	}
	return 2
}
