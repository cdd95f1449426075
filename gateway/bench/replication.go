package bench

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology/link"
)

// rawJetStream publishes n messages of the size of a replicated event to a
// file stream on an embedded server synced as a region's is by default
// (nats.sync: 1s), then consumes and acks them with a pull consumer; the
// rate is n over the whole.
func rawJetStream(ctx context.Context, dir string, n int, log *slog.Logger) (float64, error) {
	sync := config.Default().NATS.SyncInterval()
	srv, err := link.StartServer(link.ServerOptions{Name: "raw", Host: "127.0.0.1", Port: -1, StoreDir: dir, SyncInterval: sync})
	if err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	nc, err := link.Connect(srv.ClientURL(), link.ConnConfig{Name: "raw baseline", Logger: log})
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage}); err != nil {
		return 0, err
	}
	payload := make([]byte, 260)
	start := time.Now()
	var futures []jetstream.PubAckFuture
	for i := range n {
		f, err := js.PublishAsync("raw.a", payload, jetstream.WithMsgID(fmt.Sprint(i)))
		if err != nil {
			return 0, err
		}
		futures = append(futures, f)
		if len(futures) >= link.DefaultWindow { // publish as the publisher does
			if err := settle(ctx, futures); err != nil {
				return 0, err
			}
			futures = futures[:0]
		}
	}
	if err := settle(ctx, futures); err != nil {
		return 0, err
	}
	cons, err := js.CreateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
	if err != nil {
		return 0, err
	}
	got := 0
	for got < n {
		batch, err := cons.Fetch(min(256, n-got), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return 0, err
		}
		var last jetstream.Msg
		for m := range batch.Messages() {
			m.Ack() //nolint:errcheck // measured like the links: ack per message
			last = m
			got++
		}
		if last == nil {
			return 0, fmt.Errorf("raw consumer stalled at %d of %d", got, n)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func settle(ctx context.Context, fs []jetstream.PubAckFuture) error {
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func replication(ctx context.Context, o *Options, rep *Report) error {
	// Replication throughput. r1 writes without fsync so that it makes
	// events faster than replication can carry them: what r2 applies per
	// second is then the replication rate (publish from r1's outbox into
	// GEO_r1, pull, apply durably at r2), not r1's local write rate. Raw
	// JetStream and replication alternate; the median of the
	// per-round ratios is reported.
	raw, tp, ratio, err := alternate(benchRounds,
		func(round int) (float64, error) {
			return rawJetStream(ctx, filepath.Join(o.Dir, fmt.Sprintf("raw-js-%d", round)), o.Events, o.Logger)
		},
		func(round int) (float64, error) { return replicationThroughput(ctx, o, round) })
	if err != nil {
		return err
	}
	rep.add(o, "raw JetStream publish-then-consume (sync every 1s)", raw, "msgs/s")
	rep.add(o, "replication r1 -> r2 (events applied at r2 per s)", tp, "events/s")
	rep.ratio(o, "replication / raw JetStream", ratio, ">= 0.5", ratio >= 0.5)

	c, err := gateway.StartCluster(ctx, gateway.ClusterSpec{
		Regions: []string{"r1", "r2", "r3"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: filepath.Join(o.Dir, "cluster"), Sync: true,
		Options: func(string) gateway.Options { return gateway.Options{Logger: o.Logger} },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	r1, r2 := c.Node("r1").Store(), c.Node("r2").Store()
	actor := r1.Actor()

	// Lag at a steady rate.
	p50, p99, err := steadyLag(ctx, r1, r2, o.Rate, o.Lag)
	if err != nil {
		return err
	}
	rep.add(o, fmt.Sprintf("lag p50 at %d writes/s", o.Rate), p50*1000, "ms")
	rep.add(o, fmt.Sprintf("lag p99 at %d writes/s", o.Rate), p99*1000, "ms")
	rep.ratio(o, "lag p99 (ms) / 50 ms", p99*1000/50, "<= 1", p99*1000 <= 50)

	// Catch-up after a paused link.
	c.Node("r2").PauseLink("r1")
	base := r1.Seq()
	if _, err := storeWrites(ctx, r1, o.Backlog, 16, "cu"); err != nil {
		return err
	}
	if err := wait.Until(ctx, 10*time.Minute, "the backlog to be in r1's stream", func() bool { return c.Node("r1").Unpublished() == 0 }); err != nil {
		return err
	}
	start := time.Now()
	c.Node("r2").ResumeLink("r1")
	if miss := waitApplied(ctx, r2, actor, base+uint64(o.Backlog), 10*time.Minute); miss != nil {
		return fmt.Errorf("catch-up incomplete: %v", miss)
	}
	cu := float64(o.Backlog) / time.Since(start).Seconds()
	rep.add(o, fmt.Sprintf("catch-up of a %d-event backlog", o.Backlog), cu, "events/s")
	rep.ratio(o, "catch-up (events/s) / 20000", cu/20000, ">= 1", cu >= 20000)
	return nil
}

// replicationThroughput runs 3 regions all-to-all, r1's local writes
// unsynced (every other setting as configured by default), writes o.Events
// at r1 from 16 writers and returns the rate at which r2 applied them.
func replicationThroughput(ctx context.Context, o *Options, round int) (float64, error) {
	c, err := gateway.StartCluster(ctx, gateway.ClusterSpec{
		Regions: []string{"r1", "r2", "r3"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: filepath.Join(o.Dir, fmt.Sprintf("throughput-%d", round)), Sync: true,
		Tune: func(cfg *config.Config) {
			if cfg.Region == "r1" {
				cfg.Durability.Sync = false
			}
		},
		Options: func(string) gateway.Options { return gateway.Options{Logger: o.Logger} },
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r1, r2 := c.Node("r1").Store(), c.Node("r2").Store()
	start := time.Now()
	if _, err := storeWrites(ctx, r1, o.Events, 16, "tp"); err != nil {
		return 0, err
	}
	if miss := waitApplied(ctx, r2, r1.Actor(), r1.Seq(), 5*time.Minute); miss != nil {
		return 0, fmt.Errorf("r2 did not apply r1's events: %v", miss)
	}
	return float64(o.Events) / time.Since(start).Seconds(), nil
}

func waitApplied(ctx context.Context, s *store.Store, actor string, seq uint64, d time.Duration) conflict.VV {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return s.WaitApplied(ctx, conflict.VV{actor: seq})
}

// steadyLag writes at rate/s at r1 for d and measures, per event, the time
// from its acknowledgement at r1 to its apply at r2.
func steadyLag(ctx context.Context, r1, r2 *store.Store, rate int, d time.Duration) (p50, p99 float64, err error) {
	n := max(int(float64(rate)*d.Seconds()), 1)
	acked := make([]atomic.Int64, n+1) // unix ns of each event's ack, by oseq - base
	base, actor := r1.Seq(), r1.Actor()
	lags := make([]float64, 0, n)
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if miss := waitApplied(ctx, r2, actor, base+uint64(i), time.Minute); miss != nil {
				done <- fmt.Errorf("event %d not applied at r2", i)
				return
			}
			now := time.Now().UnixNano()
			for deadline := time.Now().Add(time.Minute); acked[i].Load() == 0; { // applied before its ack was recorded
				if time.Now().After(deadline) {
					done <- fmt.Errorf("event %d applied at r2 but never acknowledged at r1", i)
					return
				}
				time.Sleep(20 * time.Microsecond)
			}
			lags = append(lags, float64(max(now-acked[i].Load(), 0))/1e9)
		}
		done <- nil
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	perTick := max(rate/100, 1)
	var wg sync.WaitGroup
	var failed atomic.Value
	for sent := 0; sent < n; {
		<-tick.C
		for j := 0; j < perTick && sent < n; j++ {
			sent++
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				res, err := r1.Write(ctx, store.Mutation{Key: fmt.Sprintf("lag-%d", i), Value: store.MustParseDoc(`{"lag":true}`), Supersede: true})
				if err != nil {
					failed.Store(err)
					return
				}
				acked[res.Event.OSeq-base].Store(time.Now().UnixNano())
			}(sent)
		}
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return 0, 0, err
	}
	if err := <-done; err != nil {
		return 0, 0, err
	}
	slices.Sort(lags)
	return lags[len(lags)/2], lags[len(lags)*99/100], nil
}
