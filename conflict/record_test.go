package conflict

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// TestApplyConverges checks the law the whole replication layer rests on:
// any arrival order of a set of events, with duplicates, gives one record,
// equal to the dumb reference model and with equal canonical bytes.
func TestApplyConverges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(30).Draw(t, "history")
		want := applyAll(Record{}, h.events)
		if ref := referenceRecord(h.events); !want.Equal(ref) {
			t.Fatalf("Apply disagrees with the reference model\nApply:     %q seen %s\nreference: %q seen %s\nevents:%s",
				frontier(want), want.Seen, frontier(ref), ref.Seen, describe(h.events))
		}
		wantBytes := want.MarshalCanonical()
		for i := range 3 {
			dups := rapid.SliceOfN(rapid.SampledFrom(h.events), 0, len(h.events)).Draw(t, "duplicates")
			order := rapid.Permutation(slices.Concat(h.events, dups)).Draw(t, "order")
			got := applyAll(Record{}, order)
			if !got.Equal(want) {
				t.Fatalf("order %d diverges\ngot:  %q seen %s\nwant: %q seen %s\norder:%s",
					i, frontier(got), got.Seen, frontier(want), want.Seen, describe(order))
			}
			if b := got.MarshalCanonical(); !bytes.Equal(b, wantBytes) {
				t.Fatalf("order %d: Equal records with different canonical bytes\n%s\n%s", i, b, wantBytes)
			}
		}
	})
}

// TestAllReplicasConverge checks that every replica of a history, whatever
// it already holds, reaches the same record once it applies every event.
func TestAllReplicasConverge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(30).Draw(t, "history")
		want := applyAll(Record{}, h.events)
		for i, r := range h.replicas {
			order := rapid.Permutation(h.events).Draw(t, "order")
			got := applyAll(r, order)
			if !got.Equal(want) {
				t.Fatalf("replica %s diverges\nbefore: %q seen %s\ngot:    %q seen %s\nwant:   %q seen %s",
					h.actors[i], frontier(r), r.Seen, frontier(got), got.Seen, frontier(want), want.Seen)
			}
			if !bytes.Equal(got.MarshalCanonical(), want.MarshalCanonical()) {
				t.Fatalf("replica %s: canonical bytes differ", h.actors[i])
			}
		}
	})
}

// TestHistoryInvariants checks what every reachable record must satisfy: a
// local write always enters the frontier, the frontier is sorted by dot and
// holds no version its own Seen covers, and Apply never modifies its input.
func TestHistoryInvariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(30).Draw(t, "history")
		for i, out := range h.writes {
			if !out.Added {
				t.Fatalf("write %d (%s, ctx %s) was not added", i, renderVersion(h.events[i].Version), h.ctxKinds[i])
			}
		}
		for i, r := range h.replicas {
			if !slices.IsSortedFunc(r.Versions, func(a, b Version) int { return a.Dot.Compare(b.Dot) }) {
				t.Fatalf("replica %s frontier not sorted: %q", h.actors[i], frontier(r))
			}
			for _, v := range r.Versions {
				if r.Seen.Covers(v.Dot) {
					t.Fatalf("replica %s keeps %s although Seen %s covers it", h.actors[i], v.Dot, r.Seen)
				}
			}
			before := slices.Clone(r.Versions)
			seenBefore := r.Seen.Clone()
			for _, e := range h.events {
				r.Apply(e)
			}
			if !slices.EqualFunc(before, r.Versions, Version.Equal) || !seenBefore.Equal(r.Seen) {
				t.Fatalf("Apply modified its receiver at replica %s", h.actors[i])
			}
		}
	})
}

// drawRecord draws a reachable record: one replica of a random history.
func drawRecord(t *rapid.T) (Record, []string) {
	h := genHistory(20).Draw(t, "history")
	i := rapid.IntRange(0, len(h.replicas)-1).Draw(t, "replica")
	return h.replicas[i], h.actors
}

func TestWriteWithFullContextLeavesOnlyTheNewVersion(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, actors := drawRecord(t)
		actor := rapid.SampledFrom(actors).Draw(t, "writer")
		next, ev, out := writeNext(r, actor, r.Context(), jsonString("new"), false, HLC{Wall: baseWall})
		if len(next.Versions) != 1 || !next.Versions[0].Equal(ev.Version) || !out.Added {
			t.Fatalf("after a write with r.Context(): %q (added %v), want only %s", frontier(next), out.Added, renderVersion(ev.Version))
		}
		if !slices.EqualFunc(out.Superseded, r.Versions, Version.Equal) {
			t.Fatalf("superseded %q, want the whole old frontier %q", frontier(Record{Versions: out.Superseded}), frontier(r))
		}
	})
}

