package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunTestsExampleFile(t *testing.T) {
	path := "../configs/rules/rules_test.yaml"
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	report, err := RunTests(src, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(report.Cases) < 10 {
		t.Errorf("only %d cases ran", len(report.Cases))
	}
	if report.Failed() != 0 {
		t.Error(report.String())
	}
}

const inlineTests = `regions: [us-east, eu-west]
rules:
  - name: carts
    match: 'key startsWith "cart/"'
    strategy: siblings
    on_read: '{"items": union(map(siblings, #.items))}'
  - name: users
    match: 'key startsWith "user/"'
    strategy: home_region
    home: 'value.region ?? "us-east"'
  - name: default
    match: 'true'
    strategy: lww
tests:
  - name: passes
    key: cart/1
    versions:
      - {value: {items: [a]}, origin: us-east, hlc: 1}
      - {value: {items: [b]}, origin: eu-west, hlc: 2}
    expect: {rule: carts, status: 200, value: {items: [b, a]}}
  - name: wrong value
    key: cart/1
    versions:
      - {value: {items: [a]}, origin: us-east, hlc: 1}
      - {value: {items: [b]}, origin: eu-west, hlc: 2}
    expect: {value: {items: [a, c]}}
  - name: ordered arrays
    key: cart/1
    versions:
      - {value: {items: [a]}, origin: us-east, hlc: 1}
      - {value: {items: [b]}, origin: eu-west, hlc: 2}
    expect: {value: {items: [a, b]}, ordered: true}
  - name: wrong rule and home
    key: user/1
    value: {region: eu-west}
    expect: {rule: carts, home: us-east}
  - name: wrong status
    key: misc
    versions:
      - {value: 1, origin: us-east, hlc: 1}
      - {deleted: true, origin: eu-west, hlc: 2}
    expect: {status: 200}
  - name: siblings in any order
    key: cart/2
    versions:
      - {value: {items: 1}, origin: us-east, hlc: 1}
      - {value: {items: [b]}, origin: eu-west, hlc: 2}
    expect: {status: 300, siblings: [{items: 1}, {items: [b]}], error: not an array}
  - name: unexpected error
    key: cart/2
    versions:
      - {value: {items: 1}, origin: us-east, hlc: 1}
      - {value: {items: [b]}, origin: eu-west, hlc: 2}
    expect: {status: 300}
  - name: missing error
    key: cart/1
    versions:
      - {value: {items: [a]}, origin: us-east, hlc: 1}
    expect: {status: 200, error: boom}
`

func TestRunTestsReportsFailures(t *testing.T) {
	report, err := RunTests([]byte(inlineTests), "inline_test.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"passes":                nil,
		"wrong value":           {"value (arrays in any order):", `-     "c"`, `+     "b"`},
		"ordered arrays":        {"value:", `-     "a",`, `+     "b",`},
		"wrong rule and home":   {"rule:\n- carts\n+ users", "home:\n- us-east\n+ eu-west"},
		"wrong status":          {"status:\n- 200\n+ 404"},
		"siblings in any order": nil,
		"unexpected error":      {"unexpected error:", "not an array"},
		"missing error":         {`want an error containing "boom", got none`},
	}
	if len(report.Cases) != len(want) {
		t.Fatalf("%d cases, want %d", len(report.Cases), len(want))
	}
	for _, c := range report.Cases {
		msgs, ok := want[c.Name]
		if !ok {
			t.Errorf("unexpected case %q", c.Name)
			continue
		}
		if c.Passed != (msgs == nil) {
			t.Errorf("%s: passed=%v, failures %q", c.Name, c.Passed, c.Failures)
			continue
		}
		all := strings.Join(c.Failures, "\n")
		for _, m := range msgs {
			if !strings.Contains(all, m) {
				t.Errorf("%s: failures\n%s\nlack %q", c.Name, all, m)
			}
		}
	}
	if report.Failed() != 6 {
		t.Errorf("Failed() = %d, want 6", report.Failed())
	}
	s := report.String()
	if !strings.Contains(s, "FAIL wrong value") || !strings.Contains(s, "inline_test.yaml: 2 passed, 6 failed") || strings.Contains(s, "FAIL passes") {
		t.Errorf("report rendering:\n%s", s)
	}
}

func TestRunTestsFileErrors(t *testing.T) {
	dir := t.TempDir()
	rules := "rules:\n  - name: d\n    match: 'true'\n    strategy: lww\n"
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := "rules:\n  - name: d\n    match: 'nope'\n    strategy: lww\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := "rule_files: [rules.yaml]\ntests:\n  - {name: t, key: k, expect: {rule: d}}\n"
	report, err := RunTests([]byte(ok), filepath.Join(dir, "t_test.yaml"), Options{})
	if err != nil || len(report.Cases) != 1 || report.Failed() != 0 {
		t.Fatalf("relative rule file: %v %v", report, err)
	}
	tests := []struct{ name, src, msg string }{
		{"unknown key", "rule_files: [rules.yaml]\ntests:\n  - {name: t, key: k, expect: {rul: d}}\n", "field rul not found"},
		{"missing rule file", "rule_files: [nope.yaml]\ntests: []\n", "nope.yaml"},
		{"invalid rules", "rule_files: [bad.yaml]\ntests: []\n", "unknown name nope"},
		{"no rules", "tests: []\n", "want rule_files or rules"},
		{"bad version", "rule_files: [rules.yaml]\ntests:\n  - {name: t, key: k, versions: [{origin: a}], expect: {}}\n", ""},
		{"case without expect", "rule_files: [rules.yaml]\ntests:\n  - {name: t, key: k}\n", `test "t": no expect`},
		{"unknown expected rule", "rule_files: [rules.yaml]\ntests:\n  - {name: t, key: k, expect: {rule: dd}}\n", `expect.rule "dd" is not a rule of the set (did you mean "d"?)`},
		{"unknown region", "rule_files: [rules.yaml]\nregions: [us-east, eu-west]\ntests:\n  - {name: t, key: k, region: eu-wset, expect: {rule: d}}\n",
			`region "eu-wset" is not a region (regions: us-east, eu-west) (did you mean "eu-west"?)`},
		{"unknown origin", "rule_files: [rules.yaml]\nregions: [us-east]\ntests:\n  - {name: t, key: k, versions: [{value: 1, origin: mars}], expect: {rule: d}}\n",
			`versions[0].origin "mars" is not a region`},
		{"bad status", "rule_files: [rules.yaml]\ntests:\n  - {name: t, key: k, expect: {status: 201}}\n", "want 200, 300 or 404"},
		{"rules lint rejects", "rules:\n  - {name: a, match: 'true', strategy: lww}\n  - {name: b, match: 'key == \"x\"', strategy: siblings}\ntests:\n  - {name: t, key: k, expect: {rule: a}}\n",
			"can never match"},
		{"every problem at once", "rule_files: [rules.yaml]\ntests:\n  - {name: t1, key: k}\n  - {name: t2, key: k, expect: {rule: zz}}\n", `test "t2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			report, err := RunTests([]byte(tt.src), filepath.Join(dir, "t_test.yaml"), Options{})
			if tt.msg == "" {
				// A malformed case fails, the file still runs.
				if err != nil || report.Failed() != 1 || !strings.Contains(strings.Join(report.Cases[0].Failures, ""), "value is required") {
					t.Fatalf("got %v, %v", report, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want one containing %q", err, tt.msg)
			}
		})
	}
}

// TestRunTestsReportsEveryMismatch: a case whose status, value, kept
// version and discarded count are all wrong reports all four.
func TestRunTestsReportsEveryMismatch(t *testing.T) {
	src := `rules:
  - {name: d, match: 'true', strategy: lww}
tests:
  - name: all wrong
    key: k
    versions:
      - {value: {a: 1}, origin: us-east, hlc: 1}
      - {value: {a: 2}, origin: eu-west, hlc: 2}
    expect: {rule: d, status: 404, kept: {origin: us-east}, discarded: 2}
`
	report, err := RunTests([]byte(src), "t_test.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(report.Cases[0].Failures, "\n")
	for _, want := range []string{"status:\n- 404\n+ 200", "kept:", "discarded:\n- 2 versions\n+ 1 versions"} {
		if !strings.Contains(all, want) {
			t.Errorf("failures lack %q:\n%s", want, all)
		}
	}
}

func TestLineDiff(t *testing.T) {
	got := lineDiff([]string{"a", "b", "c"}, []string{"a", "x", "c", "d"})
	want := "  a\n- b\n+ x\n  c\n+ d"
	if got != want {
		t.Fatalf("lineDiff =\n%s\nwant\n%s", got, want)
	}
}
