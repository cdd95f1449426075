package testbed

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/geogate/geogate/conflict"
)

// The checkers are pure functions over what a run collected: the acked
// writes, session reads, lag samples and every region's final state. Each
// returns a CheckResult; none does I/O.

// maxDetails bounds the problems a CheckResult lists.
const maxDetails = 20

// CheckResult is one checker's verdict.
type CheckResult struct {
	// Name is the check: convergence, lost_writes, sessions, lag,
	// conflicts, min_acked, write_errors.
	Name string `json:"name"`
	Pass bool   `json:"pass"`
	// Summary is one line for the report's table.
	Summary string `json:"summary"`
	// Details lists the first problems found (at most 20).
	Details []string `json:"details,omitempty"`
}

func (r *CheckResult) addDetail(format string, args ...any) {
	if len(r.Details) < maxDetails {
		r.Details = append(r.Details, fmt.Sprintf(format, args...))
	}
}

// CheckConvergence passes when every region's digest is equal. When they
// differ it names the keys whose records differ (by canonical encoding)
// between the first region and each other one.
func CheckConvergence(states []RegionState) CheckResult {
	res := CheckResult{Name: "convergence", Pass: true}
	if len(states) == 0 {
		res.Pass, res.Summary = false, "no region state collected"
		return res
	}
	ref := states[0]
	var differ []string
	for _, s := range states[1:] {
		if bytes.Equal(s.Digest, ref.Digest) {
			continue
		}
		res.Pass = false
		differ = append(differ, s.Region)
		for _, key := range diffKeys(ref.Records, s.Records) {
			res.addDetail("key %q differs between %s and %s", key, ref.Region, s.Region)
		}
	}
	if res.Pass {
		res.Summary = fmt.Sprintf("%d regions, digest %s, %d records", len(states), shortHex(ref.Digest), len(ref.Records))
	} else {
		res.Summary = fmt.Sprintf("digests differ: %s vs %s", ref.Region, strings.Join(differ, ", "))
	}
	return res
}

