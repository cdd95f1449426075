package conflict

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"pgregory.net/rapid"
)

// This file holds the rapid generators and small helpers the property and
// scenario tests share. Nothing in it asserts anything.

// testActors are the actors random histories draw from, "region~epoch".
var testActors = []string{"r1~e", "r2~e", "r3~e", "r4~e"}

// baseWall is a plausible Unix-millisecond wall time for injected clocks.
const baseWall int64 = 1_700_000_000_000

// genVV draws a vector over actors with counters in [0, maxCounter]; zero
// counters are kept in the map on purpose (a zero must mean "missing").
func genVV(actors []string, maxCounter uint64) *rapid.Generator[VV] {
	return rapid.Custom(func(t *rapid.T) VV {
		v := VV{}
		for _, a := range actors {
			if rapid.Bool().Draw(t, "has "+a) {
				v[a] = rapid.Uint64Range(0, maxCounter).Draw(t, "counter "+a)
			}
		}
		return v
	})
}

// genTokenVV draws a vector as a token carries it: arbitrary non-empty actor
// names (any bytes a string may hold) and positive counters up to
// MaxCounter.
func genTokenVV() *rapid.Generator[VV] {
	return rapid.Map(rapid.MapOfN(rapid.StringN(1, 24, -1), rapid.Uint64Range(1, MaxCounter), 0, 12),
		func(m map[string]uint64) VV { return VV(m) })
}

// genVersions draws 1..maxN versions with distinct dots. Actors share
// regions and HLCs are drawn from a tiny range so that every tie-break of
// CompareLWW (HLC, then origin, then dot) is exercised.
func genVersions(maxN int) *rapid.Generator[[]Version] {
	actors := []string{"r1~e1", "r1~e2", "r1-b~e1", "r2~e1"}
	dot := rapid.Custom(func(t *rapid.T) Dot {
		return Dot{
			Actor:   rapid.SampledFrom(actors).Draw(t, "actor"),
			Counter: rapid.Uint64Range(1, 3).Draw(t, "counter"),
		}
	})
	return rapid.Custom(func(t *rapid.T) []Version {
		dots := rapid.SliceOfNDistinct(dot, 1, maxN, rapid.ID[Dot]).Draw(t, "dots")
		out := make([]Version, len(dots))
		for i, d := range dots {
			out[i] = Version{
				Dot:     d,
				Value:   jsonString(d.String()),
				Deleted: rapid.IntRange(0, 4).Draw(t, "deleted") == 0,
				HLC: HLC{
					Wall:    baseWall + rapid.Int64Range(0, 2).Draw(t, "wall"),
					Logical: rapid.Uint32Range(0, 1).Draw(t, "logical"),
				},
				Origin: RegionOf(d.Actor),
			}
			if out[i].Deleted {
				out[i].Value = nil
			}
		}
		return out
	})
}

// history is a random but realistic run of several replicas of one key:
// every replica writes as its own actor and applies the others' events in
// each origin's log order, as geogate's links do.
type history struct {
	actors   []string
	replicas []Record  // final state of each replica, index = actor
	events   []Event   // every event, in the order it was written
	writes   []Outcome // the Outcome of each local write, same order as events
	ctxKinds []ctxKind // how each write chose its context, same order as events
}

// ctxKind says which context a random local write used.
type ctxKind int

const (
	ctxNone    ctxKind = iota // a blind write: ctx = nil
	ctxCurrent                // the replica's current Context()
	ctxStale                  // a context a client of this replica saw earlier
)

func (k ctxKind) String() string {
	return [...]string{"none", "current", "stale"}[k]
}

