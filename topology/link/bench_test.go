package link

import (
	"context"
	"fmt"
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

func (a *countingApplier) Apply(_ context.Context, _ string, msgs []Message) ([]bool, error) {
	done := make([]bool, len(msgs))
	for i := range done {
		done[i] = true
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
// asynchronously, 256 in flight) and then consumes them with a pull
// iterator prefetching 1024: ack=async acks each message fire-and-forget
// (what the link does), ack=sync waits for each ack's confirmation (one round
// trip per message), ack=all uses AckAll and acks every 256th message and the
// last (the ceiling a strictly ordered link could reach).
func BenchmarkRawJetStream(b *testing.B) {
	for _, mode := range []string{"async", "sync", "all"} {
		b.Run("ack="+mode, func(b *testing.B) {
			s := startTestServer(b, "a", -1, b.TempDir())
			nc := connectTest(b, s.ClientURL())
			js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
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
					Data: fmt.Appendf(nil, `{"origin":"a~e1","oseq":%d}`, i+1)})
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
