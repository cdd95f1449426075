package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"pgregory.net/rapid"

	"github.com/geogate/geogate/conflict"
)

// memLog is a region log in memory for the store's own tests: appends are
// fenced on the last position, as the replicated stream fences them (the
// stream itself is tested in topology/region and with the gateway).
type memLog struct {
	mu      sync.Mutex
	entries []LogEntry
	// fail, if set, is what the next Append returns (after appending, when
	// taken is set: an append whose confirmation was lost).
	fail  error
	taken bool
}

type memAppender struct {
	l    *memLog
	term uint64
}

func (a memAppender) Append(after uint64, effects []byte) (uint64, error) {
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	if after != uint64(len(a.l.entries)) {
		return 0, fmt.Errorf("append after %d: the log ends at %d: %w", after, len(a.l.entries), ErrNotLeader)
	}
	if a.l.fail != nil && !a.l.taken {
		err := a.l.fail
		a.l.fail = nil
		return 0, err
	}
	a.l.entries = append(a.l.entries, LogEntry{Seq: uint64(len(a.l.entries) + 1), Term: a.term, Effects: bytes.Clone(effects)})
	if a.l.fail != nil {
		err := a.l.fail
		a.l.fail, a.l.taken = nil, false
		return 0, err
	}
	return uint64(len(a.l.entries)), nil
}

func (l *memLog) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.entries))
}

// since returns the entries after position after.
func (l *memLog) since(after uint64) []LogEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries[after:])
}

// clusteredNode opens a store of a region of several nodes.
func clusteredNode(t testing.TB, edit func(*testOpts)) *Store {
	t.Helper()
	return openTest(t, "us", "", func(o *testOpts) {
		o.Clustered = true
		o.Observer = siblingObserver{}
		o.ConflictRetention = 3
		o.FeedRetention = 4
		if edit != nil {
			edit(o)
		}
	})
}

// dump returns every key and value of a store.
func dump(t testing.TB, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().KeyCopy(nil))] = string(v)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return out
}

// sameState fails unless the follower holds what the leader holds: every
// key, and the in-memory state derived from them.
func sameState(t testing.TB, leader, follower *Store) {
	t.Helper()
	if d := storedDiff(t, leader, follower); d != "" {
		t.Fatal(d)
	}
	sameMemory(t, leader, follower)
}

// storedDiff describes the first difference between the stored keys of
// leader and follower, or returns "".
func storedDiff(t testing.TB, leader, follower *Store) string {
	t.Helper()
	a, b := dump(t, leader), dump(t, follower)
	for k, v := range a {
		if b[k] != v {
			return fmt.Sprintf("key %q: leader %x, follower %x", k, v, b[k])
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return fmt.Sprintf("key %q only at the follower", k)
		}
	}
	return ""
}

// sameMemory checks the in-memory state and the logs of leader and
// follower agree.
func sameMemory(t testing.TB, leader, follower *Store) {
	t.Helper()
	type state struct {
		Actor                    string
		Seq, Committed, OutboxLn uint64
		Applied                  conflict.VV
		FeedHead, FeedOldest     uint64
		LogSeq, LogTerm          uint64
	}
	of := func(s *Store) state {
		seq, term := s.LogPosition()
		return state{s.Actor(), s.Seq(), s.OutboxHead(), s.OutboxLen(), s.Applied(), s.FeedHead(), s.FeedOldest(), seq, term}
	}
	if x, y := of(leader), of(follower); fmt.Sprint(x) != fmt.Sprint(y) {
		t.Fatalf("in-memory state:\n leader   %+v\n follower %+v", x, y)
	}
	ca, err := leader.Conflicts("", 100)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := follower.Conflicts("", 100)
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(ca)
	jb, _ := json.Marshal(cb)
	if !bytes.Equal(ja, jb) {
		t.Fatalf("conflict logs differ:\n leader   %s\n follower %s", ja, jb)
	}
	waitTree(t, leader)
	waitTree(t, follower)
	ra, _ := leader.TreeNodes(0, []uint32{0})
	rb, _ := follower.TreeNodes(0, []uint32{0})
	if !slices.Equal(ra, rb) {
		t.Fatalf("digest trees differ: %x %x", ra, rb)
	}
}

// euEvents are replicated events of region eu, in OSeq order, to three
// keys the tests also write locally.
func euEvents(t testing.TB) []produced {
	t.Helper()
	eu := openTest(t, "eu", "", nil)
	var muts []Mutation
	for i := range 12 {
		muts = append(muts, Mutation{Key: fmt.Sprintf("k%d", i%3), Value: doc(`{"eu":%d}`, i), Deleted: i%5 == 4})
	}
	return writeEvents(t, eu, muts...)
}

