package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geogate/geogate/conflict"
)

func TestReopenKeepsState(t *testing.T) {
	dir := t.TempDir()
	evs, origin := threeEvents(t)
	s := openTest(t, "us", dir, nil)
	for i := range 3 {
		mustWrite(t, s, Mutation{Key: keyOf(0, i), Value: doc(`%d`, i)})
	}
	fwd := evs[0].incoming()
	fwd.Forward = true
	mustApply(t, s, fwd, evs[1].incoming())

	actor, applied, outbox := s.Actor(), s.Applied(), mustOutbox(t, s, 0)
	sum, n := digest(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = openTest(t, "us", dir, nil)
	if s.Actor() != actor {
		t.Errorf("actor = %s after reopen, want %s", s.Actor(), actor)
	}
	if s.Seq() != 3 || !s.Applied().Equal(applied) || applied[origin] != 2 {
		t.Errorf("Seq %d, Applied %v after reopen; want 3, %v (origin at 2)", s.Seq(), s.Applied(), applied)
	}
	if sum2, n2 := digest(t, s); sum2 != sum || n2 != n {
		t.Errorf("records changed across reopen: %d records, want %d", n2, n)
	}
	if got := mustOutbox(t, s, 0); !slices.EqualFunc(got, outbox, outboxEntryEqual) {
		t.Errorf("outbox after reopen = %+v, want %+v", got, outbox)
	}
	if s.OutboxHead() != 4 {
		t.Errorf("Committed = %d, want 4", s.OutboxHead())
	}

	// Sequences continue; the watermark still orders replicated events.
	w := mustWrite(t, s, Mutation{Key: "next", Value: doc(`1`)})
	if w.Event.OSeq != 4 || w.Event.Version.Dot.Actor != actor {
		t.Errorf("next write: OSeq %d dot %v, want 4 by %s", w.Event.OSeq, w.Event.Version.Dot, actor)
	}
	if out := mustOutbox(t, s, 4); len(out) != 1 || out[0].Seq != 5 {
		t.Errorf("outbox after reopen write = %+v, want seq 5", out)
	}
	res := mustApply(t, s, evs[1].incoming(), evs[2].incoming())
	if !res[0].Duplicate || !res[1].Done || res[1].Duplicate {
		t.Errorf("apply after reopen = %+v, want [duplicate, applied]", res)
	}
}

func outboxEntryEqual(a, b OutboxEntry) bool {
	return a.Seq == b.Seq && a.Origin == b.Origin && a.OSeq == b.OSeq &&
		slices.Equal(a.Path, b.Path) && string(a.Data) == string(b.Data)
}

// TestNewDirectoryNewActor: a region restarted from an empty store must not
// reuse its old dots (Riak issue KV679: a node that lost its data and
// counted from zero again wrote versions its peers took for ones they had
// seen, and dropped): every new store draws a new epoch, so a new actor.
func TestNewDirectoryNewActor(t *testing.T) {
	a := openTest(t, "us", "", nil)
	b := openTest(t, "us", "", nil)
	if a.Actor() == b.Actor() {
		t.Fatalf("two new stores drew the same actor %s", a.Actor())
	}
	for _, s := range []*Store{a, b} {
		if conflict.RegionOf(s.Actor()) != "us" || !strings.HasPrefix(s.Actor(), "us"+conflict.ActorSeparator) {
			t.Errorf("actor %s does not name region us with an epoch", s.Actor())
		}
	}
	// The old incarnation's events are foreign to the new one: they apply.
	old := writeEvents(t, a, Mutation{Key: "k", Value: doc(`"old"`)})
	if res := mustApply(t, b, old[0].incoming())[0]; !res.Done || res.Duplicate {
		t.Errorf("old incarnation's event: %+v, want applied", res)
	}
	w := mustWrite(t, b, Mutation{Key: "k", Value: doc(`"new"`)})
	if w.Event.Version.Dot == old[0].Event.Version.Dot {
		t.Errorf("new incarnation reused dot %v", w.Event.Version.Dot)
	}
}

func TestOpenWrongRegion(t *testing.T) {
	dir := t.TempDir()
	a := openTest(t, "us", dir, nil)
	if err := a.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_, err := Open(testOptions(dir, "eu"))
	if err == nil {
		t.Fatalf("opened a store of region us as eu")
	}
	if msg := err.Error(); !strings.Contains(msg, `"us"`) || !strings.Contains(msg, `"eu"`) || !strings.Contains(msg, "region") {
		t.Errorf("error %q does not name both regions", msg)
	}
	// The failed open released the directory.
	b := openTest(t, "us", dir, nil)
	if b.Actor() != a.Actor() {
		t.Errorf("actor = %s, want %s", b.Actor(), a.Actor())
	}
}

func TestOpenRequiresRegionAndClock(t *testing.T) {
	for _, edit := range []func(*Options){
		func(o *Options) { o.Region = "" },
		func(o *Options) { o.Clock = nil },
	} {
		opts := testOptions(t.TempDir(), "us")
		edit(&opts)
		if s, err := Open(opts); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", opts)
		}
	}
}

