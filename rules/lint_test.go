package rules

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// findDiag returns the diagnostics for a rule and field.
func findDiag(diags []Diagnostic, rule, field string) []Diagnostic {
	var out []Diagnostic
	for _, d := range diags {
		if d.Rule == rule && d.Field == field {
			out = append(out, d)
		}
	}
	return out
}

func TestLintCompileErrorPosition(t *testing.T) {
	src := `rules:
  - name: plain
    match: key startsWith "a/" && bogus
    strategy: lww
  - name: single
    match: 'key startsWith ''b/'' && bogus'
    strategy: lww
  - name: double
    match: "key startsWith \"c/\" && bogus"
    strategy: lww
  - name: block
    match: |
      key startsWith "d/"
        && bogus
    strategy: lww
  - name: default
    match: 'true'
    strategy: lww
`
	diags := Lint([]byte(src), "r.yaml", Options{})
	tests := []struct {
		rule      string
		line, col int
	}{
		{"plain", 3, 35},
		{"single", 6, 38},
		{"double", 9, 38},
		{"block", 14, 12},
	}
	lines := strings.Split(src, "\n")
	for _, tt := range tests {
		ds := findDiag(diags, tt.rule, "match")
		if len(ds) != 1 {
			t.Fatalf("%s: diagnostics %v", tt.rule, ds)
		}
		d := ds[0]
		if d.Line != tt.line || d.Column != tt.col || d.Severity != SeverityError {
			t.Errorf("%s: at %d:%d (%s), want %d:%d", tt.rule, d.Line, d.Column, d.Severity, tt.line, tt.col)
		}
		// The column points at the unknown name in the source.
		if got := lines[d.Line-1][d.Column-1:]; !strings.HasPrefix(got, "bogus") {
			t.Errorf("%s: column points at %q", tt.rule, got)
		}
		if !strings.Contains(d.Message, "unknown name bogus") {
			t.Errorf("%s: message %q", tt.rule, d.Message)
		}
		want := fmt.Sprintf("r.yaml:%d:%d: error: rule %q: match: unknown name bogus\n    %s\n    %s^",
			tt.line, tt.col, tt.rule, lines[tt.line-1], strings.Repeat(" ", tt.col-1))
		if d.String() != want {
			t.Errorf("%s: rendered\n%s\nwant\n%s", tt.rule, d, want)
		}
	}
	if len(diags) != len(tests) {
		t.Errorf("%d diagnostics, want %d: %v", len(diags), len(tests), diags)
	}
}

func TestLintConvergence(t *testing.T) {
	src := `rules:
  - name: first-sibling
    match: 'key startsWith "a/"'
    strategy: siblings
    on_read: 'siblings[0]'
  - name: cart-union
    match: 'key startsWith "b/"'
    strategy: siblings
    on_read: '{"items": union(map(siblings, #.items))}'
  - name: blind-merge
    match: 'key startsWith "c/"'
    strategy: custom
    merge: 'merge(siblings)'
  - name: newest-merge
    match: 'key startsWith "d/"'
    strategy: custom
    merge: 'merge(map(sortBy(filter(versions, !#.deleted), #.hlc), #.value))'
  - name: first-version
    match: 'key startsWith "e/"'
    strategy: custom
    select: 'version.hlc == versions[0].hlc ? 1 : 0'
  - name: stock
    match: 'key startsWith "f/"'
    strategy: custom
    select: 'version.value.updated_at'
  - name: sum
    match: 'key startsWith "g/"'
    strategy: custom
    on_read: '{"n": sum(map(siblings, #.n ?? 0)), "top": maxBy(siblings, "n")}'
  - name: default
    match: 'true'
    strategy: lww
`
	diags := Lint([]byte(src), "r.yaml", Options{Regions: []string{"us-east", "eu-west"}})
	flagged := map[string]string{"first-sibling": "on_read", "blind-merge": "merge", "first-version": "select"}
	for rule, field := range flagged {
		ds := findDiag(diags, rule, field)
		if len(ds) != 1 || ds[0].Severity != SeverityError || !strings.Contains(ds[0].Message, "depends on the order") {
			t.Errorf("%s: want one order-dependence error on %s, got %v", rule, field, ds)
		}
	}
	for _, d := range diags {
		if _, ok := flagged[d.Rule]; !ok {
			t.Errorf("unexpected diagnostic: %s", d)
		}
	}
	// The finding points at the start of the expression.
	d := findDiag(diags, "first-sibling", "on_read")[0]
	if d.Line != 5 || d.Column != 15 {
		t.Errorf("first-sibling at %d:%d, want 5:15", d.Line, d.Column)
	}
}