// TestFollowerMirrorsLeader: whatever a leading store does (writes and
// deletes, replicated events with gaps and duplicates, outbox trims,
// conflict-log and change-log pruning), a follower that applies the log,
// in any chunks, holds the same keys and derives the same state; and once
// the follower leads, its writes continue the region's actor and
// sequences, and the old leader, following, gets them.
func TestFollowerMirrorsLeader(t *testing.T) {
	evs := euEvents(t)
	ctx := context.Background()
	rapid.Check(t, func(rt *rapid.T) {
		log := &memLog{}
		leader, follower := clusteredNode(t, nil), clusteredNode(t, nil)
		if err := leader.Lead(ctx, 1, 0, memAppender{log, 1}); err != nil {
			rt.Fatalf("lead: %v", err)
		}
		applied, next := uint64(0), 0
		catchUp := func() {
			// The leader's observer may append meanwhile: the follower
			// is at the last entry it was given.
			pending := log.since(applied)
			for len(pending) > 0 {
				n := rapid.IntRange(1, len(pending)).Draw(rt, "chunk")
				if err := follower.ApplyLog(ctx, pending[:n]); err != nil {
					rt.Fatalf("apply log: %v", err)
				}
				applied = pending[n-1].Seq
				pending = pending[n:]
			}
		}
		for range rapid.IntRange(1, 25).Draw(rt, "ops") {
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0, 1:
				key := fmt.Sprintf("k%d", rapid.IntRange(0, 3).Draw(rt, "key"))
				m := Mutation{Key: key, Value: doc(`{"us":%d}`, next), Supersede: rapid.Bool().Draw(rt, "supersede")}
				m.Deleted = rapid.IntRange(0, 4).Draw(rt, "del") == 0
				mustWrite(t, leader, m)
				next++
			case 2:
				i := rapid.IntRange(0, len(evs)-1).Draw(rt, "event")
				j := min(len(evs), i+rapid.IntRange(1, 4).Draw(rt, "events"))
				var batch []Incoming
				for _, e := range evs[i:j] {
					batch = append(batch, e.incoming())
				}
				if _, err := leader.Apply(ctx, batch); err != nil {
					rt.Fatalf("apply: %v", err)
				}
			case 3:
				if c := leader.OutboxHead(); c > 0 {
					if err := leader.TrimOutbox(uint64(rapid.IntRange(0, int(c)).Draw(rt, "trim"))); err != nil {
						rt.Fatalf("trim: %v", err)
					}
				}
			default:
				catchUp()
			}
		}
		settle(t, leader) // the conflict-log entries of its changes are committed
		// A trim rides on a later commit, or its own after a pause:
		// wait until the leader made it.
		eventually(t, 5*time.Second, "the leader's trims", func() bool {
			return leader.trimmedCommitted() >= min(leader.trimWant.Load(), leader.OutboxHead())
		})
		// Whatever the leader still committed on its own (a trim-only
		// commit after its idle pause) reaches the follower too.
		diff := ""
		eventually(t, 5*time.Second, "the follower to hold what the leader holds", func() bool {
			catchUp()
			lp, _ := leader.LogPosition()
			fp, _ := follower.LogPosition()
			if lp != fp || log.last() != applied {
				return false
			}
			diff = storedDiff(t, leader, follower)
			return diff == ""
		})
		if diff != "" {
			t.Fatal(diff)
		}
		sameState(t, leader, follower)

		// The follower takes over: the old leader follows, the new one
		// leads after the log's end.
		if err := leader.Follow(ctx); err != nil {
			rt.Fatal(err)
		}
		if _, err := leader.Write(ctx, Mutation{Key: "k0", Value: doc(`1`)}); !errors.Is(err, ErrNotLeader) {
			rt.Fatalf("a write at the deposed leader: %v, want ErrNotLeader", err)
		}
		lastOwn := leader.Applied()[leader.Actor()]
		if err := follower.Lead(ctx, 2, log.last(), memAppender{log, 2}); err != nil {
			rt.Fatalf("promote: %v", err)
		}
		res := mustWrite(t, follower, Mutation{Key: "after", Value: doc(`"failover"`)})
		if res.Event.Origin() != leader.Actor() || res.Event.OSeq != lastOwn+1 {
			rt.Fatalf("the new leader wrote %s:%d; want the region's actor %s at %d", res.Event.Origin(), res.Event.OSeq, leader.Actor(), lastOwn+1)
		}
		if err := leader.ApplyLog(ctx, log.since(applied)); err != nil {
			rt.Fatalf("the old leader applies the new one's entries: %v", err)
		}
		sameState(t, follower, leader)
	})
}

// trimmedCommitted is the outbox trim the writer has committed.
func (s *Store) trimmedCommitted() uint64 {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.writing {
		return 0
	}
	return s.trimmed
}

