package link

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geogate/geogate/internal/ports"
	"github.com/geogate/geogate/internal/wait"
	"github.com/nats-io/nats.go"
)

func TestStartServerPortTaken(t *testing.T) {
	s := startTestServer(t, "first", -1, t.TempDir())
	start := time.Now()
	_, err := StartServer(ServerOptions{Name: "second", Port: s.Port(), StoreDir: t.TempDir()})
	if err == nil {
		t.Fatal("second server on a taken port started")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not say the port is taken", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to fail", d)
	}
}

func TestStartServerNeedsStoreDir(t *testing.T) {
	if _, err := StartServer(ServerOptions{Name: "x", Port: -1}); err == nil {
		t.Fatal("started without a store dir")
	}
}

func TestStartServerSyncAlwaysKeepsStreams(t *testing.T) {
	dir := t.TempDir()
	s, err := StartServer(ServerOptions{Name: "a", Port: -1, StoreDir: dir, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	if !s.ns.JetStreamConfig().SyncAlways {
		t.Error("SyncAlways not passed to JetStream")
	}
	nc := connectTest(t, s.ClientURL())
	ob := &memOutbox{}
	ob.add("a~e1", "a", nil, 1, 10)
	p := newTestPublisher(t, "a", nc, ob)
	r := goRun(t, p.Run)
	waitFor(t, 5*time.Second, "published", func() bool { return ob.len() == 0 })
	r.stop(t)
	nc.Close()
	s.Shutdown()
	s.Shutdown() // twice is fine

	s2 := startTestServer(t, "a", -1, dir)
	if got := streamMsgs(t, connectTest(t, s2.ClientURL()), "a"); got != 10 {
		t.Fatalf("restarted server holds %d messages, want 10", got)
	}
}

// SyncInterval reaches JetStream when SyncAlways is off; negative is refused.
func TestStartServerSyncInterval(t *testing.T) {
	s, err := StartServer(ServerOptions{Name: "a", Port: -1, StoreDir: t.TempDir(), SyncInterval: 750 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	if c := s.ns.JetStreamConfig(); c.SyncAlways || c.SyncInterval != 750*time.Millisecond {
		t.Errorf("jetstream sync_always %v interval %s, want false and 750ms", c.SyncAlways, c.SyncInterval)
	}
	d := startTestServer(t, "b", -1, t.TempDir())
	if c := d.ns.JetStreamConfig(); c.SyncAlways || c.SyncInterval != 2*time.Minute {
		t.Errorf("default: sync_always %v interval %s, want false and the server default 2m", c.SyncAlways, c.SyncInterval)
	}
	if _, err := StartServer(ServerOptions{Name: "c", Port: -1, StoreDir: t.TempDir(), SyncInterval: -time.Second}); err == nil {
		t.Error("negative sync interval accepted")
	}
}

// TestClusterSecret: nodes that share the cluster's secret route to each
// other; a node of the same cluster name with another secret (another
// region's, say) is kept out.
func TestClusterSecret(t *testing.T) {
	ps, release, err := ports.Hold(3)
	if err != nil {
		t.Fatal(err)
	}
	release()
	var addrs []string
	for _, p := range ps {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	start := func(i int, secret string) *Server {
		c := &ClusterOptions{Name: "r", Listen: addrs[i], Secret: secret}
		for _, a := range addrs {
			c.Routes = append(c.Routes, "nats-route://"+a)
		}
		s, err := StartServer(ServerOptions{Name: fmt.Sprintf("n%d", i), Port: -1, StoreDir: t.TempDir(), Cluster: c})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		return s
	}
	a, b := start(0, "right"), start(1, "right")
	wait.For(t, 20*time.Second, "the two nodes with the secret to route to each other", func() bool { return a.Routes() >= 1 && b.Routes() >= 1 })
	intruder := start(2, "wrong")
	// A route count is no proof: a node counts a route it solicited as
	// soon as it reads the other side's INFO, before that side refuses its
	// credentials. What must hold is that no message crosses: one
	// published at a reaches b and never the intruder.
	pub := connectTest(t, a.ClientURL())
	var atB, atIntruder atomic.Int64
	for _, c := range []struct {
		s *Server
		n *atomic.Int64
	}{{b, &atB}, {intruder, &atIntruder}} {
		nc := connectTest(t, c.s.ClientURL())
		if _, err := nc.Subscribe("probe", func(*nats.Msg) { c.n.Add(1) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	send := func() bool {
		if err := pub.Publish("probe", []byte("x")); err != nil {
			t.Fatal(err)
		}
		return pub.Flush() == nil
	}
	wait.For(t, 20*time.Second, "a message published at a to reach b", func() bool { return send() && atB.Load() > 0 })
	wait.Holds(t, 3*time.Second, "the node without the secret to stay out", func() bool {
		send()
		return atIntruder.Load() == 0
	})
	if atB.Load() < 2 {
		t.Errorf("b received %d probes while the intruder was kept out, want them all", atB.Load())
	}
}
