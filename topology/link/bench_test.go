package link

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Benchmarks run one event per b.N on a fresh embedded server (no fsync) and
// report events/s, so the link's cost reads as a ratio against raw
// JetStream in the same run:
//
//	go test ./topology/link/ -run '^$' -bench . -benchtime 50000x

// countingApplier finishes every message and closes reached once it has
// seen want of them.
type countingApplier struct {
	n       atomic.Int64
	want    int64
	reached chan struct{}
}

func newCountingApplier(want int) *countingApplier {
	return &countingApplier{want: int64(want), reached: make(chan struct{})}
}

func (a *countingApplier) Apply(_ context.Context, _ string, msgs []Message) ([]Result, error) {
	done := make([]Result, len(msgs))
	for i := range done {
		done[i] = Result{Verdict: Applied}
	}
	if a.n.Add(int64(len(msgs))) >= a.want && a.n.Load()-int64(len(msgs)) < a.want {
		close(a.reached)
	}
	return done, nil
}

func benchEntries(n int) *memOutbox {
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, n)
	return ob
}

func reportRate(b *testing.B, d time.Duration) {
	b.ReportMetric(float64(b.N)/d.Seconds(), "events/s")
}

// BenchmarkRawJetStream publishes N messages (the link's wire format,
// asynchronously, DefaultWindow in flight) and then consumes them with a pull
// iterator prefetching 1024: ack=async acks each message fire-and-forget
// (what the link does), ack=sync waits for each ack's confirmation (one round
// trip per message), ack=all uses AckAll and acks every 256th message and the
// last (the ceiling a strictly ordered link could reach).
func BenchmarkRawJetStream(b *testing.B) {
	for _, mode := range []string{"async", "sync", "all"} {
		b.Run("ack="+mode, func(b *testing.B) {
			s := startTestServer(b, "a", -1, b.TempDir())
			nc := connectTest(b, s.ClientURL())
			js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(DefaultWindow))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"geo.a.*"}, Duplicates: 2 * time.Minute}); err != nil {
				b.Fatal(err)
			}
			policy := jetstream.AckExplicitPolicy
			if mode == "all" {
				policy = jetstream.AckAllPolicy
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw", AckPolicy: policy, MaxAckPending: 4096})
			if err != nil {
				b.Fatal(err)
			}
			msgs := make([]*nats.Msg, b.N)
			for i := range msgs {
				msgs[i] = encodeMsg("a", OutboxEntry{Seq: uint64(i + 1), Origin: "a~e1", OriginRegion: "a", OSeq: uint64(i + 1),
					Data: fmt.Appendf(nil, `{"origin":"a~e1","oseq":%d}`, i+1)}, ackedPrefix{seq: uint64(i), stream: uint64(i)})
			}
			b.ResetTimer()
			start := time.Now()
			for _, m := range msgs {
				if _, err := js.PublishMsgAsync(m); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("publish did not complete")
			}
			it, err := cons.Messages(jetstream.PullMaxMessages(1024))
			if err != nil {
				b.Fatal(err)
			}
			for i := range b.N {
				m, err := it.Next()
				if err != nil {
					b.Fatal(err)
				}
				switch {
				case mode == "sync":
					actx, cancel := context.WithTimeout(ctx, 30*time.Second)
					err = m.DoubleAck(actx)
					cancel()
				case mode == "async":
					err = m.Ack()
				case i%256 == 255 || i == b.N-1:
					err = m.Ack()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			it.Stop()
			reportRate(b, elapsed)
		})
	}
}

