package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/rules"
)

// runRules runs `geogate rules ARGS...` in process and returns its standard
// output and error.
func runRules(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRules()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func tempRuleFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRulesLintExample(t *testing.T) {
	const path = "../../configs/rules/rules.yaml"
	out, err := runRules(t, "lint", path)
	if err != nil {
		t.Fatalf("lint %s: %v\n%s", path, err, out)
	}
	if want := path + ": ok (5 rules)\n"; out != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out, want)
	}
}

func TestRulesTestExample(t *testing.T) {
	const path = "../../configs/rules/rules_test.yaml"
	out, err := runRules(t, "test", path)
	if err != nil {
		t.Fatalf("test %s: %v\n%s", path, err, out)
	}
	passes := strings.Count(out, "PASS ")
	if passes < 10 || strings.Contains(out, "FAIL") {
		t.Fatalf("want every case to pass (%d PASS lines):\n%s", passes, out)
	}
	if want := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(path) + `: (\d+) passed, 0 failed$`); !want.MatchString(out) {
		t.Fatalf("no summary line in:\n%s", out)
	}
}

func TestRulesLintCompileError(t *testing.T) {
	path := tempRuleFile(t, "bad.yaml", `rules:
  - name: carts
    match: 'key startsWith "cart/"'
    strategy: siblings
    on_read: '{"items": unionn(siblings)}'
  - name: default
    match: 'true'
    strategy: lww
`)
	out, err := runRules(t, "lint", path)
	if err == nil {
		t.Fatalf("lint of a bad expression succeeded:\n%s", out)
	}
	if want := "1 error in " + path; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	// unionn starts at column 25 of line 5: `    on_read: '{"items": unionn`.
	lines := strings.Split(out, "\n")
	if len(lines) < 3 {
		t.Fatalf("want a diagnostic with source and caret, got:\n%s", out)
	}
	if prefix := path + ":5:25: error: rule \"carts\": on_read: "; !strings.HasPrefix(lines[0], prefix) || !strings.Contains(lines[0], "unionn") {
		t.Fatalf("diagnostic line %q, want prefix %q naming unionn", lines[0], prefix)
	}
	if lines[1] != `        on_read: '{"items": unionn(siblings)}'` {
		t.Fatalf("source line %q", lines[1])
	}
	caret := strings.Index(lines[2], "^")
	if caret < 0 || strings.TrimSpace(lines[2]) != "^" || lines[1][caret:caret+6] != "unionn" {
		t.Fatalf("caret line %q does not point at unionn in %q", lines[2], lines[1])
	}
}

func TestRulesLintUnknownField(t *testing.T) {
	path := tempRuleFile(t, "typo.yaml", `rules:
  - name: default
    match: 'true'
    stratgy: lww
`)
	out, err := runRules(t, "lint", path)
	if err == nil {
		t.Fatalf("lint of an unknown field succeeded:\n%s", out)
	}
	if !strings.Contains(out, path+`:4:5: error: rule "default": stratgy: unknown field "stratgy"`) {
		t.Fatalf("no located unknown-field diagnostic in:\n%s", out)
	}
	if !strings.Contains(err.Error(), "errors in "+path) && !strings.Contains(err.Error(), "error in "+path) {
		t.Fatalf("error %q does not count the errors", err)
	}
}

func TestRulesLintWarningsAndStrict(t *testing.T) {
	// No catch-all rule: a warning, which fails only with --strict.
	path := tempRuleFile(t, "partial.yaml", `rules:
  - name: carts
    match: 'key startsWith "cart/"'
    strategy: siblings
`)
	out, err := runRules(t, "lint", path)
	if err != nil {
		t.Fatalf("a warning failed lint without --strict: %v\n%s", err, out)
	}
	if !strings.Contains(out, ": warning: ") || !strings.HasSuffix(out, path+": ok (1 rule, 1 warning)\n") {
		t.Fatalf("output:\n%s", out)
	}
	if _, err := runRules(t, "lint", "--strict", path); err == nil || !strings.Contains(err.Error(), "1 warning in "+path) {
		t.Fatalf("--strict: error %v, want one counting the warning", err)
	}
}

func TestRulesLintRegionsFlag(t *testing.T) {
	path := tempRuleFile(t, "home.yaml", `regions: [us-east, eu-west]
rules:
  - name: users
    match: 'true'
    strategy: home_region
    home: '"ap-south"'
`)
	if out, err := runRules(t, "lint", path); err == nil || !strings.Contains(out, `"ap-south" is not a region`) {
		t.Fatalf("file regions: err %v, output:\n%s", err, out)
	}
	if out, err := runRules(t, "lint", "--regions", "us-east,ap-south", path); err != nil {
		t.Fatalf("--regions should replace the file's regions: %v\n%s", err, out)
	}
}

