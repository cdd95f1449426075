package link

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Two regions publishing to each other: every event reaches the other side
// once, in order, and both outboxes are trimmed to empty.
func TestLinkDeliversInOrderBothWays(t *testing.T) {
	const n = 2000
	sa := startTestServer(t, "a", -1, t.TempDir())
	sb := startTestServer(t, "b", -1, t.TempDir())
	nca, ncb := connectTest(t, sa.ClientURL()), connectTest(t, sb.ClientURL())

	oba, obb := &memOutbox{}, &memOutbox{}
	oba.add("a~e1", "a", nil, 1, n)
	obb.add("b~e1", "b", nil, 1, n)
	pa, pb := newTestPublisher(t, "a", nca, oba), newTestPublisher(t, "b", ncb, obb)
	ra, rb := newRecorder(), newRecorder()
	lba := newTestLink(t, "b", "a", sa.ClientURL(), []string{"a"}, rb) // b pulls from a
	lab := newTestLink(t, "a", "b", sb.ClientURL(), []string{"b"}, ra) // a pulls from b
	goRun(t, pa.Run)
	goRun(t, pb.Run)
	goRun(t, lba.Run)
	goRun(t, lab.Run)

	waitFor(t, 20*time.Second, "both links to apply everything", func() bool {
		return ra.appliedCount() == n && rb.appliedCount() == n
	})
	waitFor(t, 5*time.Second, "outboxes trimmed", func() bool { return oba.len() == 0 && obb.len() == 0 })
	for _, c := range []struct {
		rec    *recorder
		origin string
		pub    *Publisher
		link   *Link
	}{{rb, "a~e1", pa, lba}, {ra, "b~e1", pb, lab}} {
		applied, deliveries, dups := c.rec.snapshot()
		checkOrder(t, applied, c.origin, n)
		if deliveries != n || dups != 0 {
			t.Errorf("origin %s: %d deliveries, %d duplicates; want %d, 0", c.origin, deliveries, dups, n)
		}
		if applied[0].Stream != strings.SplitN(c.origin, "~", 2)[0] || applied[0].OriginRegion != applied[0].Stream {
			t.Errorf("origin %s: message fields %+v", c.origin, applied[0])
		}
		if got := applied[n-1].Path; len(got) != 1 || got[0] != applied[0].Stream {
			t.Errorf("origin %s: path %v, want [%s]", c.origin, got, applied[0].Stream)
		}
		if applied[n-1].StreamSeq != n {
			t.Errorf("origin %s: last stream seq %d, want %d", c.origin, applied[n-1].StreamSeq, n)
		}
		st := c.pub.Stats()
		if st.Published != n || st.Trimmed != n || st.Backlog != 0 || st.LastStreamSeq != n || st.Duplicates != 0 {
			t.Errorf("origin %s: publisher stats %+v", c.origin, st)
		}
		waitFor(t, 5*time.Second, "link caught up", func() bool {
			s := c.link.Status()
			return s.State == StateUp && s.Pending == 0 && s.LagSeconds < 2 && s.Applied == n && !s.LastHeartbeat.IsZero()
		})
	}
	if got := streamMsgs(t, nca, "a"); got != n {
		t.Errorf("stream GEO_a holds %d messages, want %d", got, n)
	}
}

// A publisher that stops after publishing but before trimming (a crash)
// leaves entries that its successor republishes; deduplication keeps one
// copy of each in the stream and the link delivers each event once.
func TestPublisherRestartRepublishesUntrimmed(t *testing.T) {
	const n = 2000
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.setFreeze(true)
	ob.add("a~e1", "a", nil, 1, n/2)
	rec := newRecorder()
	goRun(t, newTestLink(t, "b", "a", sa.ClientURL(), []string{"a"}, rec).Run)

	p1 := newTestPublisher(t, "a", nca, ob)
	r1 := goRun(t, p1.Run)
	waitFor(t, 10*time.Second, "first half published", func() bool { return p1.Stats().Published == n/2 })
	r1.stop(t)
	if ob.len() != n/2 {
		t.Fatalf("outbox holds %d entries, want all %d untrimmed", ob.len(), n/2)
	}

	ob.setFreeze(false)
	ob.add("a~e1", "a", nil, n/2+1, n/2)
	p2 := newTestPublisher(t, "a", nca, ob)
	if got := p2.Stats().LastStreamSeq; got != n/2 {
		t.Errorf("new publisher starts at stream seq %d, want %d", got, n/2)
	}
	goRun(t, p2.Run)
	waitFor(t, 10*time.Second, "outbox trimmed", func() bool { return ob.len() == 0 })
	if st := p2.Stats(); st.Duplicates != n/2 || st.Published != n {
		t.Errorf("second publisher stats %+v, want %d duplicates of %d published", st, n/2, n)
	}
	if got := streamMsgs(t, nca, "a"); got != n {
		t.Errorf("stream holds %d messages, want %d", got, n)
	}
	waitFor(t, 10*time.Second, "all applied", func() bool { return rec.appliedCount() == n })
	applied, deliveries, dups := rec.snapshot()
	checkOrder(t, applied, "a~e1", n)
	if deliveries != n || dups != 0 {
		t.Errorf("%d deliveries with %d duplicates, want %d and 0", deliveries, dups, n)
	}
}

