package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/geogate/geogate/conflict"
	"go.yaml.in/yaml/v3"
)

// The rule test file format (see the README, section Rules):
//
//	rule_files: [rules.yaml]        # relative to the test file; or inline rules:
//	regions: [us-east, eu-west]     # optional: the deployment's regions
//	default_resolver: us-east       # optional
//	tests:
//	  - name: carts union
//	    key: cart/42
//	    region: us-east             # evaluating region (default: the first)
//	    value: {region: eu-west}    # the written document, for home/resolver
//	    versions:                   # the frontier
//	      - {value: {items: [a]}, origin: us-east, hlc: 1}
//	      - {value: {items: [b]}, origin: eu-west, hlc: 2}
//	      - {deleted: true, origin: ap-south, hlc: 3}
//	    expect:
//	      rule: carts
//	      status: 200               # 200, 300 or 404
//	      value: {items: [a, b]}    # for 200
//	      siblings: [...]           # for 300, in any order
//	      kept: {origin: eu-west, hlc: 2}
//	      discarded: 1
//	      merged: {...}             # MergeOnWrite's document; no_merge: true for none
//	      home: eu-west
//	      resolver: us-east
//	      error: "index out of range"  # expect a run-time error containing this
//	      ordered: true             # compare arrays in order (default: any order)

type testFile struct {
	RuleFiles       []string   `yaml:"rule_files"`
	Rules           yaml.Node  `yaml:"rules"`
	Regions         []string   `yaml:"regions"`
	DefaultResolver string     `yaml:"default_resolver"`
	Tests           []testCase `yaml:"tests"`
}

type testCase struct {
	Name     string        `yaml:"name"`
	Key      string        `yaml:"key"`
	Region   string        `yaml:"region"`
	Value    yaml.Node     `yaml:"value"`
	Versions []testVersion `yaml:"versions"`
	Expect   *testExpect   `yaml:"expect"`
}

type testVersion struct {
	Value   yaml.Node `yaml:"value"`
	Origin  string    `yaml:"origin"`
	HLC     int64     `yaml:"hlc"`
	Deleted bool      `yaml:"deleted"`
	Counter uint64    `yaml:"counter"`
}

type testKept struct {
	Origin string `yaml:"origin"`
	HLC    *int64 `yaml:"hlc"`
}

type testExpect struct {
	Rule      string    `yaml:"rule"`
	Status    int       `yaml:"status"`
	Value     yaml.Node `yaml:"value"`
	Siblings  yaml.Node `yaml:"siblings"`
	Kept      *testKept `yaml:"kept"`
	Discarded *int      `yaml:"discarded"`
	Merged    yaml.Node `yaml:"merged"`
	NoMerge   bool      `yaml:"no_merge"`
	Home      string    `yaml:"home"`
	Resolver  string    `yaml:"resolver"`
	Error     *string   `yaml:"error"`
	Ordered   bool      `yaml:"ordered"`
}

// TestReport is the outcome of RunTests: one CaseResult per test case, in
// file order.
type TestReport struct {
	File  string
	Cases []CaseResult
}

// CaseResult is one test case's outcome. Failures are human-readable,
// with want/got lines prefixed - and +.
type CaseResult struct {
	Name     string
	Passed   bool
	Failures []string
}

// Failed returns the number of failed cases.
func (r TestReport) Failed() int {
	n := 0
	for _, c := range r.Cases {
		if !c.Passed {
			n++
		}
	}
	return n
}

// String renders the report: a line per failed case with its failures,
// then a summary line.
func (r TestReport) String() string {
	var b strings.Builder
	for _, c := range r.Cases {
		if c.Passed {
			continue
		}
		fmt.Fprintf(&b, "FAIL %s\n", c.Name)
		for _, f := range c.Failures {
			fmt.Fprintf(&b, "    %s\n", strings.ReplaceAll(f, "\n", "\n    "))
		}
	}
	fmt.Fprintf(&b, "%s: %d passed, %d failed\n", r.File, len(r.Cases)-r.Failed(), r.Failed())
	return b.String()
}

