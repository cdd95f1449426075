package conflict

import (
	"testing"

	"pgregory.net/rapid"
)

// genSubRecord draws a record built by applying a random subset of the
// history's events in a random order: what one region may hold of the key
// at some moment (a snapshot's record, a peer's record in a repair).
func genSubRecord(h history, label string) *rapid.Generator[Record] {
	return rapid.Custom(func(t *rapid.T) Record {
		if len(h.events) == 0 {
			return Record{}
		}
		sub := rapid.SliceOfN(rapid.SampledFrom(h.events), 0, len(h.events)).Draw(t, label)
		return applyAll(Record{}, sub)
	})
}

// TestMergeLaws checks that Merge is a join: commutative, associative and
// idempotent, on records that random histories of several regions build.
func TestMergeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(30).Draw(t, "history")
		a := genSubRecord(h, "a").Draw(t, "a")
		b := genSubRecord(h, "b").Draw(t, "b")
		c := genSubRecord(h, "c").Draw(t, "c")
		if ab, ba := a.Merge(b), b.Merge(a); !ab.Equal(ba) {
			t.Fatalf("not commutative\na.Merge(b) = %q seen %s\nb.Merge(a) = %q seen %s", frontier(ab), ab.Seen, frontier(ba), ba.Seen)
		}
		if l, r := a.Merge(b).Merge(c), a.Merge(b.Merge(c)); !l.Equal(r) {
			t.Fatalf("not associative\n(ab)c = %q seen %s\na(bc) = %q seen %s", frontier(l), l.Seen, frontier(r), r.Seen)
		}
		if aa := a.Merge(a); !aa.Equal(a) {
			t.Fatalf("not idempotent\na = %q seen %s\naa = %q seen %s", frontier(a), a.Seen, frontier(aa), aa.Seen)
		}
		if z := a.Merge(Record{}); !z.Equal(a) {
			t.Fatalf("the empty record is not neutral: %q", frontier(z))
		}
	})
}

// TestMergeAgreesWithApply checks that merging the records two sets of
// events built gives the record of both sets applied (in any order, with
// duplicates): a snapshot merge and the events it reflects are
// interchangeable, so a region may merge a snapshot and then replay events
// the snapshot already holds.
func TestMergeAgreesWithApply(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(30).Draw(t, "history")
		if len(h.events) == 0 {
			return
		}
		a := rapid.SliceOfN(rapid.SampledFrom(h.events), 0, len(h.events)).Draw(t, "a")
		b := rapid.SliceOfN(rapid.SampledFrom(h.events), 0, len(h.events)).Draw(t, "b")
		got := applyAll(Record{}, a).Merge(applyAll(Record{}, b))
		both := append(append([]Event{}, a...), b...)
		want := referenceRecord(both)
		if !got.Equal(want) {
			t.Fatalf("merge disagrees with applying both sets\nmerge: %q seen %s\nwant:  %q seen %s\na:%s\nb:%s",
				frontier(got), got.Seen, frontier(want), want.Seen, describe(a), describe(b))
		}
		// Applying the rest of the events after the merge changes nothing
		// the merge already reflects: the result is the whole history's.
		all := applyAll(got, h.events)
		if ref := referenceRecord(h.events); !all.Equal(ref) {
			t.Fatalf("events after a merge diverge\ngot:  %q seen %s\nwant: %q seen %s", frontier(all), all.Seen, frontier(ref), ref.Seen)
		}
	})
}

// TestMergeOfConflictingCopies checks the corrupt case: two versions under
// one dot. The result must still not depend on the argument order.
func TestMergeOfConflictingCopies(t *testing.T) {
	d := Dot{Actor: "r1~e", Counter: 1}
	x := Record{Versions: []Version{{Dot: d, Value: jsonString("x"), HLC: HLC{Wall: baseWall}, Origin: "r1"}}}
	y := Record{Versions: []Version{{Dot: d, Value: jsonString("y"), HLC: HLC{Wall: baseWall}, Origin: "r1"}}}
	xy, yx := x.Merge(y), y.Merge(x)
	if !xy.Equal(yx) || len(xy.Versions) != 1 || string(xy.Versions[0].Value) != `"y"` {
		t.Fatalf("x.Merge(y) = %q, y.Merge(x) = %q; want both [r1~e:1 \"y\"]", frontier(xy), frontier(yx))
	}
}

// TestMergeKeepsWhatNoContextSupersedes is the table form of the rule a
// repair relies on: merge adds, it never removes a version the other
// record's contexts do not cover.
func TestMergeKeepsWhatNoContextSupersedes(t *testing.T) {
	v1 := Version{Dot: Dot{"a~1", 1}, Value: jsonString("v1"), HLC: HLC{Wall: baseWall}, Origin: "a"}
	v2 := Version{Dot: Dot{"b~1", 1}, Value: jsonString("v2"), HLC: HLC{Wall: baseWall + 1}, Origin: "b"}
	del := Version{Dot: Dot{"b~1", 2}, Deleted: true, HLC: HLC{Wall: baseWall + 2}, Origin: "b"}
	cases := []struct {
		name string
		a, b Record
		want []string
	}{
		{"disjoint siblings", Record{Versions: []Version{v1}}, Record{Versions: []Version{v2}}, []string{"a~1:1 \"v1\"", "b~1:1 \"v2\""}},
		{"a delete that saw v1 supersedes it", Record{Versions: []Version{v1}}, Record{Versions: []Version{del}, Seen: VV{"a~1": 1}}, []string{"b~1:2 deleted"}},
		{"a delete that did not see v1 leaves it", Record{Versions: []Version{v1}}, Record{Versions: []Version{del}, Seen: VV{"b~1": 1}}, []string{"a~1:1 \"v1\"", "b~1:2 deleted"}},
		{"empty side", Record{}, Record{Versions: []Version{v2}}, []string{"b~1:1 \"v2\""}},
	}
	for _, c := range cases {
		got := frontier(c.a.Merge(c.b))
		if len(got) != len(c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: %q, want %q", c.name, got, c.want)
				break
			}
		}
	}
}