func TestRulesTestFailingCase(t *testing.T) {
	path := tempRuleFile(t, "cases_test.yaml", `regions: [us-east, eu-west]
rules:
  - name: carts
    match: 'key startsWith "cart/"'
    strategy: siblings
    on_read: '{"items": union(map(siblings, #.items))}'
  - name: default
    match: 'true'
    strategy: lww
tests:
  - name: union passes
    key: cart/1
    versions:
      - {value: {items: [a]}, origin: us-east, hlc: 1}
      - {value: {items: [b]}, origin: eu-west, hlc: 2}
    expect: {rule: carts, status: 200, value: {items: [a, b]}}
  - name: wrong item
    key: cart/1
    versions:
      - {value: {items: [a]}, origin: us-east, hlc: 1}
      - {value: {items: [b]}, origin: eu-west, hlc: 2}
    expect: {rule: carts, status: 200, value: {items: [a, c]}}
`)
	out, err := runRules(t, "test", path)
	if err == nil {
		t.Fatalf("a failing case did not fail the command:\n%s", out)
	}
	if want := "1 of 2 cases failed in " + path; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	for _, want := range []string{`(?m)^PASS union passes$`, `(?m)^FAIL wrong item$`, `(?m)^ +- +"c"$`, `(?m)^ +\+ +"b"$`,
		`(?m)^` + regexp.QuoteMeta(path) + `: 1 passed, 1 failed$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %s:\n%s", want, out)
		}
	}
}

func TestRulesTestUnrunnable(t *testing.T) {
	path := tempRuleFile(t, "broken_test.yaml", "rule_files: [missing.yaml]\ntests: []\n")
	if out, err := runRules(t, "test", path); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("a missing rule file: err %v, output:\n%s", err, out)
	}
	if _, err := runRules(t, "lint", filepath.Join(t.TempDir(), "nope.yaml")); err == nil {
		t.Fatal("lint of a missing file succeeded")
	}
}

func TestRulesHelp(t *testing.T) {
	for _, sub := range []string{"lint", "test"} {
		out, err := runRules(t, sub, "--help")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Usage:", "Examples:", "--regions", "rules " + sub} {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q:\n%s", sub, want, out)
			}
		}
	}
}

// TestServeRefusesRulesLintRejects: `geogate serve` runs the lint's checks
// before it touches data: a catch-all rule ahead of another refuses the
// start with the file, line and column.
func TestServeRefusesRulesLintRejects(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	cfg := "region: solo\nregions:\n  solo: { http: \"http://127.0.0.1:1\", nats: \"nats://127.0.0.1:2\" }\ndata_dir: " + filepath.Join(dir, "data") + "\n" +
		"rules:\n  - {name: all, match: 'true', strategy: lww}\n  - {name: carts, match: 'key startsWith \"cart/\"', strategy: siblings}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := geogate("serve", "--config", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("serve started with rules lint rejects")
	}
	msg := stderr.String()
	if !strings.Contains(msg, "rules[1].match: rule can never match") || !strings.Contains(msg, "; at "+path+":7:") {
		t.Fatalf("want the located lint error, got %q", msg)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Fatal("a refused start touched the data directory")
	}
}

// TestRulesPlan: a dry run against a running region prints the keys and
// conflict-log entries a candidate set would treat differently, with
// before and after, and exits 2; an identical set exits 0; a candidate
// with lint errors is refused.
func TestRulesPlan(t *testing.T) {
	current := []rules.Spec{
		{Name: "carts", Match: `key startsWith "cart/"`, Strategy: "siblings"},
		{Name: "stock", Match: `key startsWith "s/"`, Strategy: "custom", Select: `version.value.n`},
		{Name: "default", Match: "true", Strategy: "lww"},
	}
	c, err := gateway.StartCluster(context.Background(), gateway.ClusterSpec{
		Regions: []string{"solo"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: t.TempDir(), Rules: current,
		Options: func(string) gateway.Options {
			return gateway.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	url := c.Node("solo").HTTPURL()
	for _, w := range [][2]string{{"cart/1", `{"items":["a"]}`}, {"cart/1", `{"items":["b"]}`}, {"s/1", `{"n":1}`}, {"s/1", `{"n":2}`}, {"plain", `1`}} {
		if _, err := run("put", w[0], w[1], "--url", url); err != nil {
			t.Fatal(err)
		}
	}
	same := tempRuleFile(t, "same.yaml", `rules:
  - {name: carts, match: 'key startsWith "cart/"', strategy: siblings}
  - {name: stock, match: 'key startsWith "s/"', strategy: custom, select: 'version.value.n'}
  - {name: default, match: 'true', strategy: lww}
`)
	out, err := runRules(t, "plan", same, "--url", url)
	if err != nil || !strings.Contains(out, "No changes") || !strings.Contains(out, "checking 2 keys (1 in the conflict log, 2 holding siblings)") {
		t.Fatalf("plan of the same rules: %v\n%s", err, out)
	}
	changed := tempRuleFile(t, "new.yaml", `rules:
  - name: carts-v2
    match: 'key startsWith "cart/"'
    strategy: siblings
    on_read: '{"items": union(map(siblings, #.items))}'
  - {name: stock, match: 'key startsWith "s/"', strategy: custom, select: '-(version.value.n ?? 0)'}
  - {name: default, match: 'true', strategy: lww}
`)
	out, err = runRules(t, "plan", changed, "--url", url)
	var ee *exitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("plan with changes: err %v, want exit code 2\n%s", err, out)
	}
	for _, want := range []string{
		"  ~ cart/1\n      rule: carts -> carts-v2\n      read: 300 siblings [{\"items\":[\"a\"]}, {\"items\":[\"b\"]}]\n         -> 200 {\"items\":[\"a\",\"b\"]}",
		"  ~ s/1\n      read: 200 {\"n\":2}\n         -> 200 {\"n\":1}",
		"  ~ conflict #1 s/1",
		"Plan: 2 keys would show differently, 0 unchanged; 1 conflict-log entry would be settled differently.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	broken := tempRuleFile(t, "broken.yaml", "rules:\n  - {name: all, match: 'true', strategy: lww}\n  - {name: carts, match: 'key startsWith \"cart/\"', strategy: siblings}\n")
	out, err = runRules(t, "plan", broken, "--url", url)
	if err == nil || errors.As(err, &ee) || !strings.Contains(out, "can never match") {
		t.Fatalf("plan of a set lint rejects: %v\n%s", err, out)
	}
}