func TestWriteSupersedesExactlyWhatItsContextCovers(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, actors := drawRecord(t)
		actor := rapid.SampledFrom(actors).Draw(t, "writer")
		ctx := genVV(actors, 6).Draw(t, "ctx")
		if len(r.Versions) > 0 {
			// Make sure at least one version is covered.
			ctx = ctx.With(rapid.SampledFrom(r.Versions).Draw(t, "covered").Dot)
		}
		next, ev, out := writeNext(r, actor, ctx, jsonString("new"), false, HLC{Wall: baseWall})
		if !out.Added || !slices.ContainsFunc(next.Versions, ev.Version.Equal) {
			t.Fatalf("new version %s missing from %q", renderVersion(ev.Version), frontier(next))
		}
		var wantKept, wantGone []Version
		for _, v := range r.Versions {
			if ctx.Covers(v.Dot) {
				wantGone = append(wantGone, v)
			} else {
				wantKept = append(wantKept, v)
			}
		}
		kept := slices.DeleteFunc(slices.Clone(next.Versions), ev.Version.Equal)
		if !slices.EqualFunc(kept, wantKept, Version.Equal) || !slices.EqualFunc(out.Superseded, wantGone, Version.Equal) {
			t.Fatalf("ctx %s on %q: kept %q superseded %q, want kept %q superseded %q",
				ctx, frontier(r), frontier(Record{Versions: kept}), frontier(Record{Versions: out.Superseded}),
				frontier(Record{Versions: wantKept}), frontier(Record{Versions: wantGone}))
		}
		if len(r.Versions) > 0 && len(wantGone) == 0 {
			t.Fatalf("ctx %s covers no version of %q", ctx, frontier(r))
		}
	})
}

func TestBlindWriteRemovesNothing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, actors := drawRecord(t)
		actor := rapid.SampledFrom(actors).Draw(t, "writer")
		deleted := rapid.Bool().Draw(t, "delete")
		next, ev, out := writeNext(r, actor, nil, jsonString("new"), deleted, HLC{Wall: baseWall})
		if !out.Added || len(out.Superseded) != 0 || len(next.Versions) != len(r.Versions)+1 {
			t.Fatalf("blind write on %q gave %q (added %v, superseded %d)", frontier(r), frontier(next), out.Added, len(out.Superseded))
		}
		for _, v := range r.Versions {
			if !slices.ContainsFunc(next.Versions, v.Equal) {
				t.Fatalf("blind write removed %s", renderVersion(v))
			}
		}
		if r.Context().Covers(ev.Version.Dot) {
			t.Fatalf("new dot %s reuses a dot already in context %s", ev.Version.Dot, r.Context())
		}
		if deleted && (ev.Version.Value != nil || !ev.Version.Deleted) {
			t.Fatalf("a delete must be a tombstone without value, got %+v", ev.Version)
		}
	})
}

func TestRecordTable(t *testing.T) {
	const a, b = "r1~e", "r2~e"
	r0 := Record{}
	if !r0.IsZero() || r0.Context().Descends(VV{a: 1}) {
		t.Fatal("the zero record must be empty with an empty context")
	}
	r1, e1, _ := writeNext(r0, a, nil, jsonString("x"), false, HLC{Wall: 1})
	r2, e2, _ := writeNext(r1, a, nil, nil, true, HLC{Wall: 2})
	if got, want := frontier(r2), []string{`r1~e:1 "x"`, "r1~e:2 deleted"}; !slices.Equal(got, want) {
		t.Fatalf("frontier %q, want %q", got, want)
	}
	if got := liveValues(r2); !slices.Equal(got, []string{`"x"`}) {
		t.Fatalf("Live = %q, want only \"x\"", got)
	}
	if e1.Version.Origin != "r1" || len(e2.Context) != 0 {
		t.Fatalf("event fields: origin %q ctx %v", e1.Version.Origin, e2.Context)
	}
	// A duplicate is not added again; a superseded version is not revived.
	if _, out := r2.Apply(e1); out.Added || len(out.Superseded) != 0 {
		t.Fatalf("duplicate apply: %+v", out)
	}
	r3, e3, _ := writeNext(r2, b, r2.Context(), jsonString("y"), false, HLC{Wall: 3})
	if _, out := r3.Apply(e1); out.Added {
		t.Fatal("a superseded version came back")
	}
	if got := r3.Context(); !got.Equal(VV{a: 2, b: 1}) {
		t.Fatalf("context %s, want {r1~e:2, r2~e:1}", got)
	}
	if e3.Origin() != b || e3.Version.Dot != (Dot{Actor: b, Counter: 1}) {
		t.Fatalf("event origin %q dot %s", e3.Origin(), e3.Version.Dot)
	}
	// NextDot follows the record, never a context a client sends.
	if d := r3.NextDot(a); d != (Dot{Actor: a, Counter: 3}) {
		t.Fatalf("NextDot = %s, want r1~e:3", d)
	}
}