// BenchmarkLink ships N outbox entries end to end: Publisher into the stream
// and Link out of it into an applier that finishes everything.
func BenchmarkLink(b *testing.B) {
	s := startTestServer(b, "a", -1, b.TempDir())
	nc := connectTest(b, s.ClientURL())
	ob := benchEntries(b.N)
	pub := newTestPublisher(b, "a", nc, ob)
	app := newCountingApplier(b.N)
	l := newTestLink(b, "b", "a", s.ClientURL(), []string{"a"}, app)
	b.ResetTimer()
	start := time.Now()
	goRun(b, pub.Run)
	goRun(b, l.Run)
	select {
	case <-app.reached:
	case <-time.After(2 * time.Minute):
		b.Fatalf("applied %d of %d", app.n.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, elapsed)
}

// BenchmarkLinkCatchUp measures a link draining a backlog of N messages
// already in the stream (a region coming back after a partition).
func BenchmarkLinkCatchUp(b *testing.B) {
	s := startTestServer(b, "a", -1, b.TempDir())
	nc := connectTest(b, s.ClientURL())
	ob := benchEntries(b.N)
	pub := newTestPublisher(b, "a", nc, ob)
	r := goRun(b, pub.Run)
	waitFor(b, 2*time.Minute, "backlog published", func() bool { return ob.len() == 0 })
	r.stop(b)
	app := newCountingApplier(b.N)
	l := newTestLink(b, "b", "a", s.ClientURL(), []string{"a"}, app)
	b.ResetTimer()
	start := time.Now()
	goRun(b, l.Run)
	select {
	case <-app.reached:
	case <-time.After(2 * time.Minute):
		b.Fatalf("applied %d of %d", app.n.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	reportRate(b, elapsed)
}

// benchSetup is one log-durability configuration TestBenchModes measures.
type benchSetup struct {
	name   string
	mode   Mode
	server ServerOptions
}

// TestBenchModes measures both log-durability modes end to end in one run:
// a Publisher shipping a memOutbox into an embedded server's stream and a
// Link applying it (no-op applier), region a -> region b.
//
//   - events/s: a backlog of GEOGATE_BENCH_EVENTS (default 20000) entries
//     until the last is applied, and until the outbox is empty (in outbox
//     mode that waits for the downstream consumer's acks to be seen).
//   - latency at a steady GEOGATE_BENCH_RATE (default 1000) events/s for
//     GEOGATE_BENCH_SECONDS (default 5): from the entry's commit to the
//     outbox to its Apply, p50/p99/max, and the largest outbox seen. With
//     "store fsync", each write batch (one per 1ms tick) is first appended
//     to a file and fsynced, as the store's group commit does, so the
//     stream's fsyncs compete with the store's for the disk.
//
// The third setup (stream mode on a lazily synced server) is unsafe against
// power loss and shown only as the ceiling.
//
//	GEOGATE_BENCH=1 go test ./topology/link/ -run TestBenchModes -count=1 -v
func TestBenchModes(t *testing.T) {
	if os.Getenv("GEOGATE_BENCH") == "" {
		t.Skip("set GEOGATE_BENCH=1 to run")
	}
	n := benchEnv(t, "GEOGATE_BENCH_EVENTS", 20000)
	rate := benchEnv(t, "GEOGATE_BENCH_RATE", 1000)
	secs := benchEnv(t, "GEOGATE_BENCH_SECONDS", 5)
	setups := []benchSetup{
		{"stream, sync always", ModeStream, ServerOptions{SyncAlways: true}},
		{"outbox, sync 1s", ModeOutbox, ServerOptions{SyncInterval: time.Second}},
		{"stream, sync 2m (unsafe)", ModeStream, ServerOptions{}},
	}
	var rows []string
	for _, s := range setups {
		var applied, drained time.Duration
		t.Run("rate/"+s.name, func(t *testing.T) { applied, drained = benchThroughput(t, s, n) })
		rows = append(rows, fmt.Sprintf("%-26s backlog %6d: %7.0f events/s applied, %7.0f events/s trimmed",
			s.name, n, float64(n)/applied.Seconds(), float64(n)/drained.Seconds()))
	}
	for _, s := range setups {
		for _, fsync := range []bool{false, true} {
			name := s.name
			if fsync {
				name += " + store fsync"
			}
			var lat []time.Duration
			var held int
			t.Run("latency/"+name, func(t *testing.T) { lat, held = benchLatency(t, s, rate, secs, fsync) })
			if len(lat) == 0 {
				continue
			}
			slices.Sort(lat)
			q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
			rows = append(rows, fmt.Sprintf("%-40s %d/s: p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms  outbox max %5d",
				name, rate, q(0.5), q(0.99), q(1), held))
		}
	}
	for _, r := range rows {
		t.Log(r)
	}
}

func benchEnv(t *testing.T, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

// benchPipeline starts a server, a publisher and a link for s; the link
// is up when it returns.
func benchPipeline(t *testing.T, s benchSetup, ob Outbox, a Applier) (*Publisher, *Link) {
	t.Helper()
	opts := s.server
	opts.Name, opts.Port, opts.StoreDir = "a", -1, t.TempDir()
	srv, err := StartServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc := connectTest(t, srv.ClientURL())
	pub, err := NewPublisher(PublisherConfig{Region: "a", Conn: nc, Outbox: ob, Mode: s.mode,
		Downstream: []string{ConsumerName("a", "b")}})
	if err != nil {
		t.Fatal(err)
	}
	l := newTestLink(t, "b", "a", srv.ClientURL(), []string{"a"}, a)
	goRun(t, pub.Run)
	goRun(t, l.Run)
	waitFor(t, 10*time.Second, "link up", func() bool { return l.Status().State == StateUp })
	return pub, l
}

func benchThroughput(t *testing.T, s benchSetup, n int) (applied, drained time.Duration) {
	ob := &memOutbox{}
	app := newCountingApplier(n)
	pub, _ := benchPipeline(t, s, ob, app)
	start := time.Now()
	ob.add("a~e1", "a", nil, 1, n)
	pub.Notify()
	select {
	case <-app.reached:
	case <-time.After(3 * time.Minute):
		t.Fatalf("applied %d of %d", app.n.Load(), n)
	}
	applied = time.Since(start)
	waitFor(t, time.Minute, "outbox drained", func() bool { return ob.len() == 0 })
	return applied, time.Since(start)
}

// latencyApplier records, for each oseq, the time from its commit (commit
// holds Unix nanoseconds per oseq) to its first Apply.
type latencyApplier struct {
	commit []atomic.Int64
	lat    []time.Duration // written only by Apply (one link, one goroutine)
	n      atomic.Int64
}

func (a *latencyApplier) Apply(_ context.Context, _ string, msgs []Message) ([]Result, error) {
	now := time.Now().UnixNano()
	done := make([]Result, len(msgs))
	for i, m := range msgs {
		done[i] = Result{Verdict: Applied}
		if m.OSeq < uint64(len(a.lat)) && a.lat[m.OSeq] == 0 {
			a.lat[m.OSeq] = time.Duration(now - a.commit[m.OSeq].Load())
			a.n.Add(1)
		}
	}
	return done, nil
}

func benchLatency(t *testing.T, s benchSetup, rate, secs int, fsync bool) ([]time.Duration, int) {
	total := rate * secs
	ob := &memOutbox{}
	app := &latencyApplier{commit: make([]atomic.Int64, total+1), lat: make([]time.Duration, total+1)}
	pub, _ := benchPipeline(t, s, ob, app)
	var f *os.File
	if fsync {
		var err error
		if f, err = os.Create(filepath.Join(t.TempDir(), "store.log")); err != nil {
			t.Fatal(err)
		}
		defer f.Close()
	}
	record := make([]byte, 256)
	held := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for produced := 0; produced < total; {
		<-tick.C
		due := min(total, int(time.Since(start).Seconds()*float64(rate)))
		k := due - produced
		if k <= 0 {
			continue
		}
		if f != nil {
			for range k {
				if _, err := f.Write(record); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now().UnixNano()
		for i := range k {
			app.commit[produced+1+i].Store(now)
		}
		ob.add("a~e1", "a", nil, uint64(produced+1), k)
		pub.Notify()
		produced = due
		held = max(held, ob.len())
	}
	waitFor(t, time.Minute, "everything applied", func() bool { return app.n.Load() == int64(total) })
	return slices.Clone(app.lat[1:]), held
}
