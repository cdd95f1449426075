package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/internal/wait"
)

// The polls of this package's tests (package wait).
var eventually = wait.For

// fakeClock is an injected physical clock: it returns a fixed time until a
// test advances it.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock(start int64) *fakeClock {
	c := &fakeClock{}
	c.ms.Store(start)
	return c
}

func (c *fakeClock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

func (c *fakeClock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// baseWall is the fake clock's starting time (Unix ms).
const baseWall = 1_700_000_000_000

// testOptions returns the options the unit tests use: small Badger,
// synchronous commits, a fake clock and a silent logger.
func testOptions(dir, region string) Options {
	return Options{
		Dir:            dir,
		Region:         region,
		Sync:           true,
		SmallFootprint: true,
		Clock:          conflict.NewClock(newFakeClock(baseWall).now, 0),
		Logger:         slog.New(slog.DiscardHandler),
	}
}

// testOpts are a test store's options and hooks (hooks.go), so that one
// edit function sets either.
type testOpts struct {
	Options
	hooks
	holdObserver bool // openTest leaves StartObserving to the test
}

// openTest opens a store in dir (a new temp dir if empty) and closes it
// when the test ends. edit may adjust the options and hooks.
func openTest(t testing.TB, region, dir string, edit func(*testOpts)) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	o := testOpts{Options: testOptions(dir, region)}
	if edit != nil {
		edit(&o)
	}
	s, err := open(o.Options, o.hooks)
	if err != nil {
		t.Fatalf("open %s: %v", region, err)
	}
	if !o.holdObserver {
		s.StartObserving()
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// settle waits until the observer has taken every change committed so far
// (observe.go).
func settle(t testing.TB, s *Store) {
	t.Helper()
	eventually(t, time.Minute, "the observer to take every change", func() bool {
		return s.WaitObserved() == nil // each call waits up to ObserveWait
	})
}

func mustWrite(t testing.TB, s *Store, m Mutation) WriteResult {
	t.Helper()
	res, err := s.Write(context.Background(), m)
	if err != nil {
		t.Fatalf("write %q: %v", m.Key, err)
	}
	return res
}

func mustGet(t testing.TB, s *Store, key string) conflict.Record {
	t.Helper()
	rec, ok, err := s.Get(key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	if !ok {
		t.Fatalf("get %q: no record", key)
	}
	return rec
}

func mustApply(t testing.TB, s *Store, batch ...Incoming) []ApplyResult {
	t.Helper()
	res, err := s.Apply(context.Background(), batch)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(res) != len(batch) {
		t.Fatalf("apply: %d results for %d events", len(res), len(batch))
	}
	return res
}

func mustOutbox(t testing.TB, s *Store, after uint64) []OutboxEntry {
	t.Helper()
	out, err := s.ReadOutbox(after, 1<<20)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}

func jsonDoc(format string, a ...any) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(format, a...))
}

// produced is one event a generator store wrote, with the bytes it put in
// its outbox (what a consumer would receive).
type produced struct {
	Event conflict.Event
	Raw   []byte
}

func (p produced) incoming() Incoming {
	return Incoming{Event: p.Event, Raw: p.Raw, Path: []string{conflict.RegionOf(p.Event.Origin())}}
}

// writeEvents makes the given local writes on s and returns the events in
// OSeq order with their outbox bytes.
func writeEvents(t testing.TB, s *Store, muts ...Mutation) []produced {
	t.Helper()
	first := s.Seq() + 1
	for _, m := range muts {
		mustWrite(t, s, m)
	}
	var out []produced
	for _, e := range mustOutbox(t, s, 0) {
		if e.Origin != s.Actor() || e.OSeq < first {
			continue
		}
		out = append(out, produced{Event: decodeEvent(t, e.Data), Raw: e.Data})
	}
	if len(out) != len(muts) {
		t.Fatalf("outbox has %d new events, want %d", len(out), len(muts))
	}
	return out
}

func decodeEvent(t testing.TB, data []byte) conflict.Event {
	t.Helper()
	ev, err := DecodeEvent(data)
	if err != nil {
		t.Fatalf("decode event %x: %v", data, err)
	}
	return ev
}

func eventsEqual(a, b conflict.Event) bool {
	return a.Key == b.Key && a.OSeq == b.OSeq && a.Version.Equal(b.Version) && a.Context.Equal(b.Context)
}

func digest(t testing.TB, s *Store) (string, int) {
	t.Helper()
	sum, n, err := s.Digest()
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	return fmt.Sprintf("%x", sum), n
}

// writeConcurrently makes the writes from n goroutines and fails the test on
// any error.
func writeConcurrently(t testing.TB, s *Store, muts []Mutation, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range n {
		wg.Go(func() {
			for i := g; i < len(muts); i += n {
				if _, err := s.Write(context.Background(), muts[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("write: %v", err)
	}
}

// doc is jsonDoc parsed as a store document (it must be valid JSON).
func doc(format string, a ...any) Doc { return MustParseDoc(fmt.Sprintf(format, a...)) }