func TestCloseIdempotentAndRefusesRequests(t *testing.T) {
	s := openTest(t, "us", "", nil)
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`1`)})
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("close #%d: %v", i+1, err)
		}
	}
	if _, err := s.Write(context.Background(), Mutation{Key: "k", Value: doc(`2`)}); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v, want ErrClosed", err)
	}
	evs, _ := threeEvents(t)
	if _, err := s.Apply(context.Background(), []Incoming{evs[0].incoming()}); !errors.Is(err, ErrClosed) {
		t.Errorf("apply after close: %v, want ErrClosed", err)
	}
}

// TestCloseWithWritersInFlight closes the store under load: Close returns
// promptly, every writer ends with ErrClosed, and every write acknowledged
// before that is durable.
func TestCloseWithWritersInFlight(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, "us", dir, nil)
	const writers = 16
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := keyOf(w, i)
				_, err := s.Write(context.Background(), Mutation{Key: key, Value: doc(`%d`, i)})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
			}
		})
	}
	eventually(t, 10*time.Second, "writes under way", func() bool { return s.Stats().Writes >= 200 })

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Close hung with writers in flight")
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("writers still blocked after Close")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("writer ended with %v, want ErrClosed", err)
		}
	}

	s = openTest(t, "us", dir, nil)
	for _, key := range acked {
		if _, ok, err := s.Get(key); err != nil || !ok {
			t.Fatalf("acknowledged %s missing after close (ok=%v err=%v)", key, ok, err)
		}
	}
	if got := uint64(len(acked)); s.Seq() < got {
		t.Errorf("Seq = %d after reopen, below %d acknowledged writes", s.Seq(), got)
	}
	t.Logf("%d writes acknowledged before close", len(acked))
}

// TestSequencesSurviveTrimAndReopen: the sequences are derived at Open from
// the newest entries, or from m/seqs after a trim deleted them; neither an
// outbox seq nor an origin seq is ever reused.
func TestSequencesSurviveTrimAndReopen(t *testing.T) {
	dir := t.TempDir()
	hub := openTest(t, "hub", dir, nil)
	spoke := openTest(t, "spoke", "", nil)
	for i := range 3 {
		mustWrite(t, hub, Mutation{Key: "own", Value: doc(`%d`, i)}) // outbox 1..3, oseq 1..3
	}
	// Trim all own entries, then forward two of the spoke's events.
	if err := hub.TrimOutbox(3); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "trim", func() bool { return len(mustOutbox(t, hub, 0)) == 0 })
	for _, p := range writeEvents(t, spoke, Mutation{Key: "a", Value: doc(`1`)}, Mutation{Key: "b", Value: doc(`2`)}) {
		in := p.incoming()
		in.Forward = true
		mustApply(t, hub, in) // outbox 4, 5: forwarded, not own
	}
	if err := hub.Close(); err != nil {
		t.Fatal(err)
	}
	hub = openTest(t, "hub", dir, nil)
	res := mustWrite(t, hub, Mutation{Key: "own", Value: doc(`"after"`)})
	if res.Event.OSeq != 4 {
		t.Fatalf("own oseq after reopen %d, want 4", res.Event.OSeq)
	}
	out := mustOutbox(t, hub, 0)
	if len(out) != 3 || out[2].Seq != 6 || out[0].Seq != 4 {
		t.Fatalf("outbox after reopen: %+v, want seqs 4..6", out)
	}
	// And with nothing trimmed since: derived from the newest entries.
	if err := hub.Close(); err != nil {
		t.Fatal(err)
	}
	hub = openTest(t, "hub", dir, nil)
	if res := mustWrite(t, hub, Mutation{Key: "own", Value: doc(`"again"`)}); res.Event.OSeq != 5 {
		t.Fatalf("own oseq after second reopen %d, want 5", res.Event.OSeq)
	}
	if out := mustOutbox(t, hub, 0); out[len(out)-1].Seq != 7 {
		t.Fatalf("outbox seq after second reopen %d, want 7", out[len(out)-1].Seq)
	}
}