// RunTests runs the operator-written test cases of a rule test file (the
// format is in the README, section Rules), in the spirit of `promtool test rules`.
// Rule files named in rule_files are read relative to the test file's
// directory and their rules concatenated in order; inline rules: are used
// otherwise. Regions come from opts, else the test file's regions:, else
// a region config's regions: map.
//
// The error is for a test file that cannot run, with every problem found:
// bad YAML, unknown keys, unreadable rules, rules with lint errors (the
// checks of Check, as a region loading them would refuse them), a case
// without expect, a case naming a region that is not one (region, a
// version's origin, expect.home or expect.resolver) or expecting a rule
// the set does not have. Failed cases are in the report, each with every
// field that did not match.
func RunTests(src []byte, filename string, opts Options) (TestReport, error) {
	report := TestReport{File: filename}
	var tf testFile
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		return report, fmt.Errorf("%s: %w", filename, err)
	}
	specs, fileRegions, err := testRules(tf, filename)
	if err != nil {
		return report, err
	}
	if len(opts.Regions) == 0 {
		opts.Regions = tf.Regions
	}
	if len(opts.Regions) == 0 {
		opts.Regions = fileRegions
	}
	if opts.DefaultResolver == "" {
		opts.DefaultResolver = tf.DefaultResolver
	}
	var problems []error
	for _, d := range Errors(Check(specs, opts)) {
		problems = append(problems, fmt.Errorf("%s: rules: %s", filename, d))
	}
	if len(problems) > 0 {
		return report, errors.Join(problems...)
	}
	set, err := Compile(specs, opts)
	if err != nil {
		return report, fmt.Errorf("%s: rules: %w", filename, err)
	}
	if err := checkCases(tf.Tests, set, opts.Regions, filename); err != nil {
		return report, err
	}
	for i, tc := range tf.Tests {
		name := tc.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		failures := runCase(set, opts.Regions, tc)
		report.Cases = append(report.Cases, CaseResult{Name: name, Passed: len(failures) == 0, Failures: failures})
	}
	return report, nil
}

// checkCases refuses cases that cannot test anything meaningful: without
// expect, naming an unknown region, or expecting a rule the set lacks.
func checkCases(cases []testCase, set *Set, regions []string, filename string) error {
	names := map[string]bool{}
	for _, r := range set.Rules() {
		names[r.Name()] = true
	}
	var problems []error
	for i, tc := range cases {
		name := tc.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Errorf("%s: test %q: %s", filename, name, fmt.Sprintf(format, args...)))
		}
		region := func(what, r string) {
			if r != "" && len(regions) > 0 && !slices.Contains(regions, r) {
				bad("%s %q is not a region (regions: %s)%s", what, r, strings.Join(regions, ", "), didYouMean(r, regions))
			}
		}
		if tc.Expect == nil {
			bad("no expect: say what the case must give (rule, status, value, ...)")
			continue
		}
		if tc.Expect.Rule != "" && !names[tc.Expect.Rule] {
			bad("expect.rule %q is not a rule of the set%s", tc.Expect.Rule, didYouMean(tc.Expect.Rule, slices.Collect(maps.Keys(names))))
		}
		if st := tc.Expect.Status; st != 0 && st != 200 && st != 300 && st != 404 {
			bad("expect.status %d: want 200, 300 or 404", st)
		}
		region("region", tc.Region)
		region("expect.home", tc.Expect.Home)
		region("expect.resolver", tc.Expect.Resolver)
		for j, v := range tc.Versions {
			region(fmt.Sprintf("versions[%d].origin", j), v.Origin)
		}
	}
	return errors.Join(problems...)
}

// testRules loads the rules a test file names, with any regions a rule
// file (a region config) declares.
func testRules(tf testFile, filename string) ([]Spec, []string, error) {
	if len(tf.RuleFiles) == 0 {
		if tf.Rules.Kind == 0 {
			return nil, nil, fmt.Errorf("%s: want rule_files or rules", filename)
		}
		src, err := yaml.Marshal(map[string]*yaml.Node{"rules": &tf.Rules})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: rules: %w", filename, err)
		}
		specs, err := ParseRules(src, filename+" (inline rules)")
		return specs, nil, err
	}
	var specs []Spec
	var regions []string
	for _, name := range tf.RuleFiles {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(filename), name)
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: rule file: %w", filename, err)
		}
		s, err := ParseRules(src, path)
		if err != nil {
			return nil, nil, err
		}
		specs = append(specs, s...)
		if regions == nil {
			regions = parseRuleFile(src, path).regions
		}
	}
	return specs, regions, nil
}

// has reports whether a YAML field was given (null counts as given).
func has(n yaml.Node) bool { return n.Kind != 0 }

// nodeJSON converts a YAML node to a JSON document.
func nodeJSON(n *yaml.Node) (json.RawMessage, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	return encodeDoc(v)
}