func shortHex(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// diffKeys returns, sorted, the keys whose records differ between a and b.
func diffKeys(a, b map[string]conflict.Record) []string {
	var out []string
	for k, ra := range a {
		rb, ok := b[k]
		if !ok || !bytes.Equal(ra.MarshalCanonical(), rb.MarshalCanonical()) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// LostWriteStats says how each acknowledged write was accounted for, per
// region (a write counts once per region).
type LostWriteStats struct {
	// InFrontier: the version is in the region's final frontier.
	InFrontier int `json:"in_frontier"`
	// Superseded: its dot is covered by the record's Seen (a later write's
	// context covered it).
	Superseded int `json:"superseded"`
	// InConflictLog: a rule collapsed it away and a conflict log holds it.
	InConflictLog int `json:"in_conflict_log"`
	// Lost: none of the above.
	Lost int `json:"lost"`
	// DotMismatches counts writes whose dot recovered from the answer
	// differs from the dot of the version found by its id (a testbed or
	// gateway bug; the found dot is used).
	DotMismatches int `json:"dot_mismatches"`
}

// CheckLostWrites passes when, at every region, every acknowledged write is
// in the final frontier, superseded by a write whose context covered it
// (the record's Seen covers its dot), or in a conflict log (any region's:
// the log entry is the durable trace of a collapsed version). Versions are
// matched by dot, or by the id in the document when the dot is unknown.
func CheckLostWrites(acked []AckedWrite, states []RegionState) (CheckResult, LostWriteStats) {
	res := CheckResult{Name: "lost_writes", Pass: true}
	var st LostWriteStats

	// Every version any conflict log holds, by dot and by id.
	loggedDots := map[conflict.Dot]bool{}
	loggedIDs := map[string]bool{}
	note := func(v conflict.Version) {
		loggedDots[v.Dot] = true
		if id := valueID(v.Value); id != "" {
			loggedIDs[id] = true
		}
	}
	// Where each id sits in a frontier (its true dot).
	foundDot := map[string]conflict.Dot{}
	for _, s := range states {
		for _, e := range s.Conflicts {
			if e.Kept != nil {
				note(*e.Kept)
			}
			for _, v := range e.Discarded {
				note(v)
			}
		}
		for _, rec := range s.Records {
			for _, v := range rec.Versions {
				if id := valueID(v.Value); id != "" {
					foundDot[id] = v.Dot
				}
			}
		}
	}

	for _, a := range acked {
		dot := a.Dot
		if d, ok := foundDot[a.ID]; ok {
			if dot != (conflict.Dot{}) && d != dot {
				st.DotMismatches++
				res.addDetail("write %s: the answer named dot %s but the version has dot %s", a.ID, dot, d)
			}
			dot = d
		}
		known := dot != (conflict.Dot{})
		for _, s := range states {
			rec := s.Records[a.Key]
			switch {
			case inFrontier(rec, a.ID, dot):
				st.InFrontier++
			case known && rec.Seen.Covers(dot):
				st.Superseded++
			case loggedIDs[a.ID] || (known && loggedDots[dot]):
				st.InConflictLog++
			default:
				st.Lost++
				res.Pass = false
				dotText := "unknown dot"
				if known {
					dotText = "dot " + dot.String()
				}
				res.addDetail("write %s of %q acked by %s at %s (%s) is missing at %s", a.ID, a.Key, a.Region,
					a.At.Round(time.Millisecond), dotText, s.Region)
			}
		}
	}
	if len(states) == 0 {
		res.Pass = false
		res.Summary = "no region state collected"
		return res, st
	}
	if st.DotMismatches > 0 {
		res.Pass = false
	}
	res.Summary = fmt.Sprintf("%d acked writes x %d regions: %d in frontier, %d superseded, %d in conflict log, %d lost",
		len(acked), len(states), st.InFrontier, st.Superseded, st.InConflictLog, st.Lost)
	if st.DotMismatches > 0 {
		res.Summary += fmt.Sprintf(", %d dot mismatches", st.DotMismatches)
	}
	return res, st
}

// inFrontier reports whether the record's frontier holds the write: by its
// dot when known (always, with a gateway that names it), else by the id in
// its document (which costs a JSON decode per version).
func inFrontier(rec conflict.Record, id string, dot conflict.Dot) bool {
	for _, v := range rec.Versions {
		if dot != (conflict.Dot{}) {
			if v.Dot == dot {
				return true
			}
		} else if id != "" && valueID(v.Value) == id {
			return true
		}
	}
	return false
}

// CheckSessions counts session reads that failed (Violation set) against
// the bound. Without a bound it reports and passes.
func CheckSessions(reads []SessionRead, bound *SessionBound) CheckResult {
	res := CheckResult{Name: "sessions", Pass: true}
	byKind := map[string]int{}
	violations := 0
	for _, r := range reads {
		if r.Violation == "" {
			continue
		}
		violations++
		byKind[r.Violation]++
		res.addDetail("read of %q at %s after a write at %s, %s in: %s", r.Key, r.ReadRegion, r.WriteRegion,
			r.At.Round(time.Millisecond), r.Violation)
	}
	ratio := 0.0
	if len(reads) > 0 {
		ratio = float64(violations) / float64(len(reads))
	}
	res.Summary = fmt.Sprintf("%d of %d session reads violated (%.2f%%)%s", violations, len(reads), 100*ratio, kindsText(byKind))
	switch {
	case bound == nil:
		res.Summary += "; not bounded"
	case bound.MaxRatio > 0:
		res.Pass = ratio <= bound.MaxRatio
		res.Summary += fmt.Sprintf("; bound %.2f%%", 100*bound.MaxRatio)
	default:
		res.Pass = violations <= bound.MaxViolations
		res.Summary += fmt.Sprintf("; bound %d", bound.MaxViolations)
	}
	return res
}

func kindsText(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " [" + strings.Join(parts, ", ") + "]"
}

// Percentiles summarise a sample (nearest-rank percentiles).
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// percentiles computes nearest-rank percentiles of values (not modified).
func percentiles(values []float64) Percentiles {
	if len(values) == 0 {
		return Percentiles{}
	}
	v := slices.Clone(values)
	sort.Float64s(v)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(v)))) - 1
		return v[min(max(i, 0), len(v)-1)]
	}
	return Percentiles{N: len(v), P50: rank(0.50), P99: rank(0.99), Max: v[len(v)-1]}
}

// LagByLink computes each link's lag percentiles (seconds) from samples.
func LagByLink(samples []LagSample) map[string]Percentiles {
	by := map[string][]float64{}
	for _, s := range samples {
		by[s.Link] = append(by[s.Link], s.Lag)
	}
	out := make(map[string]Percentiles, len(by))
	for l, v := range by {
		out[l] = percentiles(v)
	}
	return out
}

