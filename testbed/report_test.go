package testbed

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/testbed/wan"
)

func sampleReport() *Report {
	rep := &Report{
		Scenario: "demo", Description: "A demo.", Mode: InProcess, Regions: []string{"a", "b"}, Topology: "all-to-all",
		Links: []string{"a->b", "b->a"}, Started: time.Unix(0, 0), Duration: 10 * time.Second,
		Checks: []CheckResult{
			{Name: "convergence", Pass: true, Summary: "2 regions"},
			{Name: "lost_writes", Pass: false, Summary: "1 lost", Details: []string{"write w1 of \"k\" is missing at b"}},
		},
		Workload:  WorkloadStats{Ops: 10, Writes: 8, Acked: 7, WriteErrors: map[string]int{"503 stale": 1}},
		Lag:       map[string]Percentiles{"a->b": {N: 3, P50: 0.1, P99: 0.5, Max: 0.5}},
		Conflicts: map[string]map[string]int{"default": {"a": 2, "b": 1}},
		Faults: []FaultEvent{
			{At: 2 * time.Second, Fault: "partition a/b", Action: "start"},
			{At: 5 * time.Second, Fault: "partition a/b", Action: "end"},
			{At: 6 * time.Second, Fault: "kill b", Action: "start", Err: "boom | bang"},
		},
		Digests: map[string]string{"a": "abcdef", "b": "abcdef"}, Records: map[string]int{"a": 3, "b": 3},
		WAN: map[string]wan.Stats{"a->b": {Accepted: 2, Cut: 1}},
		LagSamples: []LagSample{
			{At: time.Second, Link: "a->b", Lag: 0.1}, {At: 2 * time.Second, Link: "a->b", Lag: 0.5},
			{At: 3 * time.Second, Link: "a->b", Lag: 0.2},
		},
	}
	return rep
}