// The peer's server goes away and comes back on the same store and port:
// lag grows while it is down, the link reconnects, nothing is lost.
func TestLinkSurvivesPeerRestart(t *testing.T) {
	const n = 1000
	dir := t.TempDir()
	sa, err := StartServer(ServerOptions{Name: "a", Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	port := sa.Port()
	url := sa.ClientURL()
	t.Cleanup(func() { sa.Shutdown() })
	nca := connectTest(t, url)
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n/2)
	pub := newTestPublisher(t, "a", nca, ob)
	rec := newRecorder()
	l := newTestLink(t, "b", "a", url, []string{"a"}, rec)
	goRun(t, pub.Run)
	goRun(t, l.Run)
	waitFor(t, 10*time.Second, "first half applied", func() bool { return rec.appliedCount() == n/2 })
	waitFor(t, 5*time.Second, "lag small while caught up", func() bool { return l.Status().LagSeconds < 0.5 })

	sa.Shutdown()
	waitFor(t, 5*time.Second, "link down", func() bool { return l.Status().State == StateDown })
	ob.add("a~e1", "a", nil, n/2+1, n/2)
	pub.Notify()
	waitFor(t, 5*time.Second, "lag to grow while the peer is down", func() bool { return l.Status().LagSeconds > 1 })

	sa, err = StartServer(ServerOptions{Name: "a", Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "everything applied after restart", func() bool { return rec.appliedCount() == n })
	applied, _, _ := rec.snapshot()
	checkOrder(t, applied, "a~e1", n)
	waitFor(t, 10*time.Second, "link up and caught up", func() bool {
		s := l.Status()
		return s.State == StateUp && s.LagSeconds < 2
	})
	if got := streamMsgs(t, nca, "a"); got != n {
		t.Errorf("stream holds %d messages, want %d", got, n)
	}
}

// Pause stops delivery (after what was already delivered settles) while
// lag grows; Resume delivers the rest.
func TestLinkPauseResume(t *testing.T) {
	const n1, n2 = 500, 500
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n1)
	pub := newTestPublisher(t, "a", nca, ob)
	rec := newRecorder()
	l := newTestLink(t, "b", "a", sa.ClientURL(), []string{"a"}, rec)
	goRun(t, pub.Run)
	goRun(t, l.Run)
	waitFor(t, 10*time.Second, "first batch applied", func() bool { return rec.appliedCount() == n1 })

	if err := l.Pause(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := l.Status(); s.Fetching {
		t.Fatalf("a pull is still open after Pause returned: %+v", s)
	}
	if err := l.Pause(t.Context()); err != nil { // idempotent, and returns at once
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "paused and no pull open", func() bool {
		s := l.Status()
		return s.State == StatePaused && !s.Fetching
	})
	ob.add("a~e1", "a", nil, n1+1, n2)
	pub.Notify()
	waitFor(t, 5*time.Second, "second batch in the stream", func() bool { return pub.Stats().Trimmed == n1+n2 })
	waitFor(t, 5*time.Second, "pending to show the second batch", func() bool { return l.Status().Pending == n2 })
	waitFor(t, 5*time.Second, "lag to grow while paused", func() bool { return l.Status().LagSeconds > 0.5 })
	holds(t, 300*time.Millisecond, "nothing applied while paused", func() bool { return rec.appliedCount() == n1 })

	l.Resume()
	l.Resume()
	waitFor(t, 10*time.Second, "everything applied after resume", func() bool { return rec.appliedCount() == n1+n2 })
	applied, deliveries, _ := rec.snapshot()
	checkOrder(t, applied, "a~e1", n1+n2)
	if deliveries != n1+n2 {
		t.Errorf("%d deliveries, want %d", deliveries, n1+n2)
	}
	waitFor(t, 5*time.Second, "caught up", func() bool {
		s := l.Status()
		return s.State == StateUp && s.LagSeconds < 2 && s.Pending == 0
	})
}

// A message whose Geo-Path already holds the receiving region is acked and
// never applied (loop prevention, layer 2).
func TestLinkSkipsEventsThatVisitedReceiver(t *testing.T) {
	const n, looped = 300, 120
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.add("c~e1", "c", []string{"c"}, 1, n/2)
	ob.add("d~e1", "d", []string{"d", "b"}, 1, looped) // already went through b
	ob.add("c~e1", "c", []string{"c"}, n/2+1, n/2)
	pub := newTestPublisher(t, "a", nca, ob)
	rec := newRecorder()
	l := newTestLink(t, "b", "a", sa.ClientURL(), []string{"c", "d"}, rec)
	goRun(t, pub.Run)
	goRun(t, l.Run)
	waitFor(t, 10*time.Second, "forwarded events applied", func() bool { return rec.appliedCount() == n })
	waitFor(t, 5*time.Second, "looped events acked", func() bool {
		s := l.Status()
		return s.Skipped == looped && s.Pending == 0
	})
	applied, deliveries, _ := rec.snapshot()
	checkOrder(t, applied, "c~e1", n)
	if deliveries != n {
		t.Errorf("applier saw %d messages, want only the %d that never visited b", deliveries, n)
	}
	if got := applied[0].Path; strings.Join(got, ",") != "c,a" {
		t.Errorf("path %v, want [c a]", got)
	}
}

// A message the applier leaves waiting (a gap) comes back and the link ends
// with everything applied in order; an apply error is retried.
func TestLinkRedeliversGaps(t *testing.T) {
	const n = 500
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n)
	rec := newRecorder()
	rec.refuse[100] = 2
	rec.refuse[101] = 1
	rec.fail = 2
	pub := newTestPublisher(t, "a", nca, ob)
	l := newTestLink(t, "b", "a", sa.ClientURL(), []string{"a"}, rec)
	goRun(t, pub.Run)
	goRun(t, l.Run)
	waitFor(t, 15*time.Second, "all applied", func() bool { return rec.appliedCount() == n })
	applied, _, _ := rec.snapshot()
	checkOrder(t, applied, "a~e1", n)
	rec.mu.Lock()
	refused, gaps, per100 := rec.refused, rec.gaps, rec.perOSeq[MsgID("a~e1", 100)]
	rec.mu.Unlock()
	if refused != 3 || per100 < 3 || gaps == 0 {
		t.Errorf("refused %d (want 3), oseq 100 delivered %d times (want >= 3), gaps %d (want > 0)", refused, per100, gaps)
	}
	if s := l.Status(); s.Waiting == 0 || s.Applied < n {
		t.Errorf("status %+v: want Waiting > 0 and Applied >= %d", s, n)
	}
	waitFor(t, 5*time.Second, "nothing pending", func() bool { return l.Status().Pending == 0 })
}

func TestNewLinkValidates(t *testing.T) {
	base := LinkConfig{Region: "b", Peer: "a", URL: "nats://127.0.0.1:1", Origins: []string{"a"}, Applier: newRecorder()}
	cases := []struct {
		name string
		mod  func(*LinkConfig)
	}{
		{"bad region", func(c *LinkConfig) { c.Region = "B" }},
		{"reserved region", func(c *LinkConfig) { c.Region = "hb" }},
		{"bad peer", func(c *LinkConfig) { c.Peer = "a.b" }},
		{"peer is self", func(c *LinkConfig) { c.Peer = "b" }},
		{"no url", func(c *LinkConfig) { c.URL = "" }},
		{"no applier", func(c *LinkConfig) { c.Applier = nil }},
		{"no origins", func(c *LinkConfig) { c.Origins = nil }},
		{"own origin", func(c *LinkConfig) { c.Origins = []string{"a", "b"} }},
		{"bad origin", func(c *LinkConfig) { c.Origins = []string{"*"} }},
	}
	if _, err := NewLink(base); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, c := range cases {
		cfg := base
		c.mod(&cfg)
		if _, err := NewLink(cfg); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

// A link to a peer that is not there stays down, reports lag since its
// start, and Run returns promptly on cancel.
func TestLinkDownWithoutPeer(t *testing.T) {
	start := time.Now()
	var offset atomic.Int64
	l, err := NewLink(LinkConfig{Region: "b", Peer: "a", URL: "nats://127.0.0.1:1", Origins: []string{"a"}, Applier: newRecorder(),
		Clock: func() time.Time { return start.Add(time.Duration(offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	offset.Store(int64(3 * time.Second))
	s := l.Status()
	if s.State != StateDown || s.LagSeconds != 3 {
		t.Errorf("status %+v, want down with 3s lag", s)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// The status JSON carries the fields GET /v1/status promises for a link.
func TestLinkStatusJSON(t *testing.T) {
	b, err := json.Marshal(LinkStatus{From: "a", To: "b", State: StateUp, Pending: 3, LagSeconds: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"from": "a", "to": "b", "state": "up", "pending": 3.0, "lag_seconds": 0.5}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (json %s)", k, m[k], v, b)
		}
	}
}

// countingDialer is a nats.CustomDialer that counts the connections it made.
type countingDialer struct{ n atomic.Int32 }

func (d *countingDialer) Dial(network, address string) (net.Conn, error) {
	d.n.Add(1)
	return (&net.Dialer{Timeout: 2 * time.Second}).Dial(network, address)
}

// If the peer loses the consumer (deleted, or the peer's store was reset),
// the link sets it up again and replays; the watermark drops the replay.
// The link dials through the configured Dialer.
func TestLinkRecreatesLostConsumer(t *testing.T) {
	const n = 400
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n/2)
	pub := newTestPublisher(t, "a", nca, ob)
	rec := newRecorder()
	dialer := &countingDialer{}
	l, err := NewLink(LinkConfig{Region: "b", Peer: "a", URL: sa.ClientURL(), Origins: []string{"a"}, Applier: rec, Conn: ConnConfig{Dialer: dialer}})
	if err != nil {
		t.Fatal(err)
	}
	goRun(t, pub.Run)
	goRun(t, l.Run)
	waitFor(t, 10*time.Second, "first half applied", func() bool { return rec.appliedCount() == n/2 })
	if dialer.n.Load() == 0 {
		t.Error("the link did not dial through the configured dialer")
	}

	js, err := jetstream.New(nca)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(ctx, StreamName("a"), ConsumerName("a", "b")); err != nil {
		t.Fatal(err)
	}
	ob.add("a~e1", "a", nil, n/2+1, n/2)
	pub.Notify()
	waitFor(t, 15*time.Second, "second half applied", func() bool { return rec.appliedCount() == n })
	applied, _, dups := rec.snapshot()
	checkOrder(t, applied, "a~e1", n)
	if dups != n/2 {
		t.Errorf("%d duplicates dropped by the watermark, want the %d replayed", dups, n/2)
	}
	if _, err := js.Consumer(ctx, StreamName("a"), ConsumerName("a", "b")); err != nil {
		t.Errorf("consumer not recreated: %v", err)
	}
}

// TestGapLongerThanBatchesPending: a publish lost and republished after
// later ones (events 2..41 of one origin stored before event 1) with the
// smallest batch: the events waiting behind the gap stay pending (parked),
// and the consumer must still have room to deliver event 1, after which
// all are applied in order. A bound of 16 batches (16 messages) would be
// filled by the waiting events, and event 1 would never be delivered.
func TestGapLongerThanBatchesPending(t *testing.T) {
	const n = 41
	rig := newGapRig(t)
	for o := uint64(2); o <= n; o++ {
		rig.pub(o)
	}
	rig.pub(1)
	rec := newRecorder()
	startGapLink(t, rig, rec, LinkConfig{GapDelay: 20 * time.Millisecond, Batch: 1}, 0)
	waitFor(t, 20*time.Second, "every event applied", func() bool { return rec.appliedCount() == n })
	applied, _, _ := rec.snapshot()
	checkOrder(t, applied, "a~x", n)
}

// TestFilterCovers: the NATS matcher a link asks whether its consumer's
// filters already deliver a subject (so that it widens, recreating the
// consumer, only when one is missing) behaves as the link relies on.
func TestFilterCovers(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"geo.h.a", "geo.h.a", true},
		{"geo.h.a", "geo.h.d", false},
		{"geo.h.*", "geo.h.d", true},
		{"geo.*.d", "geo.h.d", true},
		{"geo.>", "geo.h.d", true},
		{">", "geo.h.d", true},
		{"geo.h.d.>", "geo.h.d", false},
		{"geo.h", "geo.h.d", false},
		{"geo.h.d.x", "geo.h.d", false},
	} {
		if got := server.SubjectMatchesFilter(tc.subject, tc.pattern); got != tc.want {
			t.Errorf("SubjectMatchesFilter(%q, %q) = %v, want %v", tc.subject, tc.pattern, got, tc.want)
		}
	}
}
