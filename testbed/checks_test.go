package testbed

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/store"
)

func doc(id string) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"w":%q}`, id)) }

// digestOf is a digest of records for the tests (not the store's): only
// equality between regions matters.
func digestOf(records map[string]conflict.Record) []byte {
	h := sha256.New()
	keys := make([]string, 0, len(records))
	for k := range records {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write(records[k].MarshalCanonical())
	}
	return h.Sum(nil)
}

func state(region string, records map[string]conflict.Record, log ...store.ConflictEntry) RegionState {
	return RegionState{Region: region, Digest: digestOf(records), Records: records, Conflicts: log}
}

// history is a small set of writes to one key: w1 at a, w2 at b
// concurrently, then w3 at a with a context covering both.
type history struct {
	w1, w2, w3 conflict.Event
	final      conflict.Record // every event applied
}

func newHistory() history {
	var h history
	var ra, rb conflict.Record
	write := func(r conflict.Record, dot conflict.Dot, ctx conflict.VV, v json.RawMessage, wall int64) (conflict.Record, conflict.Event) {
		next, ev, _, err := r.Write(dot, ctx, v, false, conflict.HLC{Wall: wall})
		if err != nil {
			panic(err)
		}
		return next, ev
	}
	ra, h.w1 = write(ra, conflict.Dot{Actor: "a~1", Counter: 1}, nil, doc("w1"), 1)
	rb, h.w2 = write(rb, conflict.Dot{Actor: "b~1", Counter: 1}, nil, doc("w2"), 2)
	ra, _ = ra.Apply(h.w2)
	ra, h.w3 = write(ra, conflict.Dot{Actor: "a~1", Counter: 2}, ra.Context(), doc("w3"), 3)
	rb, _ = rb.Apply(h.w1)
	rb, _ = rb.Apply(h.w3)
	h.final = ra
	if !ra.Equal(rb) {
		panic("history does not converge")
	}
	return h
}

func ack(ev conflict.Event, key string) AckedWrite {
	return AckedWrite{ID: valueID(ev.Version.Value), Key: key, Region: ev.Version.Origin, Dot: ev.Version.Dot}
}

func TestCheckConvergence(t *testing.T) {
	h := newHistory()
	same := map[string]conflict.Record{"k": h.final}
	var partial conflict.Record
	partial, _ = partial.Apply(h.w1)
	cases := []struct {
		name   string
		states []RegionState
		pass   bool
		detail string
	}{
		{"equal", []RegionState{state("a", same), state("b", same), state("c", same)}, true, ""},
		{"one behind", []RegionState{state("a", same), state("b", map[string]conflict.Record{"k": partial})}, false, `key "k" differs between a and b`},
		{"key missing", []RegionState{state("a", same), state("b", map[string]conflict.Record{})}, false, `key "k" differs`},
		{"nothing collected", nil, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := CheckConvergence(tc.states)
			if res.Pass != tc.pass {
				t.Fatalf("pass = %v, want %v (%s)", res.Pass, tc.pass, res.Summary)
			}
			if tc.detail != "" && (len(res.Details) == 0 || !strings.Contains(res.Details[0], tc.detail)) {
				t.Fatalf("details = %q, want one containing %q", res.Details, tc.detail)
			}
		})
	}
}

func TestCheckLostWrites(t *testing.T) {
	h := newHistory()
	final := map[string]conflict.Record{"k": h.final}
	all := []AckedWrite{ack(h.w1, "k"), ack(h.w2, "k"), ack(h.w3, "k")}

	// w2 collapsed away by a rule at b and logged there; the frontier and
	// Seen of the region state below do not hold it.
	var onlyW1 conflict.Record
	onlyW1, _ = onlyW1.Apply(h.w1)
	logged := store.ConflictEntry{Key: "k", Rule: "default", Kept: &h.w1.Version, Discarded: []conflict.Version{h.w2.Version}}

	unknownDot := ack(h.w3, "k")
	unknownDot.Dot = conflict.Dot{}
	wrongDot := ack(h.w3, "k")
	wrongDot.Dot = conflict.Dot{Actor: "a~1", Counter: 99}
	ghost := AckedWrite{ID: "w9", Key: "k", Region: "a", Dot: conflict.Dot{Actor: "a~1", Counter: 7}}
	ghostNoDot := AckedWrite{ID: "w9", Key: "k", Region: "a"}

	cases := []struct {
		name   string
		acked  []AckedWrite
		states []RegionState
		pass   bool
		want   LostWriteStats
		detail string
	}{
		{"all accounted", all, []RegionState{state("a", final), state("b", final)}, true,
			LostWriteStats{InFrontier: 2, Superseded: 4}, ""},
		{"collapsed and logged", []AckedWrite{ack(h.w1, "k"), ack(h.w2, "k")},
			[]RegionState{state("a", map[string]conflict.Record{"k": onlyW1}), state("b", map[string]conflict.Record{"k": onlyW1}, logged)}, true,
			LostWriteStats{InFrontier: 2, InConflictLog: 2}, ""},
		{"missing at one region", all, []RegionState{state("a", final), state("b", map[string]conflict.Record{"k": onlyW1})}, false,
			LostWriteStats{InFrontier: 2, Superseded: 2, Lost: 2}, "missing at b"},
		{"key absent", []AckedWrite{ack(h.w1, "k")}, []RegionState{state("a", map[string]conflict.Record{})}, false,
			LostWriteStats{Lost: 1}, "dot a~1:1"},
		{"unknown dot found by id", []AckedWrite{unknownDot}, []RegionState{state("a", final)}, true,
			LostWriteStats{InFrontier: 1}, ""},
		{"unknown dot and absent", []AckedWrite{ghostNoDot}, []RegionState{state("a", final)}, false,
			LostWriteStats{Lost: 1}, "unknown dot"},
		{"dot never seen", []AckedWrite{ghost}, []RegionState{state("a", final)}, false,
			LostWriteStats{Lost: 1}, "dot a~1:7"},
		{"dot mismatch", []AckedWrite{wrongDot}, []RegionState{state("a", final)}, false,
			LostWriteStats{InFrontier: 1, DotMismatches: 1}, "the answer named dot a~1:99"},
		{"no states", all, nil, false, LostWriteStats{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, st := CheckLostWrites(tc.acked, tc.states)
			if res.Pass != tc.pass {
				t.Fatalf("pass = %v, want %v (%s; %q)", res.Pass, tc.pass, res.Summary, res.Details)
			}
			if st != tc.want {
				t.Fatalf("stats = %+v, want %+v", st, tc.want)
			}
			if tc.detail != "" && (len(res.Details) == 0 || !strings.Contains(res.Details[0], tc.detail)) {
				t.Fatalf("details = %q, want one containing %q", res.Details, tc.detail)
			}
		})
	}
}

// TestLostWritesLaw checks the checker against the causality core: when
// every region has applied every event (in its own order) no write is lost;
// when one region misses an event that no other event supersedes, the
// checker reports exactly that write lost there.
func TestLostWritesLaw(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		actors := []string{"a~1", "b~1", "c~1"}
		keys := []string{"x", "y"}
		// Each actor writes at its own replica; contexts come from what
		// that replica has seen so far, sometimes none (siblings).
		replicas := map[string]map[string]conflict.Record{}
		for _, a := range actors {
			replicas[a] = map[string]conflict.Record{}
		}
		var events []conflict.Event
		var acked []AckedWrite
		pos := map[string]uint64{}
		for i := range rapid.IntRange(1, 25).Draw(t, "writes") {
			a := rapid.SampledFrom(actors).Draw(t, "actor")
			k := rapid.SampledFrom(keys).Draw(t, "key")
			// Sometimes first catch up on a random earlier event.
			if len(events) > 0 && rapid.Bool().Draw(t, "catch up") {
				ev := rapid.SampledFrom(events).Draw(t, "event")
				replicas[a][ev.Key], _ = replicas[a][ev.Key].Apply(ev)
			}
			var ctx conflict.VV
			if rapid.Bool().Draw(t, "with context") {
				ctx = replicas[a][k].Context()
			}
			id := fmt.Sprintf("w%d", i)
			pos[a]++ // an actor's dots are positions in its own log
			rec, ev, _, err := replicas[a][k].Write(conflict.Dot{Actor: a, Counter: pos[a]}, ctx, doc(id), false, conflict.HLC{Wall: int64(i)})
			if err != nil {
				t.Fatal(err)
			}
			ev.Key = k
			replicas[a][k] = rec
			events = append(events, ev)
			acked = append(acked, AckedWrite{ID: id, Key: k, Region: conflict.RegionOf(a), Dot: ev.Version.Dot})
		}
		applyAll := func(evs []conflict.Event) map[string]conflict.Record {
			out := map[string]conflict.Record{}
			for _, ev := range evs {
				out[ev.Key], _ = out[ev.Key].Apply(ev)
			}
			return out
		}
		var states []RegionState
		for i := range 3 {
			perm := rapid.Permutation(events).Draw(t, fmt.Sprintf("order %d", i))
			states = append(states, state(fmt.Sprintf("r%d", i), applyAll(perm)))
		}
		if res, st := CheckLostWrites(acked, states); !res.Pass || st.Lost != 0 {
			t.Fatalf("full delivery reported lost writes: %s %q", res.Summary, res.Details)
		}
		if res := CheckConvergence(states); !res.Pass {
			t.Fatalf("full delivery did not converge: %s", res.Summary)
		}

		// Drop one event at one region. It is lost there unless a later
		// event's context covers it.
		victim := rapid.IntRange(0, len(events)-1).Draw(t, "victim")
		rest := slices.Delete(slices.Clone(events), victim, victim+1)
		short := state("short", applyAll(rest))
		covered := short.Records[events[victim].Key].Seen.Covers(events[victim].Version.Dot)
		res, st := CheckLostWrites(acked, []RegionState{short})
		switch {
		case covered && (!res.Pass || st.Lost != 0):
			t.Fatalf("a superseded write was reported lost: %q", res.Details)
		case !covered && (res.Pass || st.Lost != 1 || !strings.Contains(res.Details[0], "write "+acked[victim].ID+" ")):
			t.Fatalf("dropping %s: pass=%v lost=%d details=%q; want exactly it lost", acked[victim].ID, res.Pass, st.Lost, res.Details)
		}
	})
}

func TestCheckSessions(t *testing.T) {
	ok := SessionRead{Key: "k", Status: 200}
	stale := SessionRead{Key: "k", Status: 503, Violation: "stale", ReadRegion: "b", WriteRegion: "a"}
	missing := SessionRead{Key: "k", Status: 404, Violation: "missing"}
	cases := []struct {
		name  string
		reads []SessionRead
		bound *SessionBound
		pass  bool
	}{
		{"none violated, zero bound", []SessionRead{ok, ok}, &SessionBound{}, true},
		{"one stale, zero bound", []SessionRead{ok, stale}, &SessionBound{}, false},
		{"within count", []SessionRead{ok, stale, missing}, &SessionBound{MaxViolations: 2}, true},
		{"within ratio", []SessionRead{ok, ok, ok, stale}, &SessionBound{MaxRatio: 0.3}, true},
		{"over ratio", []SessionRead{ok, stale}, &SessionBound{MaxRatio: 0.3}, false},
		{"unbounded", []SessionRead{stale}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := CheckSessions(tc.reads, tc.bound)
			if res.Pass != tc.pass {
				t.Fatalf("pass = %v, want %v (%s)", res.Pass, tc.pass, res.Summary)
			}
		})
	}
	res := CheckSessions([]SessionRead{ok, stale, missing}, nil)
	if !strings.Contains(res.Summary, "2 of 3") || !strings.Contains(res.Summary, "missing 1, stale 1") {
		t.Fatalf("summary %q does not count the violations by kind", res.Summary)
	}
}

func TestPercentiles(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // descending: percentiles must sort
	}
	cases := []struct {
		name string
		in   []float64
		want Percentiles
	}{
		{"empty", nil, Percentiles{}},
		{"one", []float64{3}, Percentiles{N: 1, P50: 3, P99: 3, Max: 3}},
		{"hundred", hundred, Percentiles{N: 100, P50: 50, P99: 99, Max: 100}},
		{"two", []float64{2, 1}, Percentiles{N: 2, P50: 1, P99: 2, Max: 2}},
	}
	for _, tc := range cases {
		if got := percentiles(tc.in); got != tc.want {
			t.Errorf("%s: percentiles = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if hundred[0] != 100 {
		t.Fatal("percentiles sorted its input in place")
	}
}

func TestPercentilesOrdered(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := rapid.SliceOfN(rapid.Float64Range(0, 1e6), 1, 200).Draw(t, "values")
		p := percentiles(v)
		if p.N != len(v) || p.P50 > p.P99 || p.P99 > p.Max || p.Max != slices.Max(v) {
			t.Fatalf("percentiles(%v) = %+v: want n, p50 <= p99 <= max = the largest value", v, p)
		}
	})
}

func TestCheckLag(t *testing.T) {
	var samples []LagSample
	for i := range 100 {
		samples = append(samples, LagSample{Link: "a->b", Lag: 0.1}, LagSample{Link: "b->a", Lag: float64(i) / 10})
	}
	lag := LagByLink(samples)
	if lag["a->b"].Max != 0.1 || lag["b->a"].P99 != 9.8 {
		t.Fatalf("LagByLink = %+v", lag)
	}
	links := []string{"a->b", "b->a"}
	cases := []struct {
		name  string
		links []string
		bound *LagBound
		pass  bool
	}{
		{"unbounded", links, nil, true},
		{"loose", links, &LagBound{P50: 5 * time.Second, P99: 10 * time.Second, Max: 10 * time.Second}, true},
		{"p99 over", links, &LagBound{P99: 5 * time.Second}, false},
		{"max over", links, &LagBound{Max: 9 * time.Second}, false},
		{"link without samples", []string{"a->b", "c->a"}, &LagBound{Max: time.Minute}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := CheckLag(lag, tc.links, tc.bound)
			if res.Pass != tc.pass {
				t.Fatalf("pass = %v, want %v (%s %q)", res.Pass, tc.pass, res.Summary, res.Details)
			}
		})
	}
}

func TestConflictsByRuleAndBounds(t *testing.T) {
	e := func(rule string) store.ConflictEntry { return store.ConflictEntry{Rule: rule} }
	states := []RegionState{
		{Region: "a", Conflicts: []store.ConflictEntry{e("lww"), e("lww"), e("carts")}},
		{Region: "b", Conflicts: []store.ConflictEntry{e("lww")}},
	}
	by := ConflictsByRule(states)
	if by["lww"]["a"] != 2 || by["lww"]["b"] != 1 || by["carts"]["a"] != 1 || len(by) != 2 {
		t.Fatalf("ConflictsByRule = %v", by)
	}
	two, zero := 2, 0
	cases := []struct {
		name   string
		bounds map[string]CountBound
		pass   bool
	}{
		{"unbounded", nil, true},
		{"within", map[string]CountBound{"lww": {Min: 1, Max: &two}}, true},
		{"too few", map[string]CountBound{"lww": {Min: 3}}, false},
		{"too many", map[string]CountBound{"carts": {Max: &zero}}, false},
		{"expected rule never fired", map[string]CountBound{"stock": {Min: 1}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if res := CheckConflicts(by, tc.bounds); res.Pass != tc.pass {
				t.Fatalf("pass = %v, want %v (%s %q)", res.Pass, tc.pass, res.Summary, res.Details)
			}
		})
	}
}

func TestCheckWorkload(t *testing.T) {
	tenth := 0.1
	stats := WorkloadStats{Writes: 100, Acked: 80, WriteErrors: map[string]int{"503 stale": 15, "transport": 5}}
	res := CheckWorkload(stats, Checks{MinAcked: 50, MaxWriteErrors: &tenth})
	if len(res) != 2 || !res[0].Pass || res[1].Pass {
		t.Fatalf("CheckWorkload = %+v; want min_acked passing and write_errors (20%% > 10%%) failing", res)
	}
	if res := CheckWorkload(stats, Checks{MinAcked: 81}); len(res) != 1 || res[0].Pass {
		t.Fatalf("min_acked 81 with 80 acked: %+v", res)
	}
	if res := CheckWorkload(stats, Checks{}); len(res) != 0 {
		t.Fatalf("no bounds: %+v, want no results", res)
	}
}

func TestCheckWriteErrorKinds(t *testing.T) {
	stats := WorkloadStats{Writes: 100, Acked: 90, WriteErrors: map[string]int{"503 clock_skew": 10}}
	one, none := 1, 0
	for _, tc := range []struct {
		bounds map[string]CountBound
		pass   bool
	}{
		{map[string]CountBound{"503 clock_skew": {Min: 1}}, true},
		{map[string]CountBound{"503 clock_skew": {Min: 11}}, false},
		{map[string]CountBound{"507 insufficient_storage": {Min: 1}}, false},
		{map[string]CountBound{"503 clock_skew": {Max: &one}}, false},
		{map[string]CountBound{"timeout": {Max: &none}}, true},
	} {
		res := CheckWorkload(stats, Checks{WriteErrors: tc.bounds})
		if len(res) != 1 || res[0].Pass != tc.pass {
			t.Errorf("bounds %+v: %+v, want pass %v", tc.bounds, res, tc.pass)
		}
	}
}

func TestCheckClockBound(t *testing.T) {
	const base = 1_700_000_000_000
	acked := []AckedWrite{
		{ID: "early", At: time.Second, HLC: conflict.HLC{Wall: base + 30_000}, AckedUnixMs: base},
		{ID: "late", At: 10 * time.Second, HLC: conflict.HLC{Wall: base + 14_000}, AckedUnixMs: base + 10_000},
	}
	if res := CheckClockBound(acked, ClockBound{From: 5 * time.Second, Max: 5 * time.Second}); !res.Pass {
		t.Fatalf("a lead of 4s from 5s on, bound 5s: %+v", res)
	}
	if res := CheckClockBound(acked, ClockBound{From: 0, Max: 5 * time.Second}); res.Pass || len(res.Details) != 1 || !strings.Contains(res.Details[0], "early") {
		t.Fatalf("the 30s lead of an early write must fail the bound from 0: %+v", res)
	}
	if res := CheckClockBound(acked, ClockBound{From: time.Minute, Max: time.Second}); res.Pass {
		t.Fatalf("nothing acked after the start of the bound must not pass: %+v", res)
	}
}
