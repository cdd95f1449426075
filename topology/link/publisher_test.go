package link

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Outbox read and trim failures make the publisher back off and go on;
// every entry ends up in the stream exactly once and the outbox empties.
func TestPublisherRetriesOutboxErrors(t *testing.T) {
	const n = 600
	s := startTestServer(t, "a", -1, t.TempDir())
	nc := connectTest(t, s.ClientURL())
	ob := &memOutbox{readErrs: 1, trimErrs: 2}
	ob.add("a~e1", "a", nil, 1, n)
	p := newTestPublisher(t, "a", nc, ob)
	goRun(t, p.Run)
	waitFor(t, 10*time.Second, "outbox trimmed", func() bool { return ob.len() == 0 })
	st := p.Stats()
	if st.Errors != 3 || st.Trimmed != n || st.Backlog != 0 {
		t.Errorf("stats %+v: want 3 errors, %d trimmed, no backlog", st, n)
	}
	if st.Published != n || st.Duplicates != 0 {
		t.Errorf("stats %+v: want %d published, nothing republished", st, n)
	}
	if got := streamMsgs(t, nc, "a"); got != n {
		t.Errorf("stream holds %d messages, want %d", got, n)
	}
}

// Heartbeats carry the region, the last stream sequence, the trimmed
// position and the injected clock; Notify wakes an idle publisher.
func TestPublisherHeartbeats(t *testing.T) {
	s := startTestServer(t, "a", -1, t.TempDir())
	nc := connectTest(t, s.ClientURL())
	hbs := make(chan Heartbeat, 64)
	sub, err := nc.Subscribe(HeartbeatSubject("a"), func(m *nats.Msg) {
		var hb Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err != nil {
			t.Errorf("heartbeat %s: %v", m.Data, err)
			return
		}
		select {
		case hbs <- hb:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	ob := &memOutbox{}
	p, err := NewPublisher(PublisherConfig{Region: "a", Conn: nc, Outbox: ob, Heartbeat: 20 * time.Millisecond, Clock: func() time.Time { return time.UnixMilli(4242) }})
	if err != nil {
		t.Fatal(err)
	}
	goRun(t, p.Run)
	next := func() Heartbeat {
		select {
		case hb := <-hbs:
			return hb
		case <-time.After(5 * time.Second):
			t.Fatal("no heartbeat")
			return Heartbeat{}
		}
	}
	if hb := next(); hb != (Heartbeat{Region: "a", At: 4242}) {
		t.Errorf("first heartbeat %+v", hb)
	}
	ob.add("a~e1", "a", nil, 1, 5)
	p.Notify()
	p.Notify() // coalesces, never blocks
	deadline := time.Now().Add(5 * time.Second)
	for {
		hb := next()
		if hb.StreamSeq == 5 && hb.Published == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat never reported the 5 entries: %+v", hb)
		}
	}
}

func TestNewPublisherValidates(t *testing.T) {
	if _, err := NewPublisher(PublisherConfig{Region: "a.b", Outbox: &memOutbox{}}); err == nil {
		t.Error("accepted a bad region")
	}
	if _, err := NewPublisher(PublisherConfig{Region: "a"}); err == nil {
		t.Error("accepted a config without conn and outbox")
	}
	s := startTestServer(t, "a", -1, t.TempDir())
	nc := connectTest(t, s.ClientURL())
	for _, c := range []PublisherConfig{
		{Mode: "lazy"},
		{Mode: ModeOutbox, Downstream: []string{""}},
		{Mode: ModeOutbox, Downstream: []string{"geo.from"}},
		{Mode: ModeOutbox, Downstream: []string{"a b"}},
	} {
		c.Region, c.Conn, c.Outbox = "a", nc, &memOutbox{}
		if _, err := NewPublisher(c); err == nil {
			t.Errorf("accepted mode %q downstream %q", c.Mode, c.Downstream)
		}
	}
	p, err := NewPublisher(PublisherConfig{Region: "a", Conn: nc, Outbox: &memOutbox{}, Mode: ModeOutbox, MaxAge: time.Hour,
		Downstream: []string{ConsumerName("a", "c"), ConsumerName("a", "b"), ConsumerName("a", "c")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.cfg.Downstream; len(got) != 2 || got[0] != "geo_from_a_to_b" || got[1] != "geo_from_a_to_c" {
		t.Errorf("downstream %q, want the two names sorted once", got)
	}
	if p.cfg.MaxHold != time.Hour {
		t.Errorf("max hold %s, want the stream's max age 1h", p.cfg.MaxHold)
	}
}

func TestParseMode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Mode
		ok   bool
	}{
		{"", ModeStream, true}, {"stream", ModeStream, true}, {" Outbox ", ModeOutbox, true}, {"outbox", ModeOutbox, true},
		{"always", "", false}, {"streams", "", false},
	} {
		got, err := ParseMode(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	if Mode("").String() != "stream" || ModeOutbox.String() != "outbox" {
		t.Error("String of the zero mode or of outbox")
	}
}

func TestPublisherRunTwiceRefused(t *testing.T) {
	s := startTestServer(t, "a", -1, t.TempDir())
	nc := connectTest(t, s.ClientURL())
	p := newTestPublisher(t, "a", nc, &memOutbox{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, 5*time.Second, "first run to start", func() bool { return p.running.Load() })
	if err := p.Run(ctx); err == nil {
		t.Error("second concurrent Run accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("first run: %v", err)
	}
}

// TestPublisherUpdatesStreamOnlyWhenLimitsDiffer: a publisher created on a
// stream that already has its configuration sends no update (a stream
// update racing a consumer creation is a data race inside nats-server);
// changed limits are applied.
func TestPublisherUpdatesStreamOnlyWhenLimitsDiffer(t *testing.T) {
	s := startTestServer(t, "a", -1, t.TempDir())
	nc := connectTest(t, s.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := PublisherConfig{Region: "a", Conn: nc, Outbox: &memOutbox{}, MaxAge: time.Hour}
	if _, err := NewPublisher(cfg); err != nil { // creates the stream
		t.Fatal(err)
	}
	// Count stream update API calls from here on. A synchronous
	// subscription queues each one before the Flush below returns (the
	// server answers the flush after delivering them).
	sub, err := nc.SubscribeSync("$JS.API.STREAM.UPDATE.>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	nc.Flush()
	if _, err := NewPublisher(cfg); err != nil { // same configuration
		t.Fatal(err)
	}
	nc.Flush()
	if n, _, _ := sub.Pending(); n != 0 {
		t.Fatalf("%d stream updates for an unchanged configuration", n)
	}
	cfg.MaxAge = 2 * time.Hour
	if _, err := NewPublisher(cfg); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), StreamName("a"))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Fatalf("stream max age %v after the limits changed, want 2h", got)
	}
}
