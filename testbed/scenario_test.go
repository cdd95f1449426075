package testbed

import (
	"strings"
	"testing"
	"time"
)

const baseScenario = `
name: demo
regions: [a, b, c]
topology: {kind: all-to-all}
links:
  default: {latency: 80ms, jitter: 20ms, bandwidth: 1MiB/s}
  "a->b": {latency: 200ms, reverse: {latency: 5ms}}
rules:
  - {name: default, match: 'true', strategy: lww}
workload:
  rate: 100
  keys: 50
  distribution: zipf
faults:
  - {at: 5s, for: 5s, partition: [a, b]}
  - {at: 1s, skew: {region: c, by: -2s}}
duration: 30s
checks:
  lag: {p99: 2s}
short:
  duration: 4s
  workload: {rate: 10}
  faults:
    - {at: 1s, for: 1s, isolate: c}
`

func TestParseFillsDefaults(t *testing.T) {
	sc, err := Parse([]byte(baseScenario), false)
	if err != nil {
		t.Fatal(err)
	}
	w := sc.Workload
	switch {
	case sc.Mode != InProcess || sc.Quiescence != time.Minute:
		t.Errorf("mode %q quiescence %s; want in-process and 1m", sc.Mode, sc.Quiescence)
	case w.Concurrency != 16 || w.KeyPrefix != "k/" || w.ZipfS != 1.1 || w.HotKeys != 4 || w.SessionWait != 2*time.Second:
		t.Errorf("workload defaults not filled: %+v", w)
	case strings.Join(w.Regions, ",") != "a,b,c" || w.ConflictRegions != 3:
		t.Errorf("workload regions %v, conflict regions %d; want every region", w.Regions, w.ConflictRegions)
	case sc.IsShort || sc.Duration != 30*time.Second || len(sc.Faults) != 2:
		t.Errorf("long form: short=%v duration %s faults %d", sc.IsShort, sc.Duration, len(sc.Faults))
	}
	if p := sc.Links.For("a", "b"); p.Latency != 200*time.Millisecond || p.Shape().Up.Latency != 5*time.Millisecond || p.Shape().Down.Latency != 200*time.Millisecond {
		t.Errorf("override a->b = %+v (shape %+v)", p, p.Shape())
	}
	if p := sc.Links.For("b", "a"); p.Latency != 80*time.Millisecond || p.Bandwidth != 1<<20 || p.Shape().Up != p.Shape().Down {
		t.Errorf("default for b->a = %+v", p)
	}
	if !enabled(sc.Checks.Convergence) || !enabled(sc.Checks.LostWrites) || sc.Checks.Lag.P99 != 2*time.Second {
		t.Errorf("checks = %+v", sc.Checks)
	}
}

func TestParseShortMergesOverTheLongForm(t *testing.T) {
	sc, err := Parse([]byte(baseScenario), true)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.IsShort || sc.Duration != 4*time.Second {
		t.Errorf("short: IsShort=%v duration %s; want true, 4s", sc.IsShort, sc.Duration)
	}
	// Mappings merge: rate replaced, the rest of the workload kept.
	if sc.Workload.Rate != 10 || sc.Workload.Keys != 50 || sc.Workload.Distribution != "zipf" {
		t.Errorf("short workload = %+v; want rate 10 with keys and distribution kept", sc.Workload)
	}
	// Lists replace.
	if len(sc.Faults) != 1 || sc.Faults[0].Isolate != "c" {
		t.Errorf("short faults = %+v; want the short list only", sc.Faults)
	}
	if sc.Checks.Lag == nil || sc.Checks.Lag.P99 != 2*time.Second {
		t.Errorf("checks not kept from the long form: %+v", sc.Checks)
	}
	// A file without a short block runs as written.
	noShort := strings.Split(baseScenario, "short:")[0]
	sc, err = Parse([]byte(noShort), true)
	if err != nil || sc.IsShort || sc.Duration != 30*time.Second {
		t.Errorf("no short block: %v short=%v duration %s", err, sc != nil && sc.IsShort, sc.Duration)
	}
}