func TestLintStructure(t *testing.T) {
	src := `region: us-east
regions:
  us-east: {http: "http://127.0.0.1:7101"}
  eu-west: {http: "http://127.0.0.1:7102"}
data_dir: ./data
rules:
  - name: users
    match: 'key startsWith "user/"'
    strategy: home_region
    home: 'value.region ?? "ap-south"'
    homemode: forward
  - name: users-again
    match: key startsWith "user/"
    strategy: lww
  - name: users
    match: 'key startsWith "x/"'
    strategy: sibling
  - name: all
    match: 'true'
    strategy: lww
  - name: dead
    match: 'key == "z"'
    strategy: lww
`
	diags := Lint([]byte(src), "config.yaml", Options{})
	want := []struct {
		line, col int
		rule      string
		field     string
		msg       string
	}{
		{10, 28, "users", "home", `"ap-south" is not a region (regions: us-east, eu-west)`},
		{11, 5, "users", "homemode", `unknown field "homemode"`},
		{13, 12, "users-again", "match", `same match`},
		{15, 11, "users", "name", "already used by rule #1"},
		{17, 15, "users", "strategy", `unknown strategy "sibling"`},
		{22, 13, "dead", "match", `rule "all" (#4) before it matches every key`},
	}
	if len(diags) != len(want) {
		t.Errorf("%d diagnostics, want %d:", len(diags), len(want))
		for _, d := range diags {
			t.Log(d)
		}
	}
	for i, w := range want {
		if i >= len(diags) {
			break
		}
		d := diags[i]
		if d.Line != w.line || d.Column != w.col || d.Rule != w.rule || d.Field != w.field || !strings.Contains(d.Message, w.msg) {
			t.Errorf("diagnostic %d = %s\nwant %d:%d %s/%s %q", i, d, w.line, w.col, w.rule, w.field, w.msg)
		}
	}
	if !HasErrors(diags) {
		t.Error("HasErrors false")
	}
}

func TestLintWarningsAndFileErrors(t *testing.T) {
	tests := []struct {
		name, src string
		sev       Severity
		line      int
		msg       string
	}{
		{"no catch-all", "rules:\n  - name: a\n    match: 'key == \"a\"'\n    strategy: lww\n", SeverityWarning, 3, "no rule matches every key"},
		{"always false", "rules:\n  - name: a\n    match: 'false'\n    strategy: lww\n  - name: b\n    match: 'true'\n    strategy: lww\n", SeverityWarning, 3, "always false"},
		{"yaml error", "rules:\n  - name: a\n    match: 'key\n    strategy: lww\n\n", SeverityError, 3, "unexpected end of stream"},
		{"not a list", "rules: {name: a}\n", SeverityError, 1, "must be a list"},
		{"empty list", "rules: []\n", SeverityError, 1, "empty"},
		{"no rules key", "region: us-east\n", SeverityError, 1, "no rules: key"},
		{"renamed rules key", "region: us-east\nrule:\n  - {name: a, match: 'true', strategy: lww}\n", SeverityError, 2, `found "rule" (did you mean "rules"?)`},
		{"yaml error below its block", "rules:\n  - name: a\n    match: 'true'\n   strategy: lww\n", SeverityError, 4, "did not find expected '-' indicator"},
		{"tab", "rules:\n  - name: a\n\tmatch: 'true'\n", SeverityError, 3, "tab character"},
		{"junk after a quote", "rules:\n  - name: a\n    match: 'true'x\n    strategy: lww\n", SeverityError, 3, "did not find expected key"},
		{"unknown field", "rules:\n  - name: a\n    match: 'true'\n    strategy: lww\n    onread: x\n", SeverityError, 5, `unknown field "onread" (did you mean "on_read"?)`},
		{"unknown strategy", "rules:\n  - name: a\n    match: 'true'\n    strategy: sibling\n", SeverityError, 4, `unknown strategy "sibling" (did you mean "siblings"?)`},
		{"empty file", "", SeverityError, 1, "empty file"},
		{"non-string value", "rules:\n  - name: a\n    match: [true]\n    strategy: lww\n  - name: b\n    match: 'true'\n    strategy: lww\n", SeverityError, 3, "match must be a string"},
		{"failing everywhere", "rules:\n  - name: a\n    match: 'true'\n    strategy: custom\n    on_read: '1 % (len(siblings) - len(siblings))'\n", SeverityWarning, 5, "convergence not checked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := Lint([]byte(tt.src), "f.yaml", Options{})
			if len(diags) != 1 {
				t.Fatalf("diagnostics %v, want one", diags)
			}
			d := diags[0]
			if d.Severity != tt.sev || d.Line != tt.line || !strings.Contains(d.Message, tt.msg) {
				t.Fatalf("got %s; want %s at line %d containing %q", d, tt.sev, tt.line, tt.msg)
			}
		})
	}
}

func TestLintExampleRulesClean(t *testing.T) {
	src, err := os.ReadFile("../configs/rules/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diags := Lint(src, "rules.yaml", Options{}); len(diags) != 0 {
		for _, d := range diags {
			t.Error(d)
		}
	}
}

func TestParseRules(t *testing.T) {
	specs, err := ParseRules([]byte(`topology: {kind: star}
rules:
  - name: a
    match: true
    strategy: custom
    merge: &m merge(siblings)
    on_read: *m
    resolver: eu-west
`), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{Name: "a", Match: "true", Strategy: "custom", Merge: "merge(siblings)", OnRead: "merge(siblings)", Resolver: "eu-west"}
	if len(specs) != 1 || specs[0] != want {
		t.Fatalf("specs %+v, want %+v", specs, want)
	}
	_, err = ParseRules([]byte("rules:\n  - name: a\n    mtch: true\n"), "f.yaml")
	if err == nil || !strings.Contains(err.Error(), "f.yaml:3:5: error: rule \"a\": mtch: unknown field") {
		t.Fatalf("unknown key: %v", err)
	}
	specs, err = ParseRules([]byte("region: x\n"), "f.yaml")
	if !errors.Is(err, ErrNoRules) || specs != nil {
		t.Fatalf("file without rules: %v, %v; want ErrNoRules", specs, err)
	}
}