// TestWriteRefusesStaleDots: a dot that a context already covers (the
// forged-context data loss: a write born superseded) or that is zero or
// beyond MaxCounter is refused, and the record stays as it was.
func TestWriteRefusesStaleDots(t *testing.T) {
	const a = "r1~e"
	r, _, _ := writeNext(Record{}, a, nil, jsonString("x"), false, HLC{Wall: 1})
	for _, tt := range []struct {
		name string
		dot  Dot
		ctx  VV
	}{
		{"zero counter", Dot{Actor: a}, nil},
		{"no actor", Dot{Counter: 5}, nil},
		{"beyond MaxCounter", Dot{Actor: a, Counter: MaxCounter + 1}, nil},
		{"covered by the record", Dot{Actor: a, Counter: 1}, nil},
		{"covered by the write's context", Dot{Actor: a, Counter: 7}, VV{a: 1<<62 - 1}},
		{"wrapped counter", Dot{Actor: a, Counter: 0}, VV{a: 1<<64 - 1}},
	} {
		next, _, _, err := r.Write(tt.dot, tt.ctx, jsonString("y"), false, HLC{Wall: 2})
		if !errors.Is(err, ErrStaleDot) || !next.Equal(r) {
			t.Errorf("%s: Write(%s, %s) = %v with record %q; want ErrStaleDot and the record unchanged", tt.name, tt.dot, tt.ctx, err, frontier(next))
		}
	}
}

// TestEventValidate: what a correct region writes passes; forged or
// corrupt counters do not.
func TestEventValidate(t *testing.T) {
	const a = "r1~e"
	_, ok, _ := writeNext(Record{}, a, VV{"r2~e": 3}, jsonString("x"), false, HLC{Wall: 1})
	ok.OSeq = 4
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid event refused: %v", err)
	}
	for name, mutate := range map[string]func(*Event){
		"no actor":                   func(e *Event) { e.Version.Dot.Actor = "" },
		"zero counter":               func(e *Event) { e.Version.Dot.Counter = 0 },
		"counter beyond log":         func(e *Event) { e.Version.Dot.Counter = 5 },
		"zero oseq":                  func(e *Event) { e.OSeq = 0 },
		"oseq beyond MaxCounter":     func(e *Event) { e.OSeq = MaxCounter + 1 },
		"context covers its own dot": func(e *Event) { e.Context = VV{a: 1} },
		"context counter too large":  func(e *Event) { e.Context = VV{"r2~e": MaxCounter + 1} },
		"empty actor in context":     func(e *Event) { e.Context = VV{"": 1} },
		"origin of another region":   func(e *Event) { e.Version.Origin = "r2" },
		"tombstone with a value":     func(e *Event) { e.Version.Deleted = true },
		"version without value":      func(e *Event) { e.Version.Value = nil },
	} {
		e := ok
		e.Context = ok.Context.Clone()
		mutate(&e)
		if err := e.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, e)
		}
	}
}

// TestCanonicalBytesFollowEqual: Equal records encode to equal bytes, also
// after a JSON round trip (as a store keeps them) and for nil versus empty
// slices and maps, which Equal does not tell apart.
func TestCanonicalBytesFollowEqual(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, _ := drawRecord(t)
		stored, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back Record
		if err := json.Unmarshal(stored, &back); err != nil {
			t.Fatal(err)
		}
		if !back.Equal(r) || !bytes.Equal(back.MarshalCanonical(), r.MarshalCanonical()) {
			t.Fatalf("JSON round trip changed the record: %s -> %s", r.MarshalCanonical(), back.MarshalCanonical())
		}
	})
	pairs := [][2]Record{
		{{}, {Versions: []Version{}, Seen: VV{}}},
		{{Seen: VV{"a": 1}}, {Versions: []Version{}, Seen: VV{"a": 1, "b": 0}}},
	}
	for _, p := range pairs {
		if !p[0].Equal(p[1]) {
			t.Fatalf("%+v and %+v should be Equal", p[0], p[1])
		}
		if a, b := p[0].MarshalCanonical(), p[1].MarshalCanonical(); !bytes.Equal(a, b) {
			t.Errorf("Equal records, canonical bytes %s and %s", a, b)
		}
	}
}