func TestParseRejectsUnknownKeys(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"top level", "bogus: 1\n", `line 1: unknown key "bogus" in the scenario`},
		{"nested", "workload: {rate: 1, keys: 1, rat: 2}\n", `unknown key "workload.rat" in workload`},
		{"link profile", "links:\n  default: {latency: 1ms, latncy: 2ms}\n", `unknown key "links.default.latncy"`},
		{"fault", "faults:\n  - {at: 1s, kill: a, restart: true}\n", `unknown key "faults[0].restart"`},
		{"pause", "faults:\n  - {at: 1s, pause: {region: a, form: b}}\n", `unknown key "faults[0].pause.form"`},
		{"rule", "rules:\n  - {name: x, match: 'true', strategy: lww, hme: a}\n", `unknown key "rules[0].hme"`},
		{"short block", "short:\n  duraton: 1s\n", `unknown key "short.duraton"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "regions: [a, b]\nduration: 10s\nworkload: {rate: 1, keys: 1}\n"
			_, err := Parse([]byte(tc.yaml+src), false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "known: ") {
				t.Fatalf("err = %v, want the allowed keys listed", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	const head = "regions: [a, b, c]\nworkload: {rate: 10, keys: 10}\nduration: 10s\n"
	cases := []struct {
		name, yaml, want string
	}{
		{"ok", "", ""},
		{"no regions", "regions: []\n", "regions"},
		{"unknown mode", "mode: docker\n", `mode: "docker" is not a mode`},
		{"star without hub", "topology: {kind: star}\n", "topology.hub"},
		{"link not in topology", "topology: {kind: star, hub: a}\nlinks:\n  \"b->c\": {latency: 1ms}\n", "has no link b->c"},
		{"link to unknown region", "links:\n  \"a->x\": {latency: 1ms}\n", `"x" is not one of the regions`},
		{"bad links key", "links:\n  ab: {latency: 1ms}\n", `links key "ab"`},
		{"negative latency", "links:\n  default: {latency: -1ms}\n", "latency -1ms is negative"},
		{"drop over one", "links:\n  default: {drop: 2}\n", "not a probability"},
		{"bad bandwidth", "links:\n  default: {bandwidth: fast}\n", `bandwidth "fast"`},
		{"zero rate", "workload: {rate: 0, keys: 10}\n", "workload.rate"},
		{"bad distribution", "workload: {rate: 1, keys: 10, distribution: pareto}\n", "workload.distribution"},
		{"zipf exponent", "workload: {rate: 1, keys: 10, distribution: zipf, zipf_s: 1}\n", "workload.zipf_s"},
		{"ratio over one", "workload: {rate: 1, keys: 10, read_ratio: 1.5}\n", "workload.read_ratio"},
		{"conflict regions", "workload: {rate: 1, keys: 10, conflict_ratio: 0.1, conflict_regions: 1}\n", "workload.conflict_regions"},
		{"workload region", "workload: {rate: 1, keys: 10, regions: [z]}\n", "workload.regions"},
		{"zero duration", "duration: 0s\n", "duration: must be > 0"},
		{"fault with two kinds", "faults:\n  - {at: 1s, kill: a, isolate: b}\n", "exactly one of"},
		{"fault with none", "faults:\n  - {at: 1s}\n", "exactly one of"},
		{"fault after the end", "faults:\n  - {at: 10s, kill: a}\n", "not within the duration"},
		{"partition without link", "topology: {kind: star, hub: a}\nfaults:\n  - {at: 1s, partition: [b, c]}\n", "no link between b and c"},
		{"partition one region", "faults:\n  - {at: 1s, partition: [a, a]}\n", "two different regions"},
		{"unknown kill", "faults:\n  - {at: 1s, kill: z}\n", "faults[0].kill"},
		{"pause without link", "topology: {kind: circular}\nfaults:\n  - {at: 1s, pause: {region: a, from: b}}\n", "has no link b->a"},
		{"skew in process mode", "mode: process\nfaults:\n  - {at: 1s, skew: {region: a, by: 1s}}\n", "in-process"},
		{"cut unknown link", "faults:\n  - {at: 1s, cut: a-b}\n", "not a link"},
		{"conflict bound", "checks:\n  conflicts: {x: {min: 3, max: 1}}\n", "min <= max"},
		{"rule fields", "rules:\n  - {name: x}\n", "rules[0]"},
		{"wipe without kill", "faults:\n  - {at: 1s, isolate: a, wipe: true}\n", "wipe: only goes with kill"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// YAML refuses duplicate keys: the case's top-level keys
			// replace the head's.
			src := mergeYAML(head, tc.yaml)
			_, err := Parse([]byte(src), false)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// mergeYAML drops the head's top-level lines whose key the case sets.
func mergeYAML(head, override string) string {
	set := map[string]bool{}
	for _, l := range strings.Split(override, "\n") {
		if k, _, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, " ") {
			set[k] = true
		}
	}
	var out []string
	for _, l := range strings.Split(head, "\n") {
		if k, _, ok := strings.Cut(l, ":"); ok && set[k] {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n") + "\n" + override
}

func TestParseByteRate(t *testing.T) {
	cases := []struct {
		in   string
		want ByteRate
		ok   bool
	}{
		{"1000", 1000, true},
		{"512KiB", 512 << 10, true},
		{"10MB/s", 10_000_000, true},
		{"1.5 MiB/s", 3 << 19, true},
		{"2GB", 2e9, true},
		{"100B", 100, true},
		{"3 kib/s", 3 << 10, true},
		{"fast", 0, false},
		{"-1", 0, false},
		{"1MiB/s/s", 0, false},
	}
	for _, tc := range cases {
		got, err := parseByteRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseByteRate(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestShippedScenariosLoad checks every shipped scenario parses in both
// forms, and that the short forms are short enough for CI.
func TestShippedScenariosLoad(t *testing.T) {
	for _, file := range scenarioFiles(t) {
		long, err := Load(file, false)
		if err != nil {
			t.Errorf("long form: %v", err)
			continue
		}
		short, err := Load(file, true)
		if err != nil {
			t.Errorf("short form: %v", err)
			continue
		}
		if !short.IsShort || short.Duration > 10*time.Second || short.Duration >= long.Duration {
			t.Errorf("%s: short form runs %s (long %s); want a short block of at most 10s", long.Name, short.Duration, long.Duration)
		}
		if long.Description == "" || len(long.Regions) < 2 {
			t.Errorf("%s: want a description and at least two regions", long.Name)
		}
	}
}

func TestFaultKindAndString(t *testing.T) {
	cases := []struct {
		f    Fault
		kind string
		text string
	}{
		{Fault{Partition: []string{"a", "b"}}, "partition", "partition a/b"},
		{Fault{Cut: "a->b"}, "cut", "cut a->b"},
		{Fault{Isolate: "a"}, "isolate", "isolate a"},
		{Fault{Kill: "a"}, "kill", "kill a"},
		{Fault{Pause: &PauseFault{Region: "a", From: "b"}}, "pause", "pause b->a"},
		{Fault{Skew: &SkewFault{Region: "a", By: time.Second}}, "skew", "skew a by 1s"},
		{Fault{Degrade: &DegradeFault{Link: "a->b"}}, "degrade", "degrade a->b"},
	}
	for _, tc := range cases {
		if tc.f.Kind() != tc.kind || tc.f.String() != tc.text || tc.f.kinds() != 1 {
			t.Errorf("%+v: kind %q string %q; want %q %q", tc.f, tc.f.Kind(), tc.f.String(), tc.kind, tc.text)
		}
	}
}
