package conflict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// ErrStaleDot is returned by Write for a dot that is not fresh: zero,
// beyond MaxCounter, or already covered by the record's or the write's
// context.
var ErrStaleDot = errors.New("stale dot")

// Version is one value of a key, as written once by one actor. A tombstone
// (a delete) is a version too, with Deleted set and no Value.
type Version struct {
	Dot     Dot             `json:"dot"`
	Value   json.RawMessage `json:"value,omitempty"`
	Deleted bool            `json:"deleted,omitempty"`
	HLC     HLC             `json:"hlc"`
	// Origin is the region that accepted the write (RegionOf(Dot.Actor)).
	Origin string `json:"origin"`
}

// Equal reports whether two versions are identical, value bytes included.
func (v Version) Equal(o Version) bool {
	return v.Dot == o.Dot && v.Deleted == o.Deleted && v.HLC == o.HLC &&
		v.Origin == o.Origin && bytes.Equal(v.Value, o.Value)
}

// Event is the replicated form of one write: the version, the causal context
// it was written with, and its position in its origin's log. The origin's
// log identity is the version's actor (Event.Origin).
type Event struct {
	Key     string  `json:"k"`
	Version Version `json:"v"`
	Context VV      `json:"ctx,omitempty"`
	// OSeq is the event's position in its origin actor's log, from 1,
	// gapless. Zero until the origin's store assigns it.
	OSeq uint64 `json:"o"`
}

// Origin returns the actor whose log the event belongs to.
func (e Event) Origin() string { return e.Version.Dot.Actor }

// Validate checks what every event a correct region writes satisfies, and
// returns an error naming the first violation: an origin actor, a dot
// counter from 1 to MaxCounter that is at most the event's log position
// OSeq (an actor's dots come from its own log), a context that does not
// already cover the event's own dot, counters within MaxCounter, the
// version's origin matching the actor's region, and a value exactly when the
// version is not a tombstone. An event that fails it is corrupt or forged:
// applying it could supersede versions nobody saw.
func (e Event) Validate() error {
	d := e.Version.Dot
	switch {
	case d.Actor == "":
		return errors.New("event has no origin actor")
	case d.Counter == 0 || d.Counter > MaxCounter:
		return fmt.Errorf("event dot %s: counter out of range", d)
	case e.OSeq == 0 || e.OSeq > MaxCounter:
		return fmt.Errorf("event %s: log position %d out of range", d, e.OSeq)
	case d.Counter > e.OSeq:
		return fmt.Errorf("event %s: dot counter beyond its log position %d", d, e.OSeq)
	case e.Context[d.Actor] >= d.Counter:
		return fmt.Errorf("event %s: its context %s already covers its own dot", d, e.Context)
	case e.Version.Origin != RegionOf(d.Actor):
		return fmt.Errorf("event %s: origin %q is not the actor's region", d, e.Version.Origin)
	case e.Version.Deleted && len(e.Version.Value) > 0:
		return fmt.Errorf("event %s: a tombstone with a value", d)
	case !e.Version.Deleted && len(e.Version.Value) == 0:
		return fmt.Errorf("event %s: a version without a value", d)
	}
	if err := e.Context.Check(); err != nil {
		return fmt.Errorf("event %s: context: %w", d, err)
	}
	return nil
}

// Record is the replicated state of one key: the frontier of versions no
// context has superseded yet (sorted by dot) and Seen, the join of every
// causal context applied so far. A Record is a value: methods return new
// Records and never modify their receiver's slices or maps.
type Record struct {
	Versions []Version `json:"versions"`
	Seen     VV        `json:"seen,omitempty"`
}

// Context returns the causal context a client reading this record gets:
// Seen joined with the dots of the frontier. A write made with it
// supersedes every version in the frontier.
func (r Record) Context() VV {
	ctx := r.Seen.Clone()
	for _, v := range r.Versions {
		if v.Dot.Counter > ctx[v.Dot.Actor] {
			ctx[v.Dot.Actor] = v.Dot.Counter
		}
	}
	return ctx
}

// IsZero reports whether the record has never seen a write.
func (r Record) IsZero() bool { return len(r.Versions) == 0 && len(r.Seen) == 0 }

// Live returns the frontier's versions that are not tombstones.
func (r Record) Live() []Version {
	out := make([]Version, 0, len(r.Versions))
	for _, v := range r.Versions {
		if !v.Deleted {
			out = append(out, v)
		}
	}
	return out
}

