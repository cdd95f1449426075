package conflict

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// gcRegion is one region of the tombstone-collection model: its records
// with collection (what geogate keeps) and without (the reference), its
// per-origin watermarks, and its Stability.
type gcRegion struct {
	actor   string
	clock   *Clock
	wall    int64
	gc, ref map[string]Record
	applied []int // events of each origin applied here
	stab    Stability
	safe    VV
}

// view is what a last-write-wins read shows: the winner's value, or
// "not found" for a tombstone winner or no versions.
func view(r Record) string {
	if len(r.Versions) == 0 {
		return "not found"
	}
	w, _ := Collapse(r.Versions, CompareLWW)
	if w.Deleted {
		return "not found"
	}
	return string(w.Value)
}

// TestTombstoneCollectionNeverResurrects runs random histories of 2-4
// regions writing and deleting two keys, with events delivered per origin
// in log order at random times (late), duplicates dropped by watermark,
// reports of every region's applied positions gossiped at random times
// (stale), tombstone collection at random regions and moments (grace 0:
// as aggressive as the stability rule allows), and anti-entropy merges of
// a peer's record (taken only when this region applied everything the
// record reflects, and filtered by collection as the store does). After
// every step, in every region and for every key, the collected record must
// equal the uncollected one less some tombstones, and both must read the
// same under last-write-wins and show the same live versions: a deleted
// value never comes back. At the end, with everything delivered and
// collected, every region shows the same.
func TestTombstoneCollectionNeverResurrects(t *testing.T) {
	keys := []string{"k1", "k2"}
	total := 0
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, len(testActors)).Draw(t, "regions")
		regions := make([]*gcRegion, n)
		logs := make([][]Event, n)
		reports := make([]VV, n) // the gossiped table: stale copies of applied positions
		for i := range n {
			r := &gcRegion{actor: testActors[i], gc: map[string]Record{}, ref: map[string]Record{}, applied: make([]int, n)}
			r.wall = baseWall + rapid.Int64Range(-50, 50).Draw(t, "skew")
			r.clock = NewClock(func() time.Time { return time.UnixMilli(r.wall) }, 0)
			regions[i] = r
			reports[i] = VV{}
		}
		appliedVV := func(r *gcRegion) VV {
			v := VV{}
			for j, c := range r.applied {
				if c > 0 {
					v[testActors[j]] = uint64(c)
				}
			}
			return v
		}
		collect := func(r *gcRegion) {
			r.safe = r.stab.Round(slices.Clone(reports))
			for _, k := range keys {
				if rec, ok := r.gc[k]; ok && Collectable(rec, r.safe, r.wall+1) {
					delete(r.gc, k)
					total++
				}
			}
		}
		apply := func(r *gcRegion, e Event) {
			g, _ := r.gc[e.Key].Apply(e)
			r.gc[e.Key] = g
			f, _ := r.ref[e.Key].Apply(e)
			r.ref[e.Key] = f
			r.clock.Observe(e.Version.HLC)
		}
		check := func(step string) {
			for i, r := range regions {
				for _, k := range keys {
					g, f := r.gc[k], r.ref[k]
					for _, v := range g.Versions {
						if !slices.ContainsFunc(f.Versions, v.Equal) {
							t.Fatalf("%s: region %d key %s: collected record holds %s, which the reference does not", step, i, k, renderVersion(v))
						}
					}
					for _, v := range f.Versions {
						if !v.Deleted && !slices.ContainsFunc(g.Versions, v.Equal) {
							t.Fatalf("%s: region %d key %s: live version %s lost by collection", step, i, k, renderVersion(v))
						}
					}
					if vg, vf := view(g), view(f); vg != vf {
						t.Fatalf("%s: region %d key %s reads %s after collection, %s without (collected %q, reference %q, safe %s)",
							step, i, k, vg, vf, frontier(g), frontier(f), r.safe)
					}
				}
			}
		}
		steps := rapid.IntRange(1, 120).Draw(t, "steps")
		for step := range steps {
			i := rapid.IntRange(0, n-1).Draw(t, "region")
			r := regions[i]
			r.wall += rapid.Int64Range(-2, 5).Draw(t, "tick")
			switch rapid.IntRange(0, 5).Draw(t, "action") {
			case 0, 1: // a local write or delete, with the current context or blind
				k := rapid.SampledFrom(keys).Draw(t, "key")
				var ctx VV
				if rapid.Bool().Draw(t, "with context") {
					ctx = r.gc[k].Context()
				}
				deleted := rapid.IntRange(0, 2).Draw(t, "delete") == 0
				dot := Dot{Actor: r.actor, Counter: uint64(len(logs[i]) + 1)}
				value := jsonString(fmt.Sprintf("%s/%d", r.actor, step))
				_, ev, _, err := r.gc[k].Write(dot, ctx, value, deleted, r.clock.Now())
				if err != nil {
					t.Fatalf("write: %v", err)
				}
				ev.Key, ev.OSeq = k, dot.Counter
				logs[i] = append(logs[i], ev)
				r.applied[i]++
				apply(r, ev)
			case 2: // deliver the next event of an origin (late, but in log order)
				j := rapid.IntRange(0, n-1).Draw(t, "origin")
				if j == i || r.applied[j] >= len(logs[j]) {
					continue
				}
				apply(r, logs[j][r.applied[j]])
				r.applied[j]++
			case 3: // a duplicate: the watermark drops it
				j := rapid.IntRange(0, n-1).Draw(t, "origin")
				if r.applied[j] == 0 {
					continue
				}
				e := logs[j][rapid.IntRange(0, r.applied[j]-1).Draw(t, "dup")]
				if e.OSeq > uint64(r.applied[j]) {
					t.Fatalf("a duplicate beyond the watermark")
				}
			case 4: // gossip: one region's report reaches the table
				j := rapid.IntRange(0, n-1).Draw(t, "reporter")
				reports[j] = appliedVV(regions[j])
			case 5: // collection, or an anti-entropy merge of a peer's record
				if rapid.Bool().Draw(t, "collect") {
					collect(r)
					break
				}
				j := rapid.IntRange(0, n-1).Draw(t, "peer")
				k := rapid.SampledFrom(keys).Draw(t, "key")
				peer, ok := regions[j].gc[k]
				if !ok || !appliedVV(r).Descends(peer.Context()) {
					continue // repairs take only what this region has applied
				}
				m := r.gc[k].Merge(peer)
				if Collectable(m, r.safe, r.wall+1) {
					delete(r.gc, k)
				} else {
					r.gc[k] = m
				}
			}
			check(fmt.Sprintf("step %d", step))
		}
		// Deliver everything, gossip and collect until stable.
		for round := range 4 {
			for i, r := range regions {
				for j := range n {
					for r.applied[j] < len(logs[j]) {
						apply(r, logs[j][r.applied[j]])
						r.applied[j]++
					}
				}
				reports[i] = appliedVV(r)
			}
			for _, r := range regions {
				r.wall += 10
				collect(r)
			}
			check(fmt.Sprintf("final round %d", round))
		}
		for _, k := range keys {
			for i := 1; i < n; i++ {
				if a, b := view(regions[0].gc[k]), view(regions[i].gc[k]); a != b {
					t.Fatalf("key %s: region 0 reads %s, region %d reads %s", k, a, i, b)
				}
				if a, b := liveValues(regions[0].gc[k]), liveValues(regions[i].gc[k]); !slices.Equal(a, b) {
					t.Fatalf("key %s: region 0 shows %q, region %d shows %q", k, a, i, b)
				}
			}
		}
	})
	if total == 0 {
		t.Fatal("no history collected a record: the property was never exercised")
	}
	t.Logf("%d records collected over the histories", total)
}