// CheckLag passes when every link's percentiles are within the bound (a
// zero bound field is unbounded). Without a bound it reports and passes; a
// link with no sample fails a bound.
func CheckLag(lag map[string]Percentiles, links []string, bound *LagBound) CheckResult {
	res := CheckResult{Name: "lag", Pass: true}
	worst := Percentiles{}
	for _, l := range links {
		p, ok := lag[l]
		if !ok || p.N == 0 {
			if bound != nil {
				res.Pass = false
				res.addDetail("link %s: no lag sample", l)
			}
			continue
		}
		worst.P50, worst.P99, worst.Max = max(worst.P50, p.P50), max(worst.P99, p.P99), max(worst.Max, p.Max)
		if bound == nil {
			continue
		}
		for _, c := range []struct {
			name  string
			got   float64
			limit time.Duration
		}{{"p50", p.P50, bound.P50}, {"p99", p.P99, bound.P99}, {"max", p.Max, bound.Max}} {
			if c.limit > 0 && c.got > c.limit.Seconds() {
				res.Pass = false
				res.addDetail("link %s: %s lag %.3fs over the bound %s", l, c.name, c.got, c.limit)
			}
		}
	}
	res.Summary = fmt.Sprintf("%d links, worst p50 %.3fs, p99 %.3fs, max %.3fs", len(links), worst.P50, worst.P99, worst.Max)
	if bound == nil {
		res.Summary += "; not bounded"
	} else {
		res.Summary += "; bound" + boundText(bound)
	}
	return res
}

func boundText(b *LagBound) string {
	var parts []string
	for _, c := range []struct {
		name string
		d    time.Duration
	}{{"p50", b.P50}, {"p99", b.P99}, {"max", b.Max}} {
		if c.d > 0 {
			parts = append(parts, fmt.Sprintf(" %s<=%s", c.name, c.d))
		}
	}
	return strings.Join(parts, ",")
}

// ConflictsByRule counts conflict-log entries by rule, then region.
func ConflictsByRule(states []RegionState) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, s := range states {
		for _, e := range s.Conflicts {
			if out[e.Rule] == nil {
				out[e.Rule] = map[string]int{}
			}
			out[e.Rule][s.Region]++
		}
	}
	return out
}

// CheckConflicts holds each bounded rule's count to its range. A rule's
// count is the largest count among regions: every region logs the
// conflicts it resolves, so the regions' counts are alike but not equal
// (a region that saw the versions arrive together logs once, one that saw
// them one by one may log more).
func CheckConflicts(byRule map[string]map[string]int, bounds map[string]CountBound) CheckResult {
	res := CheckResult{Name: "conflicts", Pass: true}
	var parts []string
	for _, rule := range slices.Sorted(maps.Keys(byRule)) {
		parts = append(parts, fmt.Sprintf("%s %d", rule, maxCount(byRule[rule])))
	}
	for _, rule := range slices.Sorted(maps.Keys(bounds)) {
		b := bounds[rule]
		n := maxCount(byRule[rule])
		if n < b.Min {
			res.Pass = false
			res.addDetail("rule %s: %d conflicts, want at least %d", rule, n, b.Min)
		}
		if b.Max != nil && n > *b.Max {
			res.Pass = false
			res.addDetail("rule %s: %d conflicts, want at most %d", rule, n, *b.Max)
		}
	}
	if len(parts) == 0 {
		res.Summary = "no conflicts logged"
	} else {
		res.Summary = "by rule (most at one region): " + strings.Join(parts, ", ")
	}
	if len(bounds) == 0 {
		res.Summary += "; not bounded"
	}
	return res
}

func maxCount(m map[string]int) int {
	n := 0
	for _, v := range m {
		n = max(n, v)
	}
	return n
}

