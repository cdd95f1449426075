package rules

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// lintOne lints one rule (plus a catch-all) and returns its findings.
func lintOne(t *testing.T, rule string, opts Options) []Diagnostic {
	t.Helper()
	src := "rules:\n" + rule + "  - name: default\n    match: 'true'\n    strategy: lww\n"
	return Lint([]byte(src), "r.yaml", opts)
}

// TestLintFindsWhatOperatorsGetWrong: each case is one mistake and the
// finding it must produce (severity, field, words of the message).
func TestLintFindsWhatOperatorsGetWrong(t *testing.T) {
	tests := []struct {
		name  string
		rule  string
		opts  Options
		sev   Severity
		field string
		msg   string
	}{
		{"home reads value", "  - name: r\n    match: 'key startsWith \"u/\"'\n    strategy: home_region\n    home: 'value.region ?? \"a\"'\n",
			Options{Regions: []string{"a", "b"}}, SeverityWarning, "home", "different regions"},
		{"merge home reads value", "  - name: r\n    match: 'key startsWith \"u/\"'\n    strategy: custom\n    merge: '{\"tags\": union(map(siblings, #.tags))}'\n    home: 'value.region ?? \"a\"'\n",
			Options{Regions: []string{"a", "b"}}, SeverityWarning, "home", "without a value"},
		{"match fails on some keys", "  - name: r\n    match: 'int(key) > 3'\n    strategy: lww\n",
			Options{}, SeverityWarning, "match", "held under this rule"},
		{"match over the memory budget", "  - name: r\n    match: 'len(map(1..5000, #)) > 0 && key == \"x\"'\n    strategy: lww\n",
			Options{MemoryBudget: 1000}, SeverityError, "match", "memory budget"},
		{"on_read over the memory budget", "  - name: r\n    match: 'key startsWith \"c/\"'\n    strategy: siblings\n    on_read: '{\"n\": len(map(1..5000, #))}'\n",
			Options{MemoryBudget: 1000}, SeverityError, "on_read", "memory budget"},
		{"select over the memory budget", "  - name: r\n    match: 'key startsWith \"c/\"'\n    strategy: custom\n    select: 'len(map(1..5000, #))'\n",
			Options{MemoryBudget: 1000}, SeverityError, "select", "memory budget"},
		{"sum merge counts twice", "  - name: r\n    match: 'key startsWith \"c/\"'\n    strategy: custom\n    merge: '{\"n\": sum(map(siblings, #.n ?? 0))}'\n",
			Options{}, SeverityError, "merge", "not idempotent"},
		{"len merge", "  - name: r\n    match: 'key startsWith \"c/\"'\n    strategy: custom\n    merge: '{\"seen\": len(siblings)}'\n",
			Options{}, SeverityError, "merge", "not idempotent"},
		{"on_read by region", "  - name: r\n    match: 'key startsWith \"c/\"'\n    strategy: siblings\n    on_read: '{\"at\": region, \"n\": len(siblings)}'\n",
			Options{Regions: []string{"a", "b"}}, SeverityWarning, "on_read", "depends on the evaluating region"},
		{"order shows only from five siblings", "  - name: r\n    match: 'key startsWith \"c/\"'\n    strategy: siblings\n    on_read: 'len(siblings) >= 5 ? siblings[0] : {\"n\": len(siblings)}'\n",
			Options{}, SeverityError, "on_read", "depends on the order"},
		{"order shows only with booleans", "  - name: r\n    match: 'key startsWith \"c/\"'\n    strategy: siblings\n    on_read: 'let t = filter(siblings, #.flag == true); len(t) > 0 ? t[0] : {}'\n",
			Options{}, SeverityError, "on_read", "depends on the order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := lintOne(t, tt.rule, tt.opts)
			var found bool
			for _, d := range diags {
				if d.Rule == "r" && d.Field == tt.field && d.Severity == tt.sev && strings.Contains(d.Message, tt.msg) {
					found = true
				} else if d.Severity == SeverityError {
					t.Errorf("unexpected error: %s", d)
				}
			}
			if !found {
				t.Fatalf("want a %s on %s containing %q; got:\n%s", tt.sev, tt.field, tt.msg, render(diags))
			}
		})
	}
}

// TestLintSoundRulesClean: sound expressions of every kind give no
// finding (no false alarm from the generated documents).
func TestLintSoundRulesClean(t *testing.T) {
	src := `regions: [us-east, eu-west]
rules:
  - name: homed
    match: 'key startsWith "u/"'
    strategy: home_region
    home: 'key startsWith "u/eu/" ? "eu-west" : "us-east"'
  - name: carts
    match: 'key startsWith "cart/"'
    strategy: siblings
    on_read: '{"items": union(map(siblings, #.items))}'
  - name: stock
    match: 'key startsWith "stock/"'
    strategy: custom
    select: 'version.value.updated_at'
  - name: newest
    match: 'key startsWith "s/"'
    strategy: custom
    merge: 'merge(map(sortBy(filter(versions, !#.deleted), #.hlc), #.value))'
  - name: tags
    match: 'key startsWith "t/"'
    strategy: custom
    merge: '{"tags": sort(union(map(siblings, #.tags)))}'
    resolver: eu-west
  - name: top
    match: 'key startsWith "m/"'
    strategy: siblings
    on_read: 'maxBy(siblings, "n") ?? {}'
  - name: numbered
    match: 'key matches "^[0-9]+$" && int(key) > 3'
    strategy: lww
  - name: default
    match: 'true'
    strategy: lww
`
	if diags := Lint([]byte(src), "r.yaml", Options{}); len(diags) != 0 {
		t.Fatalf("findings on sound rules:\n%s", render(diags))
	}
}