// TestStabilityNeedsTwoRounds checks the rule on a hand-made case: one
// round in which every region reports a position is not enough (a region
// may have written concurrently before it applied it); the minimum becomes
// safe once a later round's minimum covers what any region had applied.
func TestStabilityNeedsTwoRounds(t *testing.T) {
	var s Stability
	// a applied b:1; b wrote b:1 and b:2, and applied a:1... c lags.
	r1 := []VV{{"a": 3, "b": 1}, {"a": 1, "b": 2}, {"a": 1, "b": 1, "c": 4}}
	if got := s.Round(r1); len(got) != 0 {
		t.Fatalf("safe after one round = %s, want {}", got)
	}
	// Not everyone has caught up with the join {a:3, b:2, c:4} yet.
	r2 := []VV{{"a": 3, "b": 2}, {"a": 3, "b": 2}, {"a": 3, "b": 2, "c": 5}}
	if got := s.Round(r2); len(got) != 0 {
		t.Fatalf("safe before everyone applied the first round's join = %s, want {}", got)
	}
	r3 := []VV{{"a": 3, "b": 2, "c": 4}, {"a": 3, "b": 2, "c": 4}, {"a": 4, "b": 2, "c": 5}}
	want := VV{"a": 1, "b": 1}
	if got := s.Round(r3); !got.Equal(want) {
		t.Fatalf("safe = %s, want round 1's minimum %s", got, want)
	}
	// A region without a report keeps everything unstable.
	var empty Stability
	for range 3 {
		if got := empty.Round([]VV{{"a": 5}, {}}); len(got) != 0 {
			t.Fatalf("safe with a silent region = %s, want {}", got)
		}
	}
}

// TestCollectable is the table of what collection may remove.
func TestCollectable(t *testing.T) {
	tomb := func(c uint64, wall int64) Version {
		return Version{Dot: Dot{"a~1", c}, Deleted: true, HLC: HLC{Wall: wall}, Origin: "a"}
	}
	live := Version{Dot: Dot{"b~1", 1}, Value: jsonString("v"), HLC: HLC{Wall: 5}, Origin: "b"}
	cases := []struct {
		name   string
		r      Record
		safe   VV
		cutoff int64
		want   bool
	}{
		{"stable old tombstone", Record{Versions: []Version{tomb(2, 5)}, Seen: VV{"a~1": 1}}, VV{"a~1": 2}, 10, true},
		{"too young", Record{Versions: []Version{tomb(2, 10)}}, VV{"a~1": 2}, 10, false},
		{"its dot not stable", Record{Versions: []Version{tomb(2, 5)}}, VV{"a~1": 1}, 10, false},
		{"its context not stable", Record{Versions: []Version{tomb(2, 5)}, Seen: VV{"c~1": 3}}, VV{"a~1": 2, "c~1": 2}, 10, false},
		{"beside a live sibling", Record{Versions: []Version{tomb(2, 5), live}}, VV{"a~1": 2, "b~1": 1}, 10, false},
		{"no versions", Record{}, VV{"a~1": 9}, 10, false},
	}
	for _, c := range cases {
		if got := Collectable(c.r, c.safe, c.cutoff); got != c.want {
			t.Errorf("%s: Collectable = %v, want %v", c.name, got, c.want)
		}
	}
}
