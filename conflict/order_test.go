package conflict

import (
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestLWWCausallyLaterWriteWinsOverFastClock: regions whose physical clocks
// run far ahead write a frontier; a region whose clock is behind applies it
// and writes with its context. That write is causally later, so it must be
// the sole version and the LWW winner even though its timestamp may be the
// smallest. A blind write from the same slow region is concurrent instead,
// and then the timestamps decide.
func TestLWWCausallyLaterWriteWinsOverFastClock(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ahead := rapid.Int64Range(1, 3_600_000).Draw(t, "ahead ms")
		maxSkew := rapid.Int64Range(0, 2*ahead).Draw(t, "max skew ms")
		fast := NewClock(func() time.Time { return time.UnixMilli(baseWall + ahead) }, 0)

		var events []Event
		fastActors := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"fast1~e", "fast2~e", "fast3~e"}), 1, 3, rapid.ID[string]).Draw(t, "fast actors")
		for _, actor := range fastActors {
			_, ev, _ := writeNext(Record{}, actor, nil, jsonString(actor), false, fast.Now())
			events = append(events, ev)
		}

		slowWall := baseWall
		slow := NewClock(func() time.Time { return time.UnixMilli(slowWall) }, maxSkew)
		var r Record
		refused := false
		for _, ev := range events {
			r, _ = r.Apply(ev)
			if !slow.Observe(ev.Version.HLC) {
				refused = true
			}
		}
		slowWall++

		later, ev, out := writeNext(r, "slow~e", r.Context(), jsonString("later"), false, slow.Now())
		if len(later.Versions) != 1 || !later.Versions[0].Equal(ev.Version) || len(out.Superseded) != len(events) {
			t.Fatalf("causally later write left %q, want only %s", frontier(later), renderVersion(ev.Version))
		}
		if winner, losers := Collapse(later.Versions, CompareLWW); !winner.Equal(ev.Version) || len(losers) != 0 {
			t.Fatalf("winner %s, want the causally later %s", renderVersion(winner), renderVersion(ev.Version))
		}
		if refused {
			for _, e := range events {
				if ev.Version.HLC.Compare(e.Version.HLC) >= 0 {
					t.Fatalf("skew guard refused %s yet slow clock issued a larger %s", e.Version.HLC, ev.Version.HLC)
				}
			}
			// Contrast: the same slow region writing blind is concurrent with
			// the fast versions and loses to them on timestamp.
			blind, bev, _ := writeNext(r, "slow~e", nil, jsonString("blind"), false, slow.Now())
			if winner, _ := Collapse(blind.Versions, CompareLWW); winner.Dot == bev.Version.Dot {
				t.Fatalf("a concurrent write with a smaller HLC won: %s over %q", renderVersion(winner), frontier(blind))
			}
		}
	})
}

// TestCollapseIgnoresArrivalOrder: the LWW winner, the score winner and the
// set of losers depend on the frontier only, not on its order in the slice.
func TestCollapseIgnoresArrivalOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		versions := genVersions(8).Draw(t, "versions")
		scores := map[Dot]float64{}
		for _, v := range versions {
			scores[v.Dot] = float64(rapid.IntRange(0, 2).Draw(t, "score"))
		}
		byScore := func(a, b Version) int {
			return CompareScored(Scored{Version: a, Score: scores[a.Dot]}, Scored{Version: b, Score: scores[b.Dot]})
		}
		orders := map[string]func(a, b Version) int{"lww": CompareLWW, "scored": byScore}
		for name, order := range orders {
			want, wantLosers := Collapse(versions, order)
			checkCollapse(t, name, versions, order, want, wantLosers)
			for range 3 {
				perm := rapid.Permutation(versions).Draw(t, "permutation")
				got, losers := Collapse(perm, order)
				if !got.Equal(want) {
					t.Fatalf("%s: winner %s for one order, %s for another", name, renderVersion(want), renderVersion(got))
				}
				checkCollapse(t, name, perm, order, got, losers)
			}
		}
	})
}

// checkCollapse checks one Collapse result: the winner is strictly greater
// than every loser, and the losers are the other versions in frontier order.
func checkCollapse(t *rapid.T, name string, versions []Version, order func(a, b Version) int, winner Version, losers []Version) {
	t.Helper()
	want := slices.DeleteFunc(slices.Clone(versions), winner.Equal)
	if len(want) != len(versions)-1 || !slices.EqualFunc(losers, want, Version.Equal) {
		t.Fatalf("%s: losers %q, want %q", name, frontier(Record{Versions: losers}), frontier(Record{Versions: want}))
	}
	for _, l := range losers {
		if order(winner, l) <= 0 {
			t.Fatalf("%s: winner %s is not greater than loser %s", name, renderVersion(winner), renderVersion(l))
		}
	}
}

func TestCompareLWWTable(t *testing.T) {
	v := func(actor string, counter uint64, wall int64, logical uint32) Version {
		return Version{Dot: Dot{Actor: actor, Counter: counter}, HLC: HLC{Wall: wall, Logical: logical}, Origin: RegionOf(actor)}
	}
	tests := []struct {
		name string
		a, b Version
		want int
	}{
		{"later wall wins", v("a~1", 1, 10, 0), v("b~1", 9, 9, 5), 1},
		{"logical breaks wall tie", v("b~1", 1, 10, 1), v("a~1", 1, 10, 2), -1},
		{"origin breaks HLC tie", v("b~1", 1, 10, 0), v("a~1", 2, 10, 0), 1},
		{"origin, not actor name, breaks HLC tie", v("r1-b~a", 1, 10, 0), v("r1~x", 1, 10, 0), 1},
		{"dot breaks origin tie", v("a~2", 1, 10, 0), v("a~1", 5, 10, 0), 1},
		{"same version", v("a~1", 1, 10, 0), v("a~1", 1, 10, 0), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CompareLWW(tt.a, tt.b); got != tt.want {
				t.Errorf("CompareLWW = %d, want %d", got, tt.want)
			}
			if got := CompareLWW(tt.b, tt.a); got != -tt.want {
				t.Errorf("CompareLWW reversed = %d, want %d", got, -tt.want)
			}
		})
	}
	if got := CompareScored(Scored{Version: v("a~1", 1, 1, 0), Score: 2}, Scored{Version: v("b~1", 1, 9, 0), Score: 1}); got != 1 {
		t.Errorf("CompareScored: a higher score must win over a later HLC, got %d", got)
	}
}

func TestCollapsePanicsOnEmptyFrontier(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Collapse(nil) did not panic")
		}
	}()
	Collapse(nil, CompareLWW)
}