// TestLintShadowedRules: a rule inside an earlier, broader key test can
// never match; a narrower rule first is fine.
func TestLintShadowedRules(t *testing.T) {
	tests := []struct {
		name, earlier, later string
		shadowed             bool
	}{
		{"broader prefix", `key startsWith "cart"`, `key startsWith "cart/eu/"`, true},
		{"same prefix other words", `key startsWith "cart/"`, `key startsWith "cart/" && key endsWith "x"`, true},
		{"exact key under a prefix", `key startsWith "cart/"`, `key == "cart/1"`, true},
		{"keys in a list", `key startsWith "a/" || key startsWith "b/"`, `key in ["a/1", "b/2"]`, true},
		{"either prefix", `key startsWith "a/" || key startsWith "b/"`, `key startsWith "b/x"`, true},
		{"narrower first", `key startsWith "cart/eu/"`, `key startsWith "cart"`, false},
		{"disjoint", `key startsWith "cart/"`, `key startsWith "user/"`, false},
		{"one key outside", `key startsWith "a/"`, `key in ["a/1", "b/2"]`, false},
		{"earlier needs more", `key startsWith "a/" && key endsWith "x"`, `key startsWith "a/b"`, false},
		{"later is wider by or", `key startsWith "a/"`, `key startsWith "a/b" || key startsWith "c/"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fmt.Sprintf("rules:\n  - {name: first, match: '%s', strategy: lww}\n  - {name: second, match: '%s', strategy: siblings}\n  - {name: default, match: 'true', strategy: lww}\n",
				tt.earlier, tt.later)
			diags := Lint([]byte(src), "r.yaml", Options{})
			got := false
			for _, d := range findDiag(diags, "second", "match") {
				if d.Severity == SeverityError && strings.Contains(d.Message, `rule "first" (#1) before it matches`) {
					got = true
				}
			}
			if got != tt.shadowed {
				t.Fatalf("shadowed %v, want %v:\n%s", got, tt.shadowed, render(diags))
			}
		})
	}
}

// TestCheckAgreesWithLint: the checks a region runs on its rules (Check,
// without a file) find exactly what lint finds in the same rules written
// as a file.
func TestCheckAgreesWithLint(t *testing.T) {
	src, err := os.ReadFile("../configs/rules/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{string(src), `rules:
  - {name: a, match: 'key startsWith "c"', strategy: siblings, on_read: 'siblings[0]'}
  - {name: b, match: 'key startsWith "c/x"', strategy: lww}
  - {name: c, match: 'int(key) > 3', strategy: custom, merge: '{"n": sum(map(siblings, #.n ?? 0))}'}
  - {name: d, match: 'key startsWith "h/"', strategy: home_region, home: 'value.r ?? "us-east"'}
  - {name: e, match: 'key == "z"', strategy: sibling}
`}
	for i, f := range files {
		opts := Options{Regions: []string{"us-east", "eu-west", "ap-south"}}
		specs, err := ParseRules([]byte(f), "f.yaml")
		if err != nil {
			t.Fatal(err)
		}
		fromFile, fromSpecs := Lint([]byte(f), "f.yaml", opts), Check(specs, opts)
		byRule := func(a, b Diagnostic) int {
			return cmp.Or(strings.Compare(a.Rule, b.Rule), strings.Compare(a.Field, b.Field), strings.Compare(string(a.Severity), string(b.Severity)))
		}
		slices.SortStableFunc(fromFile, byRule)
		slices.SortStableFunc(fromSpecs, byRule)
		if len(fromFile) != len(fromSpecs) {
			t.Fatalf("file %d: lint found %d, Check %d:\n%s\n--\n%s", i, len(fromFile), len(fromSpecs), render(fromFile), render(fromSpecs))
		}
		for j := range fromFile {
			a, b := fromFile[j], fromSpecs[j]
			if a.Severity != b.Severity || a.Rule != b.Rule || a.Field != b.Field || !strings.HasPrefix(b.Message, a.Message) || b.Index < 0 {
				t.Errorf("file %d finding %d: lint %s\nCheck %s (index %d)", i, j, a, b, b.Index)
			}
		}
		if i == 1 && !HasErrors(fromSpecs) {
			t.Fatal("no errors in the bad rules")
		}
	}
}

func render(diags []Diagnostic) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(d.String() + "\n")
	}
	return b.String()
}

// BenchmarkLintExample measures lint of the example rule set (a typical
// set: five rules, three of them with expressions to check).
func BenchmarkLintExample(b *testing.B) {
	src, err := os.ReadFile("../configs/rules/rules.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		Lint(src, "rules.yaml", Options{})
	}
}
