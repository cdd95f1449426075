package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"pgregory.net/rapid"
)

// gatedObserver is siblingObserver behind a gate: Observe blocks until
// the test opens it, as a slow rule expression would.
type gatedObserver struct {
	siblingObserver
	gate    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	entered int
}

// open lets Observe go on (idempotent).
func (o *gatedObserver) open() { o.once.Do(func() { close(o.gate) }) }

func newGatedObserver() *gatedObserver { return &gatedObserver{gate: make(chan struct{})} }

func (o *gatedObserver) Observe(c Change) []ConflictEntry {
	o.mu.Lock()
	o.entered++
	o.mu.Unlock()
	<-o.gate
	return o.siblingObserver.Observe(c)
}

func (o *gatedObserver) waiting() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.entered > 0
}

// TestObserverOffTheWritePath: while Observe is stuck (a rule expression
// that takes its time), writes that make conflicts still commit and are
// acknowledged, and reads of the conflict log say the log is behind rather
// than answer without the entries. Once Observe goes on, the entries
// appear in commit order, each once.
func TestObserverOffTheWritePath(t *testing.T) {
	obs := newGatedObserver()
	s := openTest(t, "us", "", func(o *testOpts) {
		o.Observer = obs
		o.observeWait = 100 * time.Millisecond
	})
	t.Cleanup(obs.open) // before the store closes, even when the test fails
	// Alternate two keys without contexts: every write after a key's first
	// adds a sibling (entries 1..4).
	done := make(chan error, 1)
	go func() {
		for i := range 6 {
			if _, err := s.Write(context.Background(), Mutation{Key: []string{"x", "y"}[i%2], Value: doc(`%d`, i)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writes wait for the Observer: rule evaluation is on the write path")
	}
	eventually(t, 5*time.Second, "the observer to take the first change", obs.waiting)
	if _, err := s.Conflicts("", 10); !errors.Is(err, ErrObserving) {
		t.Fatalf("Conflicts with the observer stuck: %v, want ErrObserving", err)
	}
	if n := s.PendingObservations(); n != 4 {
		t.Fatalf("%d pending observations, want 4", n)
	}
	obs.open()
	es := mustConflicts(t, s, "", 10) // waits for them
	if got := conflictSeqs(es); !slices.Equal(got, []uint64{4, 3, 2, 1}) {
		t.Fatalf("entries %v, want 4 3 2 1", got)
	}
	for i := range es { // oldest first: the order of the writes
		e := es[len(es)-1-i]
		if want := []string{"x", "y"}[i%2]; e.Key != want || len(e.Discarded) != 1+i/2 {
			t.Errorf("entry %d: key %s with %d discarded, want %s with %d", e.Seq, e.Key, len(e.Discarded), want, 1+i/2)
		}
	}
	if n := s.PendingObservations(); n != 0 || countKeys(t, s, prefixObserve) != 0 {
		t.Errorf("%d pending, %d stored after the entries: want none", n, countKeys(t, s, prefixObserve))
	}
}

// startedObserver is siblingObserver that counts the calls made before
// the test allowed them.
type startedObserver struct {
	siblingObserver
	started, early atomic.Int32
}

func (o *startedObserver) Observe(c Change) []ConflictEntry {
	if o.started.Load() == 0 {
		o.early.Add(1)
	}
	return o.siblingObserver.Observe(c)
}

// TestObserverWaitsForStart: the store does not call its Observer before
// StartObserving (its owner may still be building what Observe reads),
// neither for new changes nor for those a previous run left pending; they
// wait, durably, and are observed in order once it starts.
func TestObserverWaitsForStart(t *testing.T) {
	dir := t.TempDir()
	obs := &startedObserver{}
	hold := func(o *testOpts) { o.Observer, o.holdObserver, o.observeWait = obs, true, 200*time.Millisecond }
	s := openTest(t, "us", dir, hold)
	for i := range 3 { // entries 1..2, of key k
		mustWrite(t, s, Mutation{Key: "k", Value: doc(`%d`, i)})
	}
	if err := s.WaitObserved(); !errors.Is(err, ErrObserving) {
		t.Fatalf("WaitObserved before StartObserving: %v, want ErrObserving", err)
	}
	if n := s.PendingObservations(); n != 2 {
		t.Fatalf("%d pending observations before the start, want 2", n)
	}
	if err := s.Close(); err != nil { // Close does not wait for a start that never came
		t.Fatal(err)
	}

	s = openTest(t, "us", dir, hold)
	mustWrite(t, s, Mutation{Key: "k", Value: doc(`3`)}) // entry 3
	if err := s.WaitObserved(); !errors.Is(err, ErrObserving) {
		t.Fatalf("WaitObserved after a restart, before StartObserving: %v, want ErrObserving", err)
	}
	if n := s.PendingObservations(); n != 3 {
		t.Fatalf("%d pending observations after the restart, want 3", n)
	}
	obs.started.Store(1)
	s.StartObserving()
	s.StartObserving() // idempotent
	es := mustConflicts(t, s, "", 10)
	if got := conflictSeqs(es); !slices.Equal(got, []uint64{3, 2, 1}) {
		t.Fatalf("entries %v, want 3 2 1", got)
	}
	if n := obs.early.Load(); n != 0 {
		t.Fatalf("Observe was called %d times before StartObserving", n)
	}
}

// TestObservationsSurviveRestart: changes the observer had not taken when
// the store closed are observed after the next Open, in order, and their
// entries appended once.
func TestObservationsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	obs := newGatedObserver()
	s := openTest(t, "us", dir, func(o *testOpts) { o.Observer = obs })
	for i := range 4 { // entries 1..3, all of key k
		mustWrite(t, s, Mutation{Key: "k", Value: doc(`%d`, i)})
	}
	eventually(t, 5*time.Second, "the observer to take the first change", obs.waiting)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	eventually(t, 5*time.Second, "Close to begin", s.closing.Load)
	obs.open() // its entries come too late for this run
	if err := <-closed; err != nil {
		t.Fatal(err)
	}

	s = openTest(t, "us", dir, func(o *testOpts) { o.Observer = struct{ siblingObserver }{} })
	es := mustConflicts(t, s, "", 10)
	if got := conflictSeqs(es); !slices.Equal(got, []uint64{3, 2, 1}) {
		t.Fatalf("after the restart: entries %v, want 3 2 1", got)
	}
	for i := range es { // oldest first
		e := es[len(es)-1-i]
		if e.Key != "k" || len(e.Discarded) != i+1 || e.Kept == nil || string(e.Kept.Value) != fmt.Sprint(i+1) {
			t.Errorf("entry %d = %+v, want k keeping %d and discarding %d", e.Seq, e, i+1, i+1)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, "us", dir, withObserver(0))
	if got := conflictSeqs(mustConflicts(t, s, "", 10)); !slices.Equal(got, []uint64{3, 2, 1}) {
		t.Fatalf("after a second restart: entries %v, want the same 3 2 1", got)
	}
}

// TestNewLeaderObserves: a leader deposed before its observer appended the
// entries of its changes leaves them pending in the region log; the node
// that leads next observes them.
func TestNewLeaderObserves(t *testing.T) {
	ctx := context.Background()
	log := &memLog{}
	obs := newGatedObserver()
	leader := clusteredNode(t, func(o *testOpts) { o.Observer = obs })
	follower := clusteredNode(t, nil)
	if err := leader.Lead(ctx, 1, 0, memAppender{log, 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // entries 1 and 2
		mustWrite(t, leader, Mutation{Key: "k", Value: doc(`%d`, i)})
	}
	eventually(t, 5*time.Second, "the leader's observer to take the first change", obs.waiting)
	if err := follower.ApplyLog(ctx, log.since(0)); err != nil {
		t.Fatal(err)
	}
	if n := follower.PendingObservations(); n != 2 {
		t.Fatalf("the follower holds %d pending observations, want 2", n)
	}
	if err := leader.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	obs.open() // too late: the leader no longer leads
	if err := follower.Lead(ctx, 2, log.last(), memAppender{log, 2}); err != nil {
		t.Fatal(err)
	}
	es := mustConflicts(t, follower, "k", 10)
	if got := conflictSeqs(es); !slices.Equal(got, []uint64{2, 1}) {
		t.Fatalf("the new leader's entries %v, want 2 1", got)
	}
	if err := leader.ApplyLog(ctx, log.since(3)); err != nil {
		t.Fatal(err)
	}
	sameState(t, follower, leader)
	if n := leader.PendingObservations(); n != 0 {
		t.Errorf("the old leader holds %d pending observations after following, want 0", n)
	}
}

// Every change survives appendChange then decodeChange: the decoded change
// encodes to the same bytes (the encodings of records and events are
// canonical), with the same key and flags. Truncated input is an error,
// never a panic.
func TestChangeRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := Change{
			Key: genText().Draw(t, "key"), Before: genRecord(t), After: genRecord(t),
			Local: rapid.Bool().Draw(t, "local"), Merged: rapid.Bool().Draw(t, "merged"), Skewed: rapid.Bool().Draw(t, "skewed"),
		}
		c.Outcome.Added = rapid.Bool().Draw(t, "added")
		c.Outcome.Superseded = genRecord(t).Versions
		if rapid.Bool().Draw(t, "event") {
			c.Event = genEvent(t)
		}
		enc := appendChange(nil, c)
		got, err := decodeChange(enc)
		if err != nil {
			t.Fatalf("decodeChange(appendChange(%+v)): %v", c, err)
		}
		if again := appendChange(nil, got); !bytes.Equal(again, enc) {
			t.Fatalf("re-encoding differs:\n got %+v\nwant %+v", got, c)
		}
		if got.Key != c.Key || got.Local != c.Local || got.Merged != c.Merged || got.Skewed != c.Skewed || got.Outcome.Added != c.Outcome.Added {
			t.Fatalf("decoded %+v, want %+v", got, c)
		}
		if len(got.After.Versions) != len(c.After.Versions) || !eventsEqual(got.Event, c.Event) && c.Event.Version.Dot.Actor != "" {
			t.Fatalf("decoded %+v, want %+v", got, c)
		}
		cut := rapid.IntRange(0, len(enc)-1).Draw(t, "cut")
		if _, err := decodeChange(enc[:cut]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("decoding %d of %d bytes: %v, want ErrMalformed", cut, len(enc), err)
		}
	})
}

// An observation altered on disk is dropped, counted and logged; the ones
// after it are observed.
func TestCorruptObservationDropped(t *testing.T) {
	dir := t.TempDir()
	obs := newGatedObserver()
	s := openTest(t, "us", dir, func(o *testOpts) { o.Observer = obs })
	for i := range 4 { // observations 1..3
		mustWrite(t, s, Mutation{Key: "k", Value: doc(`%d`, i)})
	}
	eventually(t, 5*time.Second, "the observer to take the first change", obs.waiting)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	eventually(t, 5*time.Second, "Close to begin", s.closing.Load)
	obs.open()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	setRaw(t, dir, seqKey(prefixObserve, 2), []byte{changeV1, 0xFF})

	s = openTest(t, "us", dir, withObserver(0))
	es := mustConflicts(t, s, "", 10)
	if got := conflictSeqs(es); !slices.Equal(got, []uint64{2, 1}) {
		t.Fatalf("entries %v, want 2 1 (observations 1 and 3)", got)
	}
	if len(es[0].Discarded) != 3 || len(es[1].Discarded) != 1 {
		t.Errorf("entries discard %d and %d versions, want 3 (observation 3) and 1 (observation 1)", len(es[0].Discarded), len(es[1].Discarded))
	}
	if n := s.Stats().LostObservations; n != 1 {
		t.Errorf("%d observations counted lost, want 1", n)
	}
}

// setRaw sets key to value in the closed store in dir, behind its
// writer's back.
func setRaw(t *testing.T, dir string, key, value []byte) {
	t.Helper()
	db, err := badger.OpenManaged(BadgerOptions(Options{Dir: dir, SmallFootprint: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts := db.MaxVersion()
	txn := db.NewTransactionAt(ts, true)
	defer txn.Discard()
	if err := txn.Set(key, value); err != nil {
		t.Fatal(err)
	}
	if err := txn.CommitAt(ts+1, nil); err != nil {
		t.Fatal(err)
	}
}

// manyObserver logs 100 entries for every change it is shown, once its
// gate is open.
type manyObserver struct{ gate chan struct{} }

func (manyObserver) Notable(Change) bool { return true }

func (o manyObserver) Observe(c Change) []ConflictEntry {
	<-o.gate
	out := make([]ConflictEntry, 100)
	for i := range out {
		out[i] = ConflictEntry{Key: c.Key, Rule: "many", Note: fmt.Sprint(i)}
	}
	return out
}

// TestObserverTurnsFitATransaction: the entries of the changes waiting
// together do not fit one transaction; the observer takes them over
// several, in order, and none is lost or repeated.
func TestObserverTurnsFitATransaction(t *testing.T) {
	obs := manyObserver{gate: make(chan struct{})}
	s := openTest(t, "us", "", func(o *testOpts) { o.Observer = obs })
	var once sync.Once
	open := func() { once.Do(func() { close(obs.gate) }) }
	t.Cleanup(open)
	const writes = 300
	for i := range writes { // they wait for the observer, all together
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("k%d", i), Value: doc(`1`)})
	}
	open()
	settle(t, s)
	if got := s.Stats().Conflicts; got != writes*100 {
		t.Fatalf("%d entries appended, want %d", got, writes*100)
	}
	es := mustConflicts(t, s, "", 1000)
	for i, e := range es { // newest first: notes 99 down to 0, change after change
		if want := fmt.Sprint(99 - i%100); e.Note != want || e.Seq != uint64(writes*100-i) {
			t.Fatalf("entry %d: seq %d note %s, want seq %d note %s", i, e.Seq, e.Note, writes*100-i, want)
		}
	}
}

// holdObserver is siblingObserver that blocks in Observe while hold is set,
// until release is closed.
type holdObserver struct {
	siblingObserver
	hold    atomic.Bool
	entered atomic.Int32
	release chan struct{}
}

func (o *holdObserver) Observe(c Change) []ConflictEntry {
	if o.hold.Load() {
		o.entered.Add(1)
		<-o.release
	}
	return o.siblingObserver.Observe(c)
}

// TestRestartedFollowerLeadsObserves: a follower restarted while no
// observation was pending must go on numbering them as the leader does,
// not start again at 1 while the leader goes on counting. The
// leader commits a notable change and is deposed before observing it; the
// restarted follower leads and observes that change, and counts it as
// the one pending. A store written before m/observed existed restarts at
// 0 and takes the leader's numbers from the first observation the log
// brings.
func TestRestartedFollowerLeadsObserves(t *testing.T) {
	t.Run("m/observed kept", func(t *testing.T) { testRestartedFollowerLeads(t, false) })
	t.Run("store from before m/observed", func(t *testing.T) { testRestartedFollowerLeads(t, true) })
}

func testRestartedFollowerLeads(t *testing.T, old bool) {
	ctx := context.Background()
	log := &memLog{}
	obs := &holdObserver{release: make(chan struct{})}
	leader := clusteredNode(t, func(o *testOpts) { o.Observer = obs })
	t.Cleanup(func() { close(obs.release) }) // before the leader closes
	fdir := t.TempDir()
	follower := openTest(t, "us", fdir, func(o *testOpts) {
		o.Clustered, o.Observer, o.ConflictRetention, o.FeedRetention = true, siblingObserver{}, 3, 4
	})
	if err := leader.Lead(ctx, 1, 0, memAppender{log, 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // two notable changes: n/1, n/2
		mustWrite(t, leader, Mutation{Key: "k", Value: doc(`%d`, i)})
	}
	settle(t, leader) // observed: n/1, n/2 deleted
	if err := follower.ApplyLog(ctx, log.since(0)); err != nil {
		t.Fatal(err)
	}
	if n := follower.PendingObservations(); n != 0 {
		t.Fatalf("follower pending %d, want 0", n)
	}
	// The follower restarts: nothing pending on disk.
	if err := follower.Close(); err != nil {
		t.Fatal(err)
	}
	if old {
		setRaw(t, fdir, keyObserved, encodeU64(0)) // as if never written
	}
	follower = openTest(t, "us", fdir, func(o *testOpts) {
		o.Clustered, o.Observer, o.ConflictRetention, o.FeedRetention = true, siblingObserver{}, 3, 4
		o.observeWait = 500 * time.Millisecond
	})
	// Before any log entry tells it the leader's numbers, it goes on from
	// the last one assigned (m/observed): n/1 and n/2 were, none pending.
	// Without m/observed it starts again at 0.
	want := uint64(2)
	if old {
		want = 0
	}
	follower.mu.Lock()
	head, through := follower.pendingHead, follower.observedThrough
	follower.mu.Unlock()
	if head != want || through != want {
		t.Fatalf("restarted follower numbers observations from head %d, through %d; want %d and %d", head, through, want, want)
	}
	fpos, _ := follower.LogPosition()
	// The leader commits one more notable change (n/3) and is deposed
	// before its observer appends its entry.
	obs.hold.Store(true)
	mustWrite(t, leader, Mutation{Key: "k", Value: doc(`3`)})
	eventually(t, 5*time.Second, "the leader's observer to take n/3", func() bool { return obs.entered.Load() > 0 })
	if err := follower.ApplyLog(ctx, log.since(fpos)); err != nil {
		t.Fatal(err)
	}
	if n := follower.PendingObservations(); n != 1 {
		t.Fatalf("restarted follower: %d observations pending, want 1", n)
	}
	if err := leader.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := follower.Lead(ctx, 2, log.last(), memAppender{log, 2}); err != nil {
		t.Fatal(err)
	}
	// The new leader must observe the pending change.
	eventually(t, 5*time.Second, "the new leader to observe the pending change", func() bool { return follower.WaitObserved() == nil })
	es := mustConflicts(t, follower, "k", 10)
	if len(es) != 3 {
		t.Fatalf("conflict entries %d, want 3", len(es))
	}
}
