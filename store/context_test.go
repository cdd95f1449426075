package store

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/geogate/geogate/conflict"
)

// TestWriteDotIsLogPosition: a local write's dot is its position in the
// region's log, across keys, whatever context the client sends.
func TestWriteDotIsLogPosition(t *testing.T) {
	s := openTest(t, "us", "", nil)
	for i, key := range []string{"a", "b", "a", "c", "a"} {
		res := mustWrite(t, s, Mutation{Key: key, Value: doc(`%d`, i)})
		want := conflict.Dot{Actor: s.Actor(), Counter: uint64(i + 1)}
		if res.Event.Version.Dot != want || res.Event.OSeq != want.Counter {
			t.Fatalf("write %d of %q: dot %s oseq %d, want %s", i, key, res.Event.Version.Dot, res.Event.OSeq, want)
		}
	}
}

// TestWriteRefusesContextsAhead replays the forged-context data loss: a
// context naming a counter the region never wrote (its own actor's 2^62,
// or another actor beyond what was applied here) is refused with nothing
// written, and later writes of the key stay visible.
func TestWriteRefusesContextsAhead(t *testing.T) {
	s := openTest(t, "us", "", nil)
	first := mustWrite(t, s, Mutation{Key: "k", Value: doc(`1`)})
	before, _ := digest(t, s)
	for name, ctx := range map[string]conflict.VV{
		"own actor beyond its log":     {s.Actor(): 2},
		"own actor at the limit":       {s.Actor(): conflict.MaxCounter},
		"another region, none applied": {"eu~1": 1},
		"another region far ahead":     {"eu~1": conflict.MaxCounter},
	} {
		_, err := s.Write(t.Context(), Mutation{Key: "k", Value: doc(`"forged"`), Context: ctx})
		var ahead *ContextAheadError
		if !errors.As(err, &ahead) || !errors.Is(err, ErrContextAhead) || len(ahead.Missing) != 1 {
			t.Errorf("%s: Write = %v, want a ContextAheadError naming one actor", name, err)
		}
	}
	for name, ctx := range map[string]conflict.VV{
		"counter that wraps": {s.Actor(): 1<<64 - 1},
		"empty actor":        {"": 1},
	} {
		if _, err := s.Write(t.Context(), Mutation{Key: "k", Value: doc(`"forged"`), Context: ctx}); !errors.Is(err, ErrBadContext) {
			t.Errorf("%s: Write = %v, want ErrBadContext", name, err)
		}
	}
	if after, _ := digest(t, s); after != before {
		t.Fatal("a refused write changed the store")
	}
	// Later writes of the key: one with a valid context supersedes the
	// first version, and the next one, without a context, stays visible.
	second := mustWrite(t, s, Mutation{Key: "k", Value: doc(`2`), Context: first.Record.Context()})
	third := mustWrite(t, s, Mutation{Key: "k", Value: doc(`3`)})
	rec := mustGet(t, s, "k")
	if len(rec.Versions) != 2 || rec.Versions[0].Dot != second.Event.Version.Dot || rec.Versions[1].Dot != third.Event.Version.Dot {
		t.Fatalf("frontier %+v, want the second and third writes", rec.Versions)
	}
}

// TestRefusedWriteLeavesItsBatchAlone: a refused request fails alone; the
// writes group-committed with it are acknowledged and durable.
func TestRefusedWriteLeavesItsBatchAlone(t *testing.T) {
	s := openTest(t, "us", "", nil)
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Go(func() {
			m := Mutation{Key: keyOf(0, i), Value: doc(`%d`, i)}
			if i%2 == 1 {
				m.Context = conflict.VV{"eu~1": 5}
			}
			_, errs[i] = s.Write(context.Background(), m)
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case i%2 == 1 && !errors.Is(err, ErrContextAhead):
			t.Errorf("write %d with a context ahead: %v, want ErrContextAhead", i, err)
		case i%2 == 0 && err != nil:
			t.Errorf("write %d failed with its batch: %v", i, err)
		case i%2 == 0:
			mustGet(t, s, keyOf(0, i))
		}
	}
	if got := s.Seq(); got != 32 {
		t.Fatalf("log position %d after 32 acknowledged writes", got)
	}
}

// TestContextAcceptedOnceApplied: a context naming another region's write
// is accepted once this region applied that write, and supersedes it.
func TestContextAcceptedOnceApplied(t *testing.T) {
	evs, origin := threeEvents(t)
	s := openTest(t, "us", "", nil)
	ctx := conflict.VV{origin: evs[0].Event.Version.Dot.Counter}
	if _, err := s.Write(t.Context(), Mutation{Key: evs[0].Event.Key, Value: doc(`"x"`), Context: ctx}); !errors.Is(err, ErrContextAhead) {
		t.Fatalf("before the apply: %v, want ErrContextAhead", err)
	}
	mustApply(t, s, evs[0].incoming())
	res := mustWrite(t, s, Mutation{Key: evs[0].Event.Key, Value: doc(`"x"`), Context: ctx})
	if len(res.Outcome.Superseded) != 1 || res.Outcome.Superseded[0].Dot != evs[0].Event.Version.Dot {
		t.Fatalf("superseded %+v, want the applied version", res.Outcome.Superseded)
	}
}
