package testbed

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files WriteReport writes into a report directory.
const (
	ReportJSON     = "report.json"
	ReportMarkdown = "report.md"
	// LagPlotAll is the chart of every link's lag together.
	LagPlotAll = "lag.svg"
)

// LagPlotFile returns the name of a link's lag-over-time chart.
func LagPlotFile(link string) string {
	return "lag-" + strings.ReplaceAll(link, "->", "-to-") + ".svg"
}

// WriteReport writes rep into dir (created if needed): report.json (the
// whole Report), report.md (summary, checks, lag per link, conflicts by
// rule, fault timeline, WAN counters), one lag-over-time SVG per link and
// lag.svg with every link. Existing files of those names are replaced.
func WriteReport(dir string, rep *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report dir: %w", err)
	}
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	files := map[string][]byte{ReportJSON: append(j, '\n'), ReportMarkdown: []byte(Markdown(rep))}
	for name, svg := range lagPlots(rep) {
		files[name] = []byte(svg)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// writeAcked writes the acked writes, one JSON object a line.
func writeAcked(path string, acked []AckedWrite) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write acked writes: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, a := range acked {
		if err := enc.Encode(a); err != nil {
			f.Close()
			return fmt.Errorf("write acked writes: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write acked writes: %w", err)
	}
	return f.Close()
}

// faultWindows pairs each fault's start with its end for shading.
func faultWindows(events []FaultEvent, end time.Duration) []window {
	open := map[string]time.Duration{}
	var out []window
	for _, e := range events {
		switch e.Action {
		case "start":
			open[e.Fault] = e.At
		case "end":
			if at, ok := open[e.Fault]; ok {
				out = append(out, window{from: at.Seconds(), to: e.At.Seconds(), label: e.Fault})
				delete(open, e.Fault)
			}
		}
	}
	for _, f := range slices.Sorted(maps.Keys(open)) {
		out = append(out, window{from: open[f].Seconds(), to: end.Seconds(), label: f})
	}
	return out
}

// plotGap is the longest time between two lag samples of a link that the
// charts join with a line (samples come every 250ms unless the region is
// down).
const plotGap = 1.5

// lagPlots renders one chart per link and one with all links.
func lagPlots(rep *Report) map[string]string {
	by := map[string][][2]float64{}
	end := rep.Duration
	for _, s := range rep.LagSamples {
		by[s.Link] = append(by[s.Link], [2]float64{s.At.Seconds(), s.Lag})
		end = max(end, s.At)
	}
	shades := faultWindows(rep.Faults, end)
	out := map[string]string{}
	var all []series
	for i, l := range rep.Links {
		s := series{name: l, color: palette[i%len(palette)], points: by[l]}
		all = append(all, s)
		out[LagPlotFile(l)] = lineChart(fmt.Sprintf("%s: lag of link %s", rep.Scenario, l),
			"seconds since the workload started", "lag (s)", []series{s}, shades, rep.Duration.Seconds(), plotGap)
	}
	out[LagPlotAll] = lineChart(rep.Scenario+": lag of every link", "seconds since the workload started", "lag (s)",
		all, shades, rep.Duration.Seconds(), plotGap)
	return out
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// mdEscape keeps a table cell on one line and its pipes literal.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// Markdown renders the report as Markdown.
func Markdown(rep *Report) string {
	var b strings.Builder
	form := ""
	if rep.Short {
		form = " (short form)"
	}
	fmt.Fprintf(&b, "# %s%s: %s\n\n", rep.Scenario, form, verdict(rep.Pass))
	if rep.Description != "" {
		fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(rep.Description))
	}
	w := rep.Workload
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, mdEscape(v)) }
	row("source", rep.Source)
	row("mode", string(rep.Mode))
	if rep.Security {
		row("security", "on: HTTPS with bearer tokens, NATS with TLS and per-region credentials")
	}
	row("regions", strings.Join(rep.Regions, ", "))
	row("topology", rep.Topology)
	row("started", rep.Started.UTC().Format(time.RFC3339))
	quiesce := rep.Quiesced.Round(time.Millisecond).String()
	if rep.QuiesceTimedOut {
		quiesce = "did not converge within the bound (" + quiesce + ")"
	}
	row("duration", fmt.Sprintf("%s workload; %s in all; quiesced in %s", rep.Duration, rep.Elapsed.Round(time.Millisecond), quiesce))
	row("operations", fmt.Sprintf("%d (%d writes, %d acked, %d failed; %d hot-key operations writing one key at several regions at once)", w.Ops, w.Writes, w.Acked, failed(w), w.ConflictWrites))
	row("write latency", fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms", w.WriteLatency.P50, w.WriteLatency.P99, w.WriteLatency.Max))
	row("reads", countsText(w.Reads))
	row("session reads", fmt.Sprintf("%d", w.SessionReads))
	if len(w.WriteErrors) > 0 {
		row("write errors", countsText(w.WriteErrors))
		for _, why := range slices.Sorted(maps.Keys(w.WriteErrorSamples)) {
			row("first "+why, w.WriteErrorSamples[why])
		}
	}
	for _, r := range rep.Regions {
		if ns := rep.Nodes[r]; len(ns) > 1 {
			row("nodes of "+r, strings.Join(ns, ", "))
		}
	}
	for _, u := range rep.units() {
		row("digest "+u, fmt.Sprintf("%s (%d records)", shortHexString(rep.Digests[u]), rep.Records[u]))
	}
	for _, fo := range rep.Failovers {
		text := fmt.Sprintf("%s at %s: %s led", fo.Fault, fo.At.Round(time.Millisecond), fo.Old)
		if fo.New != "" {
			text += fmt.Sprintf("; %s led from %.2fs after (status, term %d)", fo.New, fo.ElectedSeconds, fo.Term)
		}
		if fo.OldProbes > 0 {
			text += fmt.Sprintf("; %d writes sent to %s itself while frozen and just after, %d acknowledged", fo.OldProbes, fo.Old, fo.OldAcked)
		}
		if fo.FirstAck != "" {
			text += fmt.Sprintf("; failover_seconds %.2f (from the fault to the first probe write another node acknowledged, %s, of %d sent)", fo.FailoverSeconds, fo.FirstAck, fo.Probes)
		} else {
			text += "; no write acknowledged by another node after it"
		}
		row("failover "+fo.Region, text)
	}
	for _, r := range rep.Regions {
		if l := rep.Lifecycle[r]; l != (LifecycleStats{}) {
			row("lifecycle "+r, fmt.Sprintf("%d records damaged, %d repaired by anti-entropy (%d ranges compared), %d re-seeds, %d tombstones collected",
				l.Damaged, l.Repaired, l.Compared, l.Reseeds, l.Collected))
		}
	}

	fmt.Fprintf(&b, "\n## Checks\n\n| check | result | summary |\n|---|---|---|\n")
	for _, c := range rep.Checks {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.Name, verdict(c.Pass), mdEscape(c.Summary))
	}
	for _, c := range rep.Checks {
		if len(c.Details) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s (%s):\n\n", c.Name, verdict(c.Pass))
		for _, d := range c.Details {
			fmt.Fprintf(&b, "- %s\n", d)
		}
	}

	fmt.Fprintf(&b, "\n## Lag per link (seconds)\n\n| link | samples | p50 | p99 | max | plot |\n|---|---|---|---|---|---|\n")
	for _, l := range rep.Links {
		p := rep.Lag[l]
		fmt.Fprintf(&b, "| %s | %d | %.3f | %.3f | %.3f | [svg](%s) |\n", l, p.N, p.P50, p.P99, p.Max, LagPlotFile(l))
	}
	fmt.Fprintf(&b, "\n![lag of every link](%s)\n", LagPlotAll)

	fmt.Fprintf(&b, "\n## Conflicts by rule\n\n")
	if len(rep.Conflicts) == 0 {
		fmt.Fprintf(&b, "No conflict was logged.\n")
	} else {
		units := rep.units()
		fmt.Fprintf(&b, "| rule | %s |\n|---|%s\n", strings.Join(units, " | "), strings.Repeat("---|", len(units)))
		for _, rule := range slices.Sorted(maps.Keys(rep.Conflicts)) {
			cells := make([]string, len(units))
			for i, r := range units {
				cells[i] = fmt.Sprint(rep.Conflicts[rule][r])
			}
			fmt.Fprintf(&b, "| %s | %s |\n", rule, strings.Join(cells, " | "))
		}
	}

	fmt.Fprintf(&b, "\n## Fault timeline\n\n")
	if len(rep.Faults) == 0 {
		fmt.Fprintf(&b, "No faults.\n")
	} else {
		fmt.Fprintf(&b, "| at | action | fault | took | error |\n|---|---|---|---|---|\n")
		for _, f := range rep.Faults {
			fault := f.Fault
			if f.Detail != "" {
				fault += ": " + f.Detail
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.At.Round(time.Millisecond), f.Action, mdEscape(fault),
				f.Took.Round(time.Millisecond), mdEscape(f.Err))
		}
	}

	fmt.Fprintf(&b, "\n## Emulated WAN\n\n| link | connections | refused | cut | dropped | bytes to receiver | bytes to source |\n|---|---|---|---|---|---|---|\n")
	for _, l := range slices.Sorted(maps.Keys(rep.WAN)) {
		s := rep.WAN[l]
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d |\n", l, s.Accepted, s.Refused, s.Cut, s.Dropped, s.BytesDown, s.BytesUp)
	}
	return b.String()
}

func shortHexString(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

func countsText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// Summary renders the verdict and one line per check, for a terminal:
//
//	wan-3-regions: PASS (6s workload, 461 acked writes, 8.2s in all)
//	  PASS convergence   3 regions, digest 58d8c99b7b81, 103 records
//	  ...
func (rep *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%s workload, %d acked writes, %s in all)\n", rep.Scenario, verdict(rep.Pass),
		rep.Duration, rep.Workload.Acked, rep.Elapsed.Round(100*time.Millisecond))
	for _, c := range rep.Checks {
		fmt.Fprintf(&b, "  %s %-13s %s\n", verdict(c.Pass), c.Name, c.Summary)
		if !c.Pass {
			for _, d := range c.Details {
				fmt.Fprintf(&b, "       %s\n", d)
			}
		}
	}
	return b.String()
}
