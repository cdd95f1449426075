package link

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestLinkConsumerSettings: the configured AckWait, and the pipeline bound
// derived from Batch, reach the durable consumer on the peer's stream; a
// link started later with another AckWait updates the same consumer.
func TestLinkConsumerSettings(t *testing.T) {
	sa := startTestServer(t, "a", -1, t.TempDir())
	nca := connectTest(t, sa.ClientURL())
	newTestPublisher(t, "a", nca, &memOutbox{}) // creates GEO_a
	js, err := jetstream.New(nca)
	if err != nil {
		t.Fatal(err)
	}
	consumerInfo := func(what string) *jetstream.ConsumerInfo {
		t.Helper()
		var info *jetstream.ConsumerInfo
		waitFor(t, 10*time.Second, what, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c, err := js.Consumer(ctx, StreamName("a"), ConsumerName("a", "b"))
			if err != nil {
				return false
			}
			info = c.CachedInfo()
			return true
		})
		return info
	}
	run := func(cfg LinkConfig) *runner {
		t.Helper()
		cfg.Region, cfg.Peer, cfg.URL, cfg.Origins, cfg.Applier = "b", "a", sa.ClientURL(), []string{"a"}, newRecorder()
		l, err := NewLink(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := goRun(t, l.Run)
		waitFor(t, 10*time.Second, "link up", func() bool { return l.Status().State == StateUp })
		return r
	}

	r := run(LinkConfig{AckWait: 42 * time.Second, Batch: 8})
	info := consumerInfo("consumer created")
	if info.Config.AckWait != 42*time.Second {
		t.Errorf("consumer AckWait = %v, want the configured 42s", info.Config.AckWait)
	}
	if want := max(ackPendingBatches*8, gapRoom); info.Config.MaxAckPending != want {
		t.Errorf("consumer MaxAckPending = %d, want %d for batch 8 (at least the room a publisher's gap needs)", info.Config.MaxAckPending, want)
	}
	r.stop(t)

	run(LinkConfig{AckWait: 17 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, StreamName("a"), ConsumerName("a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.AckWait; got != 17*time.Second {
		t.Errorf("after a restart with AckWait 17s the consumer has %v", got)
	}
}

func TestLinkAckWaitDefault(t *testing.T) {
	l, err := NewLink(LinkConfig{Region: "b", Peer: "a", URL: "nats://127.0.0.1:1", Origins: []string{"a"}, Applier: newRecorder()})
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.AckWait != DefaultAckWait || l.prefetch != prefetchBatches*256 || l.maxAckPending != ackPendingBatches*256 {
		t.Errorf("defaults: ack wait %v, prefetch %d, max ack pending %d", l.cfg.AckWait, l.prefetch, l.maxAckPending)
	}
}

// TestPublisherStreamSettings: Replicas reaches the stream JetStream is
// asked to create (a single server refuses more than one replica, which is
// why the config refuses nats.replicas > 1 with the embedded server), and
// the duplicate window is DuplicateWindow capped at MaxAge.
func TestPublisherStreamSettings(t *testing.T) {
	s := startTestServer(t, "a", -1, t.TempDir())
	nc := connectTest(t, s.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	streamConfig := func(region string) jetstream.StreamConfig {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, StreamName(region))
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config
	}

	// JetStream's error code for "replicas > 1 not supported in
	// non-clustered mode" (nats-server JSStreamReplicasNotSupportedErr).
	const replicasNotSupported = 10074
	_, err = NewPublisher(PublisherConfig{Region: "a", Conn: nc, Outbox: &memOutbox{}, Replicas: 3})
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != replicasNotSupported {
		t.Fatalf("NewPublisher with 3 replicas on a single server: %v, want JetStream's refusal (code %d)", err, replicasNotSupported)
	}
	if _, err := NewPublisher(PublisherConfig{Region: "a", Conn: nc, Outbox: &memOutbox{}, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if c := streamConfig("a"); c.Replicas != 1 || c.Duplicates != DuplicateWindow {
		t.Errorf("stream replicas %d, duplicate window %v; want 1 and %v", c.Replicas, c.Duplicates, DuplicateWindow)
	}
	if _, err := NewPublisher(PublisherConfig{Region: "c", Conn: nc, Outbox: &memOutbox{}, MaxAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if c := streamConfig("c"); c.Replicas != 1 || c.Duplicates != time.Minute {
		t.Errorf("default stream replicas %d, duplicate window %v; want 1 and 1m (MaxAge)", c.Replicas, c.Duplicates)
	}
}
