package conflict

import (
	"maps"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

// smallVV draws vectors over few actors and small counters so that random
// pairs overlap, tie and dominate each other often.
var smallVV = genVV([]string{"a", "b", "c"}, 4)

func TestVVMergeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := smallVV.Draw(t, "a")
		b := smallVV.Draw(t, "b")
		c := smallVV.Draw(t, "c")
		aBefore, bBefore := maps.Clone(a), maps.Clone(b)

		ab, ba := a.Merge(b), b.Merge(a)
		if !reflect.DeepEqual(ab, ba) {
			t.Fatalf("not commutative: %s ⊔ %s = %s but %s", a, b, ab, ba)
		}
		if l, r := a.Merge(b).Merge(c), a.Merge(b.Merge(c)); !reflect.DeepEqual(l, r) {
			t.Fatalf("not associative: (a⊔b)⊔c = %s, a⊔(b⊔c) = %s", l, r)
		}
		if aa := a.Merge(a); !aa.Equal(a) {
			t.Fatalf("not idempotent: %s ⊔ itself = %s", a, aa)
		}
		if !reflect.DeepEqual(a, aBefore) || !reflect.DeepEqual(b, bBefore) {
			t.Fatalf("Merge modified an input: a %v -> %v, b %v -> %v", aBefore, a, bBefore, b)
		}
		for _, x := range []string{"a", "b", "c"} {
			if want := max(a[x], b[x]); ab[x] != want {
				t.Fatalf("not pointwise max at %s: %s ⊔ %s = %s", x, a, b, ab)
			}
			if c, ok := ab[x]; ok && c == 0 {
				t.Fatalf("Merge kept a zero counter for %s: %v", x, ab)
			}
		}
	})
}

func TestVVDescendsIsPartialOrderConsistentWithMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := smallVV.Draw(t, "a")
		b := smallVV.Draw(t, "b")
		c := smallVV.Draw(t, "c")

		if !a.Descends(a) {
			t.Fatalf("not reflexive: %s", a)
		}
		if a.Descends(b) && b.Descends(a) && !a.Equal(b) {
			t.Fatalf("not antisymmetric: %s, %s", a, b)
		}
		if a.Descends(b) && b.Descends(c) && !a.Descends(c) {
			t.Fatalf("not transitive: %s >= %s >= %s", a, b, c)
		}
		ab := a.Merge(b)
		if !ab.Descends(a) || !ab.Descends(b) {
			t.Fatalf("join %s does not descend %s and %s", ab, a, b)
		}
		if c.Descends(a) && c.Descends(b) && !c.Descends(ab) {
			t.Fatalf("join is not least: %s >= %s, %s but not >= %s", c, a, b, ab)
		}
		if a.Descends(b) != ab.Equal(a) {
			t.Fatalf("a >= b (%v) disagrees with a ⊔ b == a (%v): a=%s b=%s", a.Descends(b), ab.Equal(a), a, b)
		}
		if a.Concurrent(b) != (!a.Descends(b) && !b.Descends(a)) {
			t.Fatalf("Concurrent disagrees with Descends: %s, %s", a, b)
		}
		d := Dot{Actor: "b", Counter: rapid.Uint64Range(1, 5).Draw(t, "dot counter")}
		if a.Covers(d) != a.Descends(VV{d.Actor: d.Counter}) {
			t.Fatalf("Covers(%s) disagrees with Descends on %s", d, a)
		}
		if w := a.With(d); !w.Equal(a.Merge(VV{d.Actor: d.Counter})) || !w.Covers(d) {
			t.Fatalf("%s.With(%s) = %s", a, d, w)
		}
	})
}

func TestVVTable(t *testing.T) {
	tests := []struct {
		name       string
		a, b       VV
		descends   bool // a >= b
		equal      bool
		concurrent bool
	}{
		{"both empty", nil, VV{}, true, true, false},
		{"zero counter is missing", VV{"a": 0}, nil, true, true, false},
		{"strictly ahead", VV{"a": 2, "b": 1}, VV{"a": 1}, true, false, false},
		{"behind", VV{"a": 1}, VV{"a": 2}, false, false, false},
		{"concurrent", VV{"a": 2}, VV{"b": 1}, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Descends(tt.b); got != tt.descends {
				t.Errorf("%s.Descends(%s) = %v, want %v", tt.a, tt.b, got, tt.descends)
			}
			if got := tt.a.Equal(tt.b); got != tt.equal {
				t.Errorf("%s.Equal(%s) = %v, want %v", tt.a, tt.b, got, tt.equal)
			}
			if got := tt.a.Concurrent(tt.b); got != tt.concurrent {
				t.Errorf("%s.Concurrent(%s) = %v, want %v", tt.a, tt.b, got, tt.concurrent)
			}
		})
	}
	if got, want := (VV{"b": 3, "a": 1, "z": 0}).String(), "{a:1, b:3}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if (VV{"a": 5}).Covers(Dot{Actor: "a", Counter: 0}) {
		t.Error("Covers(a:0) = true; a zero dot names no version and must never be covered")
	}
}

func TestActorRegionOf(t *testing.T) {
	tests := []struct {
		region, epoch, actor string
	}{
		{"us-east", "k3f9", "us-east~k3f9"},
		{"eu-west", "1", "eu-west~1"},
	}
	for _, tt := range tests {
		if got := Actor(tt.region, tt.epoch); got != tt.actor {
			t.Errorf("Actor(%q, %q) = %q, want %q", tt.region, tt.epoch, got, tt.actor)
		}
		if got := RegionOf(tt.actor); got != tt.region {
			t.Errorf("RegionOf(%q) = %q, want %q", tt.actor, got, tt.region)
		}
	}
	if got := RegionOf("plain"); got != "plain" {
		t.Errorf("RegionOf(plain) = %q, want plain", got)
	}
}