// TestDeposedLeaderAcksNothing: when the log refuses a commit (another
// node appended since) or loses track of it, the writes of the batch fail,
// nothing of them is committed or counted, and the store stops taking
// writes at once; a later follower's catch-up brings whatever the log
// holds.
func TestDeposedLeaderAcksNothing(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		fail  error
		taken bool
		want  error
	}{
		{"fenced", nil, false, ErrNotLeader},
		{"unknown, not taken", errors.New("timeout"), false, ErrLogUnknown},
		{"unknown, taken", fmt.Errorf("lost ack: %w", ErrLogUnknown), true, ErrLogUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := &memLog{}
			s := clusteredNode(t, nil)
			if err := s.Lead(ctx, 1, 0, memAppender{log, 1}); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, s, Mutation{Key: "a", Value: doc(`1`)})
			seq, applied := s.Seq(), s.Applied()
			if c.fail == nil {
				// Another leader appended its marker.
				log.entries = append(log.entries, LogEntry{Seq: log.last() + 1, Term: 2})
			} else {
				log.fail, log.taken = c.fail, c.taken
			}
			_, err := s.Write(ctx, Mutation{Key: "b", Value: doc(`2`)})
			if !errors.Is(err, c.want) {
				t.Fatalf("write: %v, want %v", err, c.want)
			}
			if s.Role() != Following || s.Seq() != seq || !s.Applied().Equal(applied) {
				t.Fatalf("after the refused commit: role %s seq %d (was %d) applied %v (was %v)", s.Role(), s.Seq(), seq, s.Applied(), applied)
			}
			if _, ok := mustGetOK(t, s, "b"); ok {
				t.Fatal("the refused write is readable")
			}
			if _, err := s.Write(ctx, Mutation{Key: "c", Value: doc(`3`)}); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("a later write: %v, want ErrNotLeader", err)
			}
			// Following the log brings what it holds: the write, when
			// the log took it.
			pos, _ := s.LogPosition()
			if err := s.ApplyLog(ctx, log.since(pos)); err != nil {
				t.Fatal(err)
			}
			if _, ok := mustGetOK(t, s, "b"); ok != c.taken {
				t.Fatalf("after catching up, b present %v; want %v", ok, c.taken)
			}
		})
	}
}

func mustGetOK(t testing.TB, s *Store, key string) (conflict.Record, bool) {
	t.Helper()
	rec, ok, err := s.Get(key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return rec, ok
}

// TestNodeCopy: a node that joins is seeded with a copy of the leader's
// store and then follows the log from the copy's position; a copy cut off
// halfway leaves the store refusing reads, even after a restart, until a
// whole copy is loaded.
func TestNodeCopy(t *testing.T) {
	ctx := context.Background()
	log := &memLog{}
	leader := clusteredNode(t, nil)
	if err := leader.Lead(ctx, 1, 0, memAppender{log, 1}); err != nil {
		t.Fatal(err)
	}
	evs := euEvents(t)
	for i := range 40 {
		mustWrite(t, leader, Mutation{Key: fmt.Sprintf("k%d", i%7), Value: doc(`{"i":%d}`, i)})
		if i < len(evs) {
			mustApply(t, leader, evs[i].incoming())
		}
	}
	settle(t, leader) // the observer's commits too
	var copyBuf bytes.Buffer
	info, err := leader.WriteCopy(ctx, &copyBuf)
	if err != nil {
		t.Fatal(err)
	}
	if pos, _ := leader.LogPosition(); info.Header.LogSeq != pos || !info.Header.Copy {
		t.Fatalf("copy header %+v, leader at %d", info.Header, pos)
	}
	// Writes after the copy reach the node through the log.
	mustWrite(t, leader, Mutation{Key: "late", Value: doc(`"after the copy"`)})

	dir := t.TempDir()
	node, err := Open(func() Options {
		o := testOptions(dir, "us")
		o.Clustered = true
		o.Observer = siblingObserver{}
		return o
	}())
	if err != nil {
		t.Fatal(err)
	}
	node.StartObserving()
	// A copy cut off: the store refuses reads, also once reopened.
	cut := io.LimitReader(bytes.NewReader(copyBuf.Bytes()), int64(copyBuf.Len()-10))
	if _, err := node.LoadCopy(ctx, cut); err == nil {
		t.Fatal("a truncated copy loaded")
	}
	if _, _, err := node.Get("k1"); !errors.Is(err, ErrCopying) || !node.Copying() {
		t.Fatalf("read after a cut-off copy: %v", err)
	}
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	node, err = Open(func() Options {
		o := testOptions(dir, "us")
		o.Clustered = true
		o.Observer = siblingObserver{}
		return o
	}())
	if err != nil {
		t.Fatal(err)
	}
	node.StartObserving()
	t.Cleanup(func() { _ = node.Close() })
	if !node.Copying() {
		t.Fatal("a reopened store forgot its copy was cut off")
	}
	if _, err := node.LoadCopy(ctx, bytes.NewReader(copyBuf.Bytes())); err != nil {
		t.Fatal(err)
	}
	pos, _ := node.LogPosition()
	if pos != info.Header.LogSeq || node.Copying() {
		t.Fatalf("after the copy: position %d, want %d; copying %v", pos, info.Header.LogSeq, node.Copying())
	}
	if err := node.ApplyLog(ctx, log.since(pos)); err != nil {
		t.Fatal(err)
	}
	sameState(t, leader, node)
	// A region snapshot is not a copy, and a copy is not a snapshot.
	var snap bytes.Buffer
	if _, err := leader.WriteSnapshot(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	if _, err := node.LoadCopy(ctx, &snap); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("a region snapshot as a copy: %v", err)
	}
	if _, err := VerifySnapshot(bytes.NewReader(copyBuf.Bytes())); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("a copy as a region snapshot: %v", err)
	}
}