// runCase runs one test case and returns its failures.
func runCase(set *Set, regions []string, tc testCase) []string {
	var failures []string
	failf := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	var errs []error
	exp := *tc.Expect

	region := tc.Region
	if region == "" && len(regions) > 0 {
		region = regions[0]
	}
	var value json.RawMessage
	if has(tc.Value) {
		v, err := nodeJSON(&tc.Value)
		if err != nil {
			return []string{fmt.Sprintf("value: %v", err)}
		}
		value = v
	}
	versions, err := testVersions(tc.Versions)
	if err != nil {
		return []string{err.Error()}
	}

	rule, err := set.Match(tc.Key)
	if err != nil {
		errs = append(errs, err)
	}
	if rule == nil {
		return finishCase(failures, errs, exp)
	}
	if exp.Rule != "" && rule.Name() != exp.Rule {
		failf("rule:\n- %s\n+ %s", exp.Rule, rule.Name())
	}
	if len(versions) > 0 || exp.Status != 0 || has(exp.Value) || has(exp.Siblings) || exp.Kept != nil || exp.Discarded != nil {
		res, err := rule.Resolve(tc.Key, region, versions)
		if err != nil {
			errs = append(errs, err)
		}
		failures = append(failures, checkResolution(res, exp)...)
	}
	if has(exp.Merged) || exp.NoMerge {
		merged, ok, err := rule.MergeOnWrite(tc.Key, region, versions)
		if err != nil {
			errs = append(errs, err)
		}
		switch {
		case exp.NoMerge && ok:
			failf("merged: want no merge, got %s", merged)
		case has(exp.Merged) && !ok && err == nil:
			failf("merged: want a merged value, got no merge (no merge expression, or fewer than 2 live versions)")
		case has(exp.Merged) && ok:
			failures = append(failures, compareDocs("merged", &exp.Merged, merged, exp.Ordered)...)
		}
	}
	if exp.Home != "" {
		home, err := rule.Home(tc.Key, value)
		if err != nil {
			errs = append(errs, err)
		} else if home != exp.Home {
			failf("home:\n- %s\n+ %s", exp.Home, home)
		}
	}
	if exp.Resolver != "" {
		got, err := rule.Resolver(tc.Key, value)
		if err != nil {
			errs = append(errs, err)
		} else if got != exp.Resolver {
			failf("resolver:\n- %s\n+ %s", exp.Resolver, got)
		}
	}
	return finishCase(failures, errs, exp)
}

// finishCase checks the errors met against expect.error.
func finishCase(failures []string, errs []error, exp testExpect) []string {
	err := errors.Join(errs...)
	switch {
	case exp.Error == nil && err != nil:
		failures = append(failures, fmt.Sprintf("unexpected error: %v", err))
	case exp.Error != nil && err == nil:
		failures = append(failures, fmt.Sprintf("error: want an error containing %q, got none", *exp.Error))
	case exp.Error != nil && !strings.Contains(err.Error(), *exp.Error):
		failures = append(failures, fmt.Sprintf("error: want an error containing %q, got: %v", *exp.Error, err))
	}
	return failures
}

// testVersions builds the frontier of a test case. Dots are (origin,
// counter); the counter defaults to one more than the previous version
// of the same origin.
func testVersions(tvs []testVersion) ([]conflict.Version, error) {
	counters := map[string]uint64{}
	out := make([]conflict.Version, 0, len(tvs))
	for i, tv := range tvs {
		if tv.Origin == "" {
			return nil, fmt.Errorf("versions[%d]: origin is required", i)
		}
		c := tv.Counter
		if c == 0 {
			c = counters[tv.Origin] + 1
		}
		counters[tv.Origin] = max(counters[tv.Origin], c)
		v := conflict.Version{
			Dot:     conflict.Dot{Actor: tv.Origin, Counter: c},
			HLC:     conflict.HLC{Wall: tv.HLC},
			Origin:  tv.Origin,
			Deleted: tv.Deleted,
		}
		switch {
		case tv.Deleted && has(tv.Value):
			return nil, fmt.Errorf("versions[%d]: a deleted version has no value", i)
		case !tv.Deleted && !has(tv.Value):
			return nil, fmt.Errorf("versions[%d]: value is required (or deleted: true)", i)
		case !tv.Deleted:
			raw, err := nodeJSON(&tv.Value)
			if err != nil {
				return nil, fmt.Errorf("versions[%d]: %w", i, err)
			}
			v.Value = raw
		}
		out = append(out, v)
	}
	return out, nil
}

