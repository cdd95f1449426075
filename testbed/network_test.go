package testbed

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/geogate/geogate/testbed/wan"
)

// echoTarget runs a TCP echo server for the network's proxies.
func echoTarget(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); io.Copy(c, c) }() //nolint:errcheck // test echo
		}
	}()
	return ln.Addr().String()
}

// echoes reports whether a new connection through the link's dialer
// carries a round trip.
func echoes(n *network, from, to, target string) bool {
	c, err := n.dialer(from, to).Dial("tcp", target)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		return false
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	return err == nil
}

func TestNetworkCutsNest(t *testing.T) {
	target := echoTarget(t)
	n := newNetwork(Links{Default: LinkProfile{Latency: time.Millisecond}}, 1, slog.New(slog.DiscardHandler))
	defer n.close()

	// A cut made before the link's first dial applies to the proxy it
	// creates.
	n.cut("a", "b")
	if echoes(n, "a", "b", target) {
		t.Fatal("a->b carried data while cut")
	}
	if !echoes(n, "b", "a", target) {
		t.Fatal("b->a is not cut but carried nothing")
	}
	// Two overlapping faults: the link heals when both have ended.
	n.cut("a", "b")
	n.uncut("a", "b")
	if echoes(n, "a", "b", target) {
		t.Fatal("a->b healed while one of two cuts remained")
	}
	n.uncut("a", "b")
	if !echoes(n, "a", "b", target) {
		t.Fatal("a->b did not heal after both cuts ended")
	}
	n.uncut("a", "b") // extra uncuts are harmless
	if !echoes(n, "a", "b", target) {
		t.Fatal("an extra uncut broke the link")
	}
	if st := n.stats()["a->b"]; st.Refused == 0 || st.Accepted == 0 {
		t.Fatalf("a->b stats = %+v, want refused and accepted connections", st)
	}
	if got := n.names(); len(got) != 2 || got[0] != "a->b" || got[1] != "b->a" {
		t.Fatalf("names = %v", got)
	}
}

func TestNetworkShapes(t *testing.T) {
	target := echoTarget(t)
	profiles := Links{
		Default:   LinkProfile{Latency: time.Millisecond},
		Overrides: map[string]LinkProfile{"a->b": {Latency: 30 * time.Millisecond}},
	}
	n := newNetwork(profiles, 1, slog.New(slog.DiscardHandler))
	defer n.close()
	p, err := n.proxy("a", "b", target)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Shape().Down.Latency; got != 30*time.Millisecond {
		t.Fatalf("a->b starts with latency %s, want its override 30ms", got)
	}
	degraded := wan.Symmetric(wan.Profile{Latency: time.Second})
	n.setShape("a", "b", &degraded)
	if got := p.Shape(); got != degraded {
		t.Fatalf("after degrade the proxy has %+v", got)
	}
	n.setShape("a", "b", nil)
	if got := p.Shape().Down.Latency; got != 30*time.Millisecond {
		t.Fatalf("after restore latency %s, want the profile's 30ms", got)
	}
	// Same target: same proxy. Another target (a peer restarted
	// elsewhere): a new proxy with the link's state.
	if again, _ := n.proxy("a", "b", target); again != p {
		t.Fatal("a second dial of the same target started another proxy")
	}
	other := echoTarget(t)
	p2, err := n.proxy("a", "b", other)
	if err != nil || p2 == p || p2.Target() != other {
		t.Fatalf("new target: proxy %v err %v", p2, err)
	}
}

// TestNetworkProxyPerTarget: a link to a region of several nodes has a
// proxy per node's server; a cut applies to every one of them.
func TestNetworkProxyPerTarget(t *testing.T) {
	t1, t2 := echoTarget(t), echoTarget(t)
	n := newNetwork(Links{Default: LinkProfile{Latency: time.Millisecond}}, 1, slog.New(slog.DiscardHandler))
	defer n.close()
	p1, err := n.proxy("a", "b", t1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := n.proxy("a", "b", t2)
	if err != nil || p2 == p1 {
		t.Fatalf("second target: proxy %v err %v", p2, err)
	}
	if again, _ := n.proxy("a", "b", t1); again != p1 {
		t.Fatal("the first target's proxy was replaced")
	}
	if !echoes(n, "a", "b", t1) || !echoes(n, "a", "b", t2) {
		t.Fatal("both servers must be reachable through the link")
	}
	n.cut("a", "b")
	if echoes(n, "a", "b", t1) || echoes(n, "a", "b", t2) {
		t.Fatal("a cut link still reaches one of the servers")
	}
	n.uncut("a", "b")
	if !echoes(n, "a", "b", t1) || !echoes(n, "a", "b", t2) {
		t.Fatal("the healed link does not reach both servers")
	}
	if st := n.stats()["a->b"]; st.Accepted < 4 || st.Refused < 2 {
		t.Fatalf("a->b stats = %+v, want the connections of both proxies", st)
	}
}