// Equal reports whether two records hold the same frontier and context.
func (r Record) Equal(o Record) bool {
	return slices.EqualFunc(r.Versions, o.Versions, Version.Equal) && r.Seen.Equal(o.Seen)
}

// Outcome says what Apply or Write did.
type Outcome struct {
	// Added is true when the event's version entered the frontier. It is
	// false for a duplicate or for a version already superseded.
	Added bool
	// Superseded lists the versions the event's context removed from the
	// frontier (causally overwritten, not conflicts).
	Superseded []Version
}

// Apply folds a replicated event into the record. Versions covered by the
// event's context leave the frontier; the event's version joins it unless it
// is already there or already covered by a context seen before. Apply is
// commutative and idempotent: any arrival order of a set of events, with
// duplicates, gives Equal records.
func (r Record) Apply(e Event) (Record, Outcome) {
	seen := r.Seen.Merge(e.Context)
	var out Outcome
	next := Record{Seen: seen, Versions: make([]Version, 0, len(r.Versions)+1)}
	present := false
	for _, v := range r.Versions {
		switch {
		case v.Dot == e.Version.Dot:
			present = true
			next.Versions = append(next.Versions, v)
		case seen.Covers(v.Dot):
			out.Superseded = append(out.Superseded, v)
		default:
			next.Versions = append(next.Versions, v)
		}
	}
	if !present && !seen.Covers(e.Version.Dot) {
		next.Versions = append(next.Versions, e.Version)
		slices.SortFunc(next.Versions, func(a, b Version) int { return a.Dot.Compare(b.Dot) })
		out.Added = true
	}
	return next, out
}

// NextDot returns one past the highest counter of actor that the record
// knows of (its frontier and Seen). A context a client sends is not
// consulted: a dot comes from the writer's own count, never from what a
// client claims. Stores mint dots from the actor's log position instead
// (see Write); NextDot serves single-key simulations and tests.
func (r Record) NextDot(actor string) Dot {
	return Dot{Actor: actor, Counter: r.Context()[actor] + 1}
}

// Write makes a local write with the fresh dot: versions covered by ctx are
// superseded, everything else stays as a sibling. It returns the new record
// and the event to replicate (OSeq unset). value is nil for a delete.
//
// The dot must be fresh for the key: its counter from 1 to MaxCounter and
// beyond what the record's context and ctx already cover; otherwise Write
// fails with ErrStaleDot and the record is unchanged (a dot a context
// already covers would be born superseded: an acknowledged write that
// vanishes). A store passes Dot{actor, next log position of actor}, which
// is fresh as long as every context it accepts names no counter beyond
// what the actor has written (see VV.Check and Event.Validate).
//
// Under sibling preservation a write without a context passes ctx = nil and
// is concurrent with every version present; under last-write-wins the caller
// passes r.Context() so a causally later write always wins.
func (r Record) Write(dot Dot, ctx VV, value json.RawMessage, deleted bool, hlc HLC) (Record, Event, Outcome, error) {
	switch {
	case dot.Actor == "" || dot.Counter == 0 || dot.Counter > MaxCounter:
		return r, Event{}, Outcome{}, fmt.Errorf("%w: %s is not a valid dot", ErrStaleDot, dot)
	case r.Context()[dot.Actor] >= dot.Counter || ctx[dot.Actor] >= dot.Counter:
		return r, Event{}, Outcome{}, fmt.Errorf("%w: %s is already covered (record context %s, write context %s)", ErrStaleDot, dot, r.Context(), ctx)
	}
	ev := Event{
		Version: Version{Dot: dot, Value: value, Deleted: deleted, HLC: hlc, Origin: RegionOf(dot.Actor)},
		Context: ctx.Clone(),
	}
	if deleted {
		ev.Version.Value = nil
	}
	next, out := r.Apply(ev)
	return next, ev, out, nil
}

// MarshalCanonical returns a byte encoding that is equal for Equal records,
// for digests that compare regions.
func (r Record) MarshalCanonical() []byte {
	versions := r.Versions
	if versions == nil {
		versions = []Version{} // Equal does not tell nil from empty, so neither may the bytes
	}
	b, _ := json.Marshal(Record{Versions: versions, Seen: r.Seen.Merge(nil)}) // never fails: no unsupported types
	return b
}