// readStatus is the HTTP status a read answers with for each outcome: the
// unit of a test case's expect.status, as operators see it.
var readStatus = map[Outcome]int{OutcomeOne: 200, OutcomeSiblings: 300, OutcomeNone: 404}

// checkResolution compares a Resolution with the expectation.
func checkResolution(res Resolution, exp testExpect) []string {
	var failures []string
	want := exp.Status
	if want == 0 && has(exp.Value) {
		want = readStatus[OutcomeOne]
	}
	if want == 0 && has(exp.Siblings) {
		want = readStatus[OutcomeSiblings]
	}
	if got := readStatus[res.Outcome]; want != 0 && got != want {
		detail := ""
		switch res.Outcome {
		case OutcomeOne:
			detail = " " + string(res.Value)
		case OutcomeSiblings:
			detail = fmt.Sprintf(" %d siblings", len(res.Siblings))
		}
		failures = append(failures, fmt.Sprintf("status:\n- %d\n+ %d%s", want, got, detail))
	}
	if has(exp.Value) {
		failures = append(failures, compareDocs("value", &exp.Value, res.Value, exp.Ordered)...)
	}
	if has(exp.Siblings) {
		failures = append(failures, compareSiblings(&exp.Siblings, res.Siblings)...)
	}
	if exp.Kept != nil {
		switch {
		case res.Kept == nil:
			failures = append(failures, "kept: want a collapse, got none (fewer than 2 versions or no collapsing strategy)")
		case exp.Kept.Origin != "" && res.Kept.Origin != exp.Kept.Origin,
			exp.Kept.HLC != nil && res.Kept.HLC.Wall != *exp.Kept.HLC:
			failures = append(failures, fmt.Sprintf("kept:\n- origin %s hlc %s\n+ origin %s hlc %d",
				exp.Kept.Origin, optInt(exp.Kept.HLC), res.Kept.Origin, res.Kept.HLC.Wall))
		}
	}
	if exp.Discarded != nil && len(res.Discarded) != *exp.Discarded {
		failures = append(failures, fmt.Sprintf("discarded:\n- %d versions\n+ %d versions", *exp.Discarded, len(res.Discarded)))
	}
	return failures
}

func optInt(p *int64) string {
	if p == nil {
		return "(any)"
	}
	return fmt.Sprint(*p)
}

// compareDocs compares an expected YAML document with a JSON result,
// reporting a line diff of their indented JSON. Unless ordered, arrays
// compare as multisets (both sides are shown sorted).
func compareDocs(label string, want *yaml.Node, got json.RawMessage, ordered bool) []string {
	w, err := nodeJSON(want)
	if err != nil {
		return []string{fmt.Sprintf("%s: expected value: %v", label, err)}
	}
	wantV, gotV := decodeLoose(w), decodeLoose(got)
	if !ordered {
		label += " (arrays in any order)"
		wantV, gotV = setForm(wantV), setForm(gotV)
	}
	if canonical(wantV) == canonical(gotV) {
		return nil
	}
	return []string{label + ":\n" + lineDiff(indentJSON(wantV), indentJSON(gotV))}
}

// compareSiblings compares sibling lists as multisets.
func compareSiblings(want *yaml.Node, got []json.RawMessage) []string {
	w, err := nodeJSON(want)
	if err != nil {
		return []string{fmt.Sprintf("siblings: expected value: %v", err)}
	}
	wantList, ok := decodeLoose(w).([]any)
	if !ok {
		return []string{"siblings: expected value must be a list"}
	}
	gotList := make([]any, len(got))
	for i, g := range got {
		gotList[i] = decodeLoose(g)
	}
	ws, gs := setForm(wantList), setForm(gotList)
	if canonical(ws) == canonical(gs) {
		return nil
	}
	return []string{"siblings (any order):\n" + lineDiff(indentJSON(ws), indentJSON(gs))}
}

func decodeLoose(raw json.RawMessage) any {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	return v
}

func indentJSON(v any) []string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return []string{fmt.Sprint(v)}
	}
	return strings.Split(string(b), "\n")
}

// lineDiff renders a minimal line diff (longest common subsequence):
// common lines indented, expected-only lines with "- ", actual-only lines
// with "+ ".
func lineDiff(want, got []string) string {
	n, m := len(want), len(got)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == got[j]:
			out = append(out, "  "+want[i])
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "- "+want[i])
			i++
		default:
			out = append(out, "+ "+got[j])
			j++
		}
	}
	return strings.Join(out, "\n")
}
