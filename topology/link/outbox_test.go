package link

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const testReleaseInterval = 50 * time.Millisecond

func newOutboxPublisher(tb testing.TB, region string, nc *nats.Conn, ob Outbox, downstream []string, mod func(*PublisherConfig)) *Publisher {
	tb.Helper()
	cfg := PublisherConfig{Region: region, Conn: nc, Outbox: ob, Mode: ModeOutbox, Downstream: downstream,
		Heartbeat: 100 * time.Millisecond, AckTimeout: 2 * time.Second, ReleaseInterval: testReleaseInterval}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewPublisher(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// lockedBuffer is an io.Writer safe for the concurrent writes of a slog
// handler.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func waitPaused(t *testing.T, l *Link) {
	t.Helper()
	waitFor(t, 5*time.Second, "link paused with no pull open", func() bool {
		s := l.Status()
		return s.State == StatePaused && !s.Fetching
	})
}

// Two downstream regions: the outbox is trimmed only as far as both have
// finished. While one is paused its entries stay in the outbox (publishing
// and the other region go on); once it resumes the outbox drains to empty.
func TestOutboxModeTrimsAfterEveryDownstream(t *testing.T) {
	const n1, n2 = 300, 400
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n1)
	p := newOutboxPublisher(t, "a", nca, ob, []string{ConsumerName("a", "b"), ConsumerName("a", "c")}, nil)
	rb, rc := newRecorder(), newRecorder()
	lb := newTestLink(t, "b", "a", sa.ClientURL(), []string{"a"}, rb)
	lc := newTestLink(t, "c", "a", sa.ClientURL(), []string{"a"}, rc)
	goRun(t, p.Run)
	goRun(t, lb.Run)
	goRun(t, lc.Run)
	waitFor(t, 10*time.Second, "both regions applied the first batch", func() bool {
		return rb.appliedCount() == n1 && rc.appliedCount() == n1
	})
	waitFor(t, 5*time.Second, "outbox trimmed once both finished", func() bool { return ob.len() == 0 })

	if err := lc.Pause(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, lc)
	ob.add("a~e1", "a", nil, n1+1, n2)
	p.Notify()
	waitFor(t, 10*time.Second, "b applied the second batch", func() bool { return rb.appliedCount() == n1+n2 })
	waitFor(t, 5*time.Second, "second batch acknowledged", func() bool { return p.Stats().Acked == n1+n2 })
	waitFor(t, 5*time.Second, "c's pending to show the second batch", func() bool { return lc.Status().Pending == n2 })
	holds(t, 6*testReleaseInterval, "c's entries held in the outbox", func() bool {
		return ob.len() == n2 && p.Stats().Trimmed == n1
	})
	if got := rc.appliedCount(); got != n1 {
		t.Fatalf("paused region applied %d, want %d", got, n1)
	}

	lc.Resume()
	waitFor(t, 10*time.Second, "c applied everything", func() bool { return rc.appliedCount() == n1+n2 })
	waitFor(t, 5*time.Second, "outbox drained", func() bool { return ob.len() == 0 })
	for _, r := range []*recorder{rb, rc} {
		applied, deliveries, dups := r.snapshot()
		checkOrder(t, applied, "a~e1", n1+n2)
		if deliveries != n1+n2 || dups != 0 {
			t.Errorf("%d deliveries, %d duplicates; want %d, 0", deliveries, dups, n1+n2)
		}
	}
	st := p.Stats()
	if st.Trimmed != n1+n2 || st.Backlog != 0 || st.Published != n1+n2 || st.Duplicates != 0 || st.Expired != 0 || st.Resyncs != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A downstream consumer that does not exist yet holds every entry in the
// outbox but does not hold publishing: the other region gets everything.
// Once it appears the outbox drains.
func TestOutboxModeMissingDownstreamHoldsTrimNotPublish(t *testing.T) {
	const n = 500
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n)
	p := newOutboxPublisher(t, "a", nca, ob, []string{ConsumerName("a", "b"), ConsumerName("a", "c")}, nil)
	rb := newRecorder()
	goRun(t, p.Run)
	goRun(t, newTestLink(t, "b", "a", sa.ClientURL(), []string{"a"}, rb).Run)
	waitFor(t, 10*time.Second, "b applied everything", func() bool { return rb.appliedCount() == n })
	waitFor(t, 5*time.Second, "everything acknowledged", func() bool { return p.Stats().Acked == n })
	holds(t, 6*testReleaseInterval, "entries held for the missing consumer", func() bool {
		return ob.len() == n && p.Stats().Trimmed == 0
	})

	rc := newRecorder()
	goRun(t, newTestLink(t, "c", "a", sa.ClientURL(), []string{"a"}, rc).Run)
	waitFor(t, 10*time.Second, "c applied everything", func() bool { return rc.appliedCount() == n })
	waitFor(t, 5*time.Second, "outbox drained", func() bool { return ob.len() == 0 })
	if st := p.Stats(); st.Trimmed != n || st.Expired != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Past MaxHold, entries a missing consumer never finished are trimmed
// anyway, counted as expired and logged at warn level naming the consumer.
func TestOutboxModeMaxHoldTrimsAnyway(t *testing.T) {
	const n = 200
	const maxHold = 300 * time.Millisecond
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n)
	logs := &lockedBuffer{}
	start := time.Now()
	p := newOutboxPublisher(t, "a", nca, ob, []string{ConsumerName("a", "c")}, func(c *PublisherConfig) {
		c.MaxHold = maxHold
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	goRun(t, p.Run)
	waitFor(t, 10*time.Second, "expired entries trimmed", func() bool { return ob.len() == 0 })
	if d := time.Since(start); d < maxHold {
		t.Errorf("trimmed after %s, before max hold %s", d, maxHold)
	}
	if st := p.Stats(); st.Expired != n || st.Trimmed != n || st.Published != n {
		t.Errorf("stats %+v: want %d expired, trimmed and published", st, n)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "max_hold") || !strings.Contains(out, ConsumerName("a", "c")+" (missing)") {
		t.Errorf("no warning naming the missing consumer; log:\n%s", out)
	}
}

// A restarted publisher resumes after the prefix the stream's last message
// proves stored instead of republishing every untrimmed entry; at most the
// publish window is sent again (and dropped as duplicates). An outbox that
// is not the one that wrote the stream (a new actor) is published whole.
func TestOutboxModeRestartResumesAfterStream(t *testing.T) {
	const n, m, window = 1000, 200, 16
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n)
	down := []string{ConsumerName("a", "b")} // b not connected yet: nothing is trimmed
	small := func(c *PublisherConfig) { c.Window = window }

	p1 := newOutboxPublisher(t, "a", nca, ob, down, small)
	r1 := goRun(t, p1.Run)
	waitFor(t, 10*time.Second, "first publisher acknowledged everything", func() bool { return p1.Stats().Acked == n })
	r1.stop(t)
	if ob.len() != n {
		t.Fatalf("outbox holds %d, want all %d (held for b)", ob.len(), n)
	}

	ob.add("a~e1", "a", nil, n+1, m)
	p2 := newOutboxPublisher(t, "a", nca, ob, down, small)
	r2 := goRun(t, p2.Run)
	waitFor(t, 10*time.Second, "second publisher acknowledged the new entries", func() bool { return p2.Stats().Acked == n+m })
	st := p2.Stats()
	if st.Duplicates > window || st.Published != m+st.Duplicates {
		t.Errorf("restart republished %d duplicates (published %d); want at most the window %d and %d new", st.Duplicates, st.Published, window, m)
	}
	if got := streamMsgs(t, nca, "a"); got != n+m {
		t.Errorf("stream holds %d messages, want %d", got, n+m)
	}
	if ob.len() != n+m {
		t.Errorf("outbox holds %d, want %d (b still missing)", ob.len(), n+m)
	}

	rec := newRecorder()
	goRun(t, newTestLink(t, "b", "a", sa.ClientURL(), []string{"a"}, rec).Run)
	waitFor(t, 10*time.Second, "b applied everything", func() bool { return rec.appliedCount() == n+m })
	waitFor(t, 5*time.Second, "outbox drained", func() bool { return ob.len() == 0 })
	applied, deliveries, _ := rec.snapshot()
	checkOrder(t, applied, "a~e1", n+m)
	if deliveries != n+m {
		t.Errorf("%d deliveries, want %d", deliveries, n+m)
	}
	r2.stop(t)

	// A fresh outbox with a new actor: the stream's last message is not its
	// entry, so nothing is skipped.
	const k = 50
	fresh := &memOutbox{}
	fresh.add("a~e2", "a", nil, 1, k)
	p3 := newOutboxPublisher(t, "a", nca, fresh, down, small)
	goRun(t, p3.Run)
	waitFor(t, 10*time.Second, "fresh outbox published", func() bool { return p3.Stats().Acked == k })
	if st := p3.Stats(); st.Published != k || st.Duplicates != 0 {
		t.Errorf("fresh outbox stats %+v, want %d published, no duplicates", st, k)
	}
}

// The stream loses its unsynced tail (the server comes back from an older
// copy of its store, as after a power loss with lazy sync): the running
// publisher notices, republishes the lost entries still held in the outbox,
// and the downstream region receives every event once, in order. It
// notices by a release check (the stream's last sequence went below what it
// had acknowledged); with release checks off, by the first new publish
// being stored at an old sequence; or, when messages it never saw were
// appended past the old last sequence before it reconnected, by the newest
// message it had acknowledged no longer being at its sequence.
func TestOutboxModeRepublishesLostTail(t *testing.T) {
	for _, c := range []struct {
		name    string
		release time.Duration
		foreign int
	}{
		{"release-check", testReleaseInterval, 0},
		{"ack", time.Hour, 0},
		{"overwritten", testReleaseInterval, 80},
	} {
		t.Run(c.name, func(t *testing.T) { testLostTail(t, c.release, c.foreign) })
	}
}

// appendForeign appends n messages of origin z (which the link does not
// consume) to region a's stream in the store at dir.
func appendForeign(t *testing.T, dir string, n int) {
	t.Helper()
	s, err := StartServer(ServerOptions{Name: "tmp", Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	nc := connectTest(t, s.ClientURL())
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		e := OutboxEntry{Seq: uint64(i + 1), Origin: "z~x", OriginRegion: "z", OSeq: uint64(i + 1), Data: []byte(`{}`)}
		if _, err := js.PublishMsg(ctx, encodeMsg("a", e, ackedPrefix{})); err != nil {
			t.Fatal(err)
		}
	}
}

func testLostTail(t *testing.T, release time.Duration, foreign int) {
	// The lost tail (n2) is shorter than what is appended after the loss (n3,
	// in one burst before the first ack), so the stream's last sequence
	// passes the old one and only the entry check can tell the difference.
	const n1, n2, n3 = 300, 50, 150
	checks := release < time.Minute
	dir := t.TempDir()
	snap := filepath.Join(t.TempDir(), "snap")
	sa, err := StartServer(ServerOptions{Name: "a", Port: -1, StoreDir: dir, SyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sa.Shutdown() })
	port, url := sa.Port(), sa.ClientURL()
	restart := func(what string) {
		t.Helper()
		var err error
		if sa, err = StartServer(ServerOptions{Name: "a", Port: port, StoreDir: dir, SyncInterval: time.Second}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	nca := connectTest(t, url)
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n1)
	p := newOutboxPublisher(t, "a", nca, ob, []string{ConsumerName("a", "b")}, func(c *PublisherConfig) { c.ReleaseInterval = release })
	rec := newRecorder()
	l := newTestLink(t, "b", "a", url, []string{"a"}, rec)
	goRun(t, p.Run)
	goRun(t, l.Run)
	waitFor(t, 10*time.Second, "first batch applied", func() bool { return rec.appliedCount() == n1 })
	if checks {
		waitFor(t, 5*time.Second, "first batch trimmed", func() bool { return ob.len() == 0 })
	}
	if err := l.Pause(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, l)

	// What the disk would hold after a power loss: the store as it is now.
	sa.Shutdown()
	if err := os.CopyFS(snap, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	restart("restart")
	ob.add("a~e1", "a", nil, n1+1, n2)
	p.Notify()
	waitFor(t, 15*time.Second, "second batch acknowledged", func() bool { return p.Stats().Acked == n1+n2 })
	if got := streamMsgs(t, nca, "a"); got != n1+n2 {
		t.Fatalf("stream holds %d messages, want %d", got, n1+n2)
	}

	// Power loss: the second batch never reached the disk.
	sa.Shutdown()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dir, os.DirFS(snap)); err != nil {
		t.Fatal(err)
	}
	if foreign > 0 {
		appendForeign(t, dir, foreign)
	}
	restart("restart from the old copy")
	total := uint64(n1 + n2 + foreign)
	if !checks {
		ob.add("a~e1", "a", nil, n1+n2+1, n3)
		p.Notify()
		total += n3
	}
	waitFor(t, 15*time.Second, "publisher to resynchronise", func() bool { return p.Stats().Resyncs >= 1 })
	waitFor(t, 15*time.Second, "lost tail republished", func() bool { return streamMsgs(t, nca, "a") == total })
	if checks && ob.len() != n2 {
		t.Errorf("outbox holds %d, want the %d entries b has not finished", ob.len(), n2)
	}

	l.Resume()
	events := int(total) - foreign
	waitFor(t, 15*time.Second, "b applied everything", func() bool { return rec.appliedCount() == events })
	if checks {
		waitFor(t, 5*time.Second, "outbox drained", func() bool { return ob.len() == 0 })
	}
	applied, _, _ := rec.snapshot()
	checkOrder(t, applied, "a~e1", events)
	if got := streamMsgs(t, nca, "a"); got != total {
		t.Errorf("stream holds %d messages, want %d (no copies)", got, total)
	}
	if st := p.Stats(); st.Resyncs != 1 || st.Expired != 0 || st.Acked != uint64(events) {
		t.Errorf("stats %+v: want one resync, nothing expired, %d acked", st, events)
	}
}

// The stream is deleted under a running publisher: it recreates it and
// republishes what the downstream region had not finished; the link sets
// its consumer up again and applies the rest.
func TestOutboxModeRecreatesDeletedStream(t *testing.T) {
	const n1, n2 = 200, 200
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n1)
	p := newOutboxPublisher(t, "a", nca, ob, []string{ConsumerName("a", "b")}, nil)
	rec := newRecorder()
	l := newTestLink(t, "b", "a", sa.ClientURL(), []string{"a"}, rec)
	goRun(t, p.Run)
	goRun(t, l.Run)
	waitFor(t, 10*time.Second, "first batch applied", func() bool { return rec.appliedCount() == n1 })
	waitFor(t, 5*time.Second, "first batch trimmed", func() bool { return ob.len() == 0 })
	if err := l.Pause(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPaused(t, l)
	ob.add("a~e1", "a", nil, n1+1, n2)
	p.Notify()
	waitFor(t, 10*time.Second, "second batch acknowledged", func() bool { return p.Stats().Acked == n1+n2 })

	js, err := jetstream.New(nca)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, StreamName("a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "held entries republished into a new stream", func() bool {
		ictx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := js.Stream(ictx, StreamName("a"))
		return err == nil && st.CachedInfo().State.Msgs == n2
	})
	l.Resume()
	waitFor(t, 15*time.Second, "b applied everything", func() bool { return rec.appliedCount() == n1+n2 })
	waitFor(t, 5*time.Second, "outbox drained", func() bool { return ob.len() == 0 })
	applied, _, _ := rec.snapshot()
	checkOrder(t, applied, "a~e1", n1+n2)
	if st := p.Stats(); st.Resyncs != 1 {
		t.Errorf("stats %+v: want one resync", st)
	}
}