// genHistory draws a history of 2-4 actors and up to maxSteps steps. Each
// step either makes a local write (blind, with the current context, or with
// a stale one a client read earlier; sometimes a delete) or delivers the next
// pending event of one origin to one replica. Physical clocks wander, going
// backwards or standing still at times.
func genHistory(maxSteps int) *rapid.Generator[history] {
	return rapid.Custom(func(t *rapid.T) history {
		n := rapid.IntRange(2, len(testActors)).Draw(t, "actors")
		h := history{actors: testActors[:n], replicas: make([]Record, n)}
		walls := make([]int64, n)   // each replica's injected physical time
		clocks := make([]*Clock, n) // each replica's HLC
		contexts := make([][]VV, n) // contexts handed to each replica's clients, oldest first
		logs := make([][]Event, n)  // each origin's log
		applied := make([][]int, n) // applied[i][j]: events of origin j applied at replica i
		for i := range n {
			walls[i] = baseWall + rapid.Int64Range(-1000, 1000).Draw(t, "skew")
			clocks[i] = NewClock(func() time.Time { return time.UnixMilli(walls[i]) }, 0)
			applied[i] = make([]int, n)
		}
		steps := rapid.IntRange(1, maxSteps).Draw(t, "steps")
		for step := range steps {
			i := rapid.IntRange(0, n-1).Draw(t, "replica")
			walls[i] += rapid.Int64Range(-3, 10).Draw(t, "tick")
			var pending []int
			for j := range n {
				if applied[i][j] < len(logs[j]) {
					pending = append(pending, j)
				}
			}
			if len(pending) > 0 && rapid.Bool().Draw(t, "deliver") {
				j := rapid.SampledFrom(pending).Draw(t, "origin")
				e := logs[j][applied[i][j]]
				applied[i][j]++
				h.replicas[i], _ = h.replicas[i].Apply(e)
				clocks[i].Observe(e.Version.HLC)
				contexts[i] = append(contexts[i], h.replicas[i].Context())
				continue
			}
			kind := ctxKind(rapid.IntRange(0, 2).Draw(t, "ctx kind"))
			var ctx VV
			switch {
			case kind == ctxCurrent:
				ctx = h.replicas[i].Context()
			case kind == ctxStale && len(contexts[i]) > 0:
				ctx = rapid.SampledFrom(contexts[i]).Draw(t, "stale ctx")
			default:
				kind = ctxNone
			}
			deleted := rapid.IntRange(0, 5).Draw(t, "delete") == 0
			value := jsonString(fmt.Sprintf("%s/%d", h.actors[i], step))
			next, ev, out := writeNext(h.replicas[i], h.actors[i], ctx, value, deleted, clocks[i].Now())
			ev.Key = "k"
			ev.OSeq = uint64(len(logs[i]) + 1)
			h.replicas[i] = next
			logs[i] = append(logs[i], ev)
			applied[i][i]++
			h.events = append(h.events, ev)
			h.writes = append(h.writes, out)
			h.ctxKinds = append(h.ctxKinds, kind)
			contexts[i] = append(contexts[i], next.Context())
		}
		return h
	})
}

// applyAll folds events into r in the given order.
func applyAll(r Record, events []Event) Record {
	for _, e := range events {
		r, _ = r.Apply(e)
	}
	return r
}

// referenceRecord is the dumb model Apply must agree with: Seen is the join
// of every event's context, and the frontier is every event's version whose
// dot that join does not cover, sorted by dot.
func referenceRecord(events []Event) Record {
	seen := VV{}
	for _, e := range events {
		seen = seen.Merge(e.Context)
	}
	byDot := map[Dot]Version{}
	for _, e := range events {
		if !seen.Covers(e.Version.Dot) {
			byDot[e.Version.Dot] = e.Version
		}
	}
	versions := slices.SortedFunc(maps.Values(byDot), func(a, b Version) int { return a.Dot.Compare(b.Dot) })
	return Record{Versions: versions, Seen: seen}
}

// frontier renders a record's versions one per line as "dot value" (or
// "dot deleted"), in frontier order, for readable failure messages and
// golden comparisons.
func frontier(r Record) []string {
	out := make([]string, len(r.Versions))
	for i, v := range r.Versions {
		out[i] = renderVersion(v)
	}
	return out
}

func renderVersion(v Version) string {
	if v.Deleted {
		return v.Dot.String() + " deleted"
	}
	return v.Dot.String() + " " + string(v.Value)
}

// jsonString encodes s as a JSON string value.
func jsonString(s string) json.RawMessage {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a Go string always marshals
	}
	return b
}

// jsonItems encodes a sorted, de-duplicated JSON array of strings.
func jsonItems(items []string) json.RawMessage {
	items = slices.Clone(items)
	slices.Sort(items)
	b, err := json.Marshal(slices.Compact(items))
	if err != nil {
		panic(err)
	}
	return b
}

// itemsOf decodes a JSON array of strings written by jsonItems.
func itemsOf(raw json.RawMessage) ([]string, error) {
	var items []string
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("decode items %s: %w", raw, err)
	}
	return items, nil
}

// liveValues returns the raw values of a record's live versions as strings.
func liveValues(r Record) []string {
	var out []string
	for _, v := range r.Live() {
		out = append(out, string(v.Value))
	}
	return out
}

// describe renders a list of events compactly for failure messages.
func describe(events []Event) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "\n  %s ctx=%s", renderVersion(e.Version), e.Context)
	}
	return b.String()
}

// writeNext writes with the next dot of actor's own count: one past what
// the record and ctx know of the actor (a store uses the actor's next log
// position, which is never less).
func writeNext(r Record, actor string, ctx VV, value json.RawMessage, deleted bool, hlc HLC) (Record, Event, Outcome) {
	dot := r.NextDot(actor)
	if c := ctx[actor]; c >= dot.Counter {
		dot.Counter = c + 1
	}
	next, ev, out, err := r.Write(dot, ctx, value, deleted, hlc)
	if err != nil {
		panic(err)
	}
	return next, ev, out
}