func TestMarkdown(t *testing.T) {
	md := Markdown(sampleReport())
	for _, want := range []string{
		"# demo: FAIL",
		"| lost_writes | FAIL | 1 lost |",
		`- write w1 of "k" is missing at b`,
		"| a->b | 3 | 0.100 | 0.500 | 0.500 | [svg](lag-a-to-b.svg) |",
		"| default | 2 | 1 |",
		"| 2s | start | partition a/b |",
		`boom \| bang`, // pipes escaped inside a table cell
		"| a->b | 2 | 0 | 1 | 0 |",
		"503 stale: 1",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestSummary(t *testing.T) {
	s := sampleReport().Summary()
	for _, want := range []string{"demo: FAIL", "PASS convergence", "FAIL lost_writes", `write w1 of "k" is missing at b`} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	rep := sampleReport()
	if err := WriteReport(dir, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	b, err := os.ReadFile(filepath.Join(dir, ReportJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("report.json does not decode: %v", err)
	}
	if back.Scenario != "demo" || back.Pass || len(back.Checks) != 2 || len(back.LagSamples) != 3 {
		t.Fatalf("report.json round trip lost data: %+v", back)
	}
	for _, name := range []string{ReportMarkdown, LagPlotAll, "lag-a-to-b.svg", "lag-b-to-a.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("missing %s: %v", name, err)
		}
		if strings.HasSuffix(name, ".svg") {
			// Well-formed XML with an svg root.
			var root struct{ XMLName xml.Name }
			if err := xml.Unmarshal(b, &root); err != nil || root.XMLName.Local != "svg" {
				t.Fatalf("%s is not an SVG document: %v", name, err)
			}
		}
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "lag-a-to-b.svg"))
	if !strings.Contains(string(svg), "<polyline") || !strings.Contains(string(svg), "partition a/b") {
		t.Fatalf("the a->b chart has no line or no fault shading:\n%s", svg)
	}
}

func TestFaultWindows(t *testing.T) {
	w := faultWindows(sampleReport().Faults, 10*time.Second)
	if len(w) != 2 || w[0] != (window{from: 2, to: 5, label: "partition a/b"}) || w[1] != (window{from: 6, to: 10, label: "kill b"}) {
		t.Fatalf("faultWindows = %+v", w)
	}
}

func TestSplitAtGaps(t *testing.T) {
	pts := [][2]float64{{0, 1}, {0.25, 1}, {0.5, 1}, {5, 2}, {5.25, 2}}
	runs := splitAtGaps(pts, 1)
	if len(runs) != 2 || len(runs[0]) != 3 || len(runs[1]) != 2 || runs[1][0][0] != 5 {
		t.Fatalf("splitAtGaps = %v, want a break at the 4.5s hole", runs)
	}
	if runs := splitAtGaps(pts, 0); len(runs) != 1 || len(runs[0]) != 5 {
		t.Fatalf("gap 0 = %v, want one run", runs)
	}
	if runs := splitAtGaps(nil, 1); len(runs) != 0 {
		t.Fatalf("no points = %v, want no run", runs)
	}
}

func TestNiceStep(t *testing.T) {
	cases := []struct {
		span float64
		n    int
		want float64
	}{{10, 5, 2}, {1, 5, 0.2}, {7, 8, 1}, {100, 4, 50}, {0.003, 5, 0.001}, {0, 5, 1}}
	for _, tc := range cases {
		if got := niceStep(tc.span, tc.n); got < tc.want*0.999 || got > tc.want*1.001 {
			t.Errorf("niceStep(%g, %d) = %g, want %g", tc.span, tc.n, got, tc.want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	line := progressLine(Progress{Phase: PhaseRunning, Elapsed: 5 * time.Second, Duration: 10 * time.Second, Ops: 7, Acked: 5, Errors: 1, Fault: "start kill a"}, 10)
	if !strings.HasPrefix(line, "[=====>    ] 5s/10s running") || !strings.Contains(line, "ops 7  acked 5  failed 1  start kill a") {
		t.Fatalf("progressLine = %q", line)
	}
	if line := progressLine(Progress{Phase: PhaseDone, Duration: time.Second}, 4); !strings.HasPrefix(line, "[====]") {
		t.Fatalf("done line = %q, want a full bar", line)
	}
	var b strings.Builder
	bar := ProgressBar(&b, false)
	bar(Progress{Phase: PhaseRunning})
	bar(Progress{Phase: PhaseRunning})
	bar(Progress{Phase: PhaseDone})
	if n := strings.Count(b.String(), "\n"); n != 2 {
		t.Fatalf("non-terminal bar printed %d lines, want one per phase:\n%s", n, b.String())
	}
}

func TestStatusesQuiescent(t *testing.T) {
	up := []client.LinkStatus{{From: "b", To: "a", State: "up"}}
	a := client.Status{Region: "a", Actor: "a~1", Seq: 5, Applied: map[string]uint64{"a~1": 5, "b~1": 3}, Links: up}
	b := client.Status{Region: "b", Actor: "b~1", Seq: 3, Applied: map[string]uint64{"a~1": 5, "b~1": 3}}
	if !statusesQuiescent([]client.Status{a, b}) {
		t.Fatal("caught-up regions not quiescent")
	}
	behind := b
	behind.Applied = map[string]uint64{"a~1": 4, "b~1": 3}
	pending := a
	pending.Links = []client.LinkStatus{{State: "up", Pending: 2}}
	down := a
	down.Links = []client.LinkStatus{{State: "down"}}
	outbox := a
	outbox.Outbox = 1
	for name, sts := range map[string][]client.Status{
		"behind": {a, behind}, "pending": {pending, b}, "link down": {down, b}, "outbox": {outbox, b},
	} {
		if statusesQuiescent(sts) {
			t.Errorf("%s: reported quiescent", name)
		}
	}
}

// TestMarkdownNodes: a run with a region of several nodes shows each node's
// digest, the region's nodes and each failover with its failover_seconds.
func TestMarkdownNodes(t *testing.T) {
	rep := sampleReport()
	rep.Nodes = map[string][]string{"a": {"a-1", "a-2"}, "b": {"b"}}
	rep.Digests = map[string]string{"a-1": "abc", "a-2": "abc", "b": "abc"}
	rep.Records = map[string]int{"a-1": 3, "a-2": 3, "b": 3}
	rep.Conflicts = map[string]map[string]int{"default": {"a-1": 2, "a-2": 2, "b": 1}}
	rep.Failovers = []Failover{{Region: "a", Fault: "kill a/leader", Old: "a-1", New: "a-2", At: 3 * time.Second,
		ElectedSeconds: 2.6, Term: 2, FailoverSeconds: 2.45, FirstAck: "w9", Probes: 40}}
	rep.FailoverSeconds = 2.45
	md := Markdown(rep)
	for _, want := range []string{
		"| nodes of a | a-1, a-2 |",
		"| digest a-2 | abc (3 records) |",
		"| rule | a-1 | a-2 | b |",
		"| default | 2 | 2 | 1 |",
		"| failover a | kill a/leader at 3s: a-1 led; a-2 led from 2.60s after (status, term 2); failover_seconds 2.45 (from the fault to the first probe write another node acknowledged, w9, of 40 sent) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
