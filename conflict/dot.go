package conflict

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Dot identifies one version: the Counter-th version of a key written by
// Actor. Dots are never reused: an actor's counters for a key grow strictly.
type Dot struct {
	Actor   string `json:"a"`
	Counter uint64 `json:"c"`
}

// String renders the dot as actor:counter.
func (d Dot) String() string { return d.Actor + ":" + strconv.FormatUint(d.Counter, 10) }

// Compare orders dots by actor, then counter. It is a total order.
func (d Dot) Compare(o Dot) int {
	if c := strings.Compare(d.Actor, o.Actor); c != 0 {
		return c
	}
	return cmp.Compare(d.Counter, o.Counter)
}

// MaxCounter is the largest counter a dot, a version vector entry or a log
// position may hold. Counters are log positions of one actor (a region
// epoch), so no correct region ever comes near it; a larger one can only be
// forged or corrupt, and is refused wherever it enters (tokens, events),
// so that no counter can ever wrap.
const MaxCounter uint64 = 1 << 62

// VV is a version vector: actor -> highest counter covered. A missing actor
// means 0. VV values are treated as immutable by every function in this
// package: operations return new maps.
type VV map[string]uint64

// Covers reports whether the dot is within the vector.
func (v VV) Covers(d Dot) bool { return d.Counter != 0 && v[d.Actor] >= d.Counter }

// Check reports an error when v names the empty actor or holds a counter
// beyond MaxCounter: what no correct region ever writes.
func (v VV) Check() error {
	for a, c := range v {
		switch {
		case a == "" && c > 0:
			return errors.New("version vector names the empty actor")
		case c > MaxCounter:
			return fmt.Errorf("counter %d of %s is beyond the limit %d", c, a, MaxCounter)
		}
	}
	return nil
}

// Merge returns the pointwise maximum of v and o (the join). It is
// commutative, associative and idempotent; neither input is modified.
func (v VV) Merge(o VV) VV {
	out := make(VV, max(len(v), len(o)))
	for a, c := range v {
		if c > 0 {
			out[a] = c
		}
	}
	for a, c := range o {
		if c > out[a] {
			out[a] = c
		}
	}
	return out
}

// With returns v joined with the single dot d.
func (v VV) With(d Dot) VV {
	out := v.Merge(nil)
	if d.Counter > out[d.Actor] {
		out[d.Actor] = d.Counter
	}
	return out
}

// Descends reports whether v covers everything o covers (v >= o).
func (v VV) Descends(o VV) bool {
	for a, c := range o {
		if v[a] < c {
			return false
		}
	}
	return true
}

// Equal reports whether both vectors cover exactly the same dots.
func (v VV) Equal(o VV) bool { return v.Descends(o) && o.Descends(v) }

// Concurrent reports whether neither vector descends the other.
func (v VV) Concurrent(o VV) bool { return !v.Descends(o) && !o.Descends(v) }

// Actors returns the actors with a non-zero counter, sorted.
func (v VV) Actors() []string {
	out := make([]string, 0, len(v))
	for a, c := range v {
		if c > 0 {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Clone returns a copy that shares nothing with v (nil stays empty, not nil).
func (v VV) Clone() VV {
	out := maps.Clone(v)
	if out == nil {
		out = VV{}
	}
	return out
}

// String renders the vector deterministically, e.g. {a:1, b:3}.
func (v VV) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, a := range v.Actors() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s:%d", a, v[a])
	}
	b.WriteByte('}')
	return b.String()
}

// ActorSeparator separates a region name from its epoch in an actor name.
const ActorSeparator = "~"

// Actor returns the actor name of a region in an epoch: "region~epoch".
// The epoch is chosen when a region's store is created and never changes for
// that store, so a region restarted from an empty store writes with new dots.
func Actor(region, epoch string) string { return region + ActorSeparator + epoch }

// RegionOf returns the region an actor belongs to. A name without an epoch is
// its own region.
func RegionOf(actor string) string {
	region, _, _ := strings.Cut(actor, ActorSeparator)
	return region
}