// CheckWorkload holds the workload to the scenario's floor of acked
// writes and ceiling of failed writes.
func CheckWorkload(stats WorkloadStats, c Checks) []CheckResult {
	var out []CheckResult
	if c.MinAcked > 0 {
		r := CheckResult{Name: "min_acked", Pass: stats.Acked >= uint64(c.MinAcked),
			Summary: fmt.Sprintf("%d writes acked; at least %d required", stats.Acked, c.MinAcked)}
		out = append(out, r)
	}
	if c.MaxWriteErrors != nil {
		failed := uint64(0)
		for _, n := range stats.WriteErrors {
			failed += uint64(n)
		}
		ratio := 0.0
		if stats.Writes > 0 {
			ratio = float64(failed) / float64(stats.Writes)
		}
		r := CheckResult{Name: "write_errors", Pass: ratio <= *c.MaxWriteErrors,
			Summary: fmt.Sprintf("%d of %d writes failed (%.2f%%)%s; bound %.2f%%", failed, stats.Writes, 100*ratio,
				kindsText(stats.WriteErrors), 100**c.MaxWriteErrors)}
		out = append(out, r)
	}
	if len(c.WriteErrors) > 0 {
		r := CheckResult{Name: "write_error_kinds", Pass: true, Summary: "write errors by reason:" + kindsText(stats.WriteErrors)}
		for _, kind := range slices.Sorted(maps.Keys(c.WriteErrors)) {
			b, n := c.WriteErrors[kind], stats.WriteErrors[kind]
			if n < b.Min {
				r.Pass = false
				r.addDetail("%s: %d, want at least %d", kind, n, b.Min)
			}
			if b.Max != nil && n > *b.Max {
				r.Pass = false
				r.addDetail("%s: %d, want at most %d", kind, n, *b.Max)
			}
		}
		out = append(out, r)
	}
	return out
}

// CheckClockBound holds every write acknowledged at or after b.From to an
// HLC at most b.Max ahead of the real time it was acknowledged: a region
// whose clock ran ahead must not keep stamping its writes from the future
// once the clock is corrected.
func CheckClockBound(acked []AckedWrite, b ClockBound) CheckResult {
	r := CheckResult{Name: "clock_bound", Pass: true}
	n := 0
	var worst time.Duration
	for _, a := range acked {
		if a.At < b.From || a.HLC.IsZero() {
			continue
		}
		n++
		lead := time.Duration(a.HLC.Wall-a.AckedUnixMs) * time.Millisecond
		worst = max(worst, lead)
		if lead > b.Max {
			r.Pass = false
			r.addDetail("write %s at %s (acked at %s): HLC %s is %s ahead of real time", a.ID, a.Region, a.At.Round(time.Millisecond), a.HLC, lead)
		}
	}
	r.Summary = fmt.Sprintf("%d writes acked from %s on; the largest HLC lead over real time %s; bound %s", n, b.From, worst, b.Max)
	if n == 0 {
		r.Pass = false
		r.addDetail("no write acknowledged from %s on: nothing to check", b.From)
	}
	return r
}

// CheckAntiEntropy holds the run to having repaired at least b.MinRepaired
// records by anti-entropy, summed over the regions, and, when corrupt
// faults damaged records, to having repaired some in each region damaged.
// Convergence (CheckConvergence) says whether the repair was complete.
func CheckAntiEntropy(life map[string]LifecycleStats, b AntiEntropyBound) CheckResult {
	res := CheckResult{Name: "anti_entropy", Pass: true}
	total, damaged := uint64(0), 0
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(life)) {
		l := life[r]
		total += l.Repaired
		damaged += l.Damaged
		parts = append(parts, fmt.Sprintf("%s %d", r, l.Repaired))
		if l.Damaged > 0 && l.Repaired == 0 {
			res.Pass = false
			res.addDetail("%s: %d records damaged, none repaired there", r, l.Damaged)
		}
	}
	if total < uint64(b.MinRepaired) {
		res.Pass = false
		res.addDetail("%d records repaired, want at least %d", total, b.MinRepaired)
	}
	res.Summary = fmt.Sprintf("%d records repaired (%s) of %d damaged; at least %d required", total, strings.Join(parts, ", "), damaged, b.MinRepaired)
	return res
}

// CheckReseeds bounds the re-seeds from a peer's snapshot, summed over the
// regions.
func CheckReseeds(life map[string]LifecycleStats, b CountBound) CheckResult {
	res := CheckResult{Name: "reseeds", Pass: true}
	total := 0
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(life)) {
		total += life[r].Reseeds
		parts = append(parts, fmt.Sprintf("%s %d", r, life[r].Reseeds))
	}
	if total < b.Min || (b.Max != nil && total > *b.Max) {
		res.Pass = false
	}
	bound := fmt.Sprintf("at least %d", b.Min)
	if b.Max != nil {
		bound += fmt.Sprintf(", at most %d", *b.Max)
	}
	res.Summary = fmt.Sprintf("%d re-seeds (%s); %s", total, strings.Join(parts, ", "), bound)
	return res
}
