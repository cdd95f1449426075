package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/topology/link"
)

// converged reports whether every region holds the same digest, with a
// description of each region's digest and record count.
func converged(c *Cluster) (bool, string) {
	var first []byte
	var desc []string
	same := true
	for i, n := range c.Nodes() {
		d, cnt, err := n.Store().Digest()
		if err != nil {
			return false, err.Error()
		}
		desc = append(desc, fmt.Sprintf("%s:%x/%d", n.Config().Region, d[:4], cnt))
		if i == 0 {
			first = d
		} else if !bytes.Equal(first, d) {
			same = false
		}
	}
	return same, strings.Join(desc, " ")
}

func waitConverged(t *testing.T, c *Cluster, d time.Duration) {
	t.Helper()
	var desc string
	if err := wait.Until(context.Background(), d, "convergence", func() bool {
		var ok bool
		ok, desc = converged(c)
		return ok
	}); err != nil {
		t.Fatalf("regions did not converge within %s: %s", d, desc)
	}
}

func TestTopologiesConverge(t *testing.T) {
	cases := []struct {
		kind    string
		regions []string
	}{
		{"all-to-all", []string{"r1", "r2", "r3"}},
		{"star", []string{"r1", "r2", "r3"}},
		{"circular", []string{"r1", "r2", "r3"}},
		{"circular", []string{"r1", "r2", "r3", "r4", "r5"}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s-%d", tc.kind, len(tc.regions)), func(t *testing.T) {
			c := startCluster(t, tc.regions, tc.kind, nil)
			const perRegion = 30
			for i := range perRegion {
				for _, n := range c.Nodes() {
					key := fmt.Sprintf("k%d", i%7)
					body := fmt.Sprintf(`{"from":%q,"i":%d}`, n.Config().Region, i)
					if a := do(t, "PUT", n.HTTPURL()+"/v1/kv/"+key, []byte(body)); a.status != 200 {
						t.Fatalf("put: %d %s", a.status, a.body)
					}
				}
			}
			waitConverged(t, c, 20*time.Second)
			// Exactly once: every region applied each other region's
			// writes once (applied counters = unique remote writes).
			for _, n := range c.Nodes() {
				st := n.Store().Stats()
				want := uint64(perRegion * (len(tc.regions) - 1))
				if st.Applied != want {
					t.Fatalf("%s applied %d events, want %d", n.Config().Region, st.Applied, want)
				}
			}
		})
	}
}

func pause(t *testing.T, n *Node, peer string) {
	t.Helper()
	if a := do(t, "POST", n.HTTPURL()+"/v1/admin/links/"+peer+"/pause", nil); a.status != 200 {
		t.Fatalf("pause %s at %s: %d %s", peer, n.Config().Region, a.status, a.body)
	}
}

// pauseAll pauses every inbound link of every region: writes made next are
// truly concurrent.
func pauseAll(t *testing.T, c *Cluster) {
	t.Helper()
	for _, n := range c.Nodes() {
		for _, l := range n.Status().Links {
			pause(t, n, l.From)
		}
	}
}

// resumeAll resumes every inbound link of every region.
func resumeAll(t *testing.T, c *Cluster) {
	t.Helper()
	for _, n := range c.Nodes() {
		for _, l := range n.Status().Links {
			resume(t, n, l.From)
		}
	}
}

func resume(t *testing.T, n *Node, peer string) {
	t.Helper()
	if a := do(t, "POST", n.HTTPURL()+"/v1/admin/links/"+peer+"/resume", nil); a.status != 200 {
		t.Fatalf("resume %s at %s: %d %s", peer, n.Config().Region, a.status, a.body)
	}
}

func TestConcurrentWritesWhilePaused(t *testing.T) {
	for _, strategy := range []string{"lww", "siblings"} {
		for _, kind := range []string{"all-to-all", "star", "circular"} {
			t.Run(strategy+"/"+kind, func(t *testing.T) {
				c := startCluster(t, []string{"r1", "r2", "r3"}, kind, []rules.Spec{{Name: "title", Match: "true", Strategy: strategy}})
				r1, r2 := c.Node("r1"), c.Node("r2")
				do(t, "PUT", r1.HTTPURL()+"/v1/kv/title", []byte(`"A"`))
				waitConverged(t, c, 10*time.Second)
				// Cut every inbound link so the writes are truly concurrent.
				pauseAll(t, c)
				do(t, "PUT", r1.HTTPURL()+"/v1/kv/title", []byte(`"B"`))
				do(t, "PUT", r2.HTTPURL()+"/v1/kv/title", []byte(`"C"`))
				resumeAll(t, c)
				waitConverged(t, c, 15*time.Second)
				var answers []string
				for _, n := range c.Nodes() {
					a := do(t, "GET", n.HTTPURL()+"/v1/kv/title", nil)
					answers = append(answers, fmt.Sprintf("%d %s", a.status, strings.TrimSpace(string(a.body))))
				}
				for _, a := range answers[1:] {
					if a != answers[0] {
						t.Fatalf("regions answer differently: %v", answers)
					}
				}
				switch strategy {
				case "lww":
					if !strings.HasPrefix(answers[0], "200 ") {
						t.Fatalf("lww answer %v", answers)
					}
					// The loser is in some region's conflict log.
					found := false
					for _, n := range c.Nodes() {
						cs, err := n.Store().Conflicts("title", 10)
						if err != nil {
							t.Fatal(err)
						}
						found = found || len(cs) > 0 && len(cs[0].Discarded) == 1
					}
					if !found {
						t.Fatal("no region logged the lww loser")
					}
				case "siblings":
					if !strings.HasPrefix(answers[0], "300 ") || !strings.Contains(answers[0], `"B"`) || !strings.Contains(answers[0], `"C"`) {
						t.Fatalf("siblings answer %v", answers)
					}
				}
			})
		}
	}
}

// TestFigure5_9 replays figure 5-9 of Designing Data-Intensive Applications
// on three running regions in all-to-all: a row inserted at r1 reaches r3,
// where it is updated; the link r1 -> r2 is slow (paused), so r2 receives
// the update before the insert it depends on. r2 must end with the update
// alone: the late insert is recognised as superseded, not applied on top
// and not kept as a sibling.
func TestFigure5_9(t *testing.T) {
	c := startCluster(t, []string{"r1", "r2", "r3"}, "all-to-all", []rules.Spec{{Name: "rows", Match: "true", Strategy: "siblings"}})
	r1, r2, r3 := c.Node("r1"), c.Node("r2"), c.Node("r3")
	pause(t, r2, "r1") // the slow link: r1 -> r2
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/row", []byte(`{"v":1}`))
	var ctx string
	eventually(t, 10*time.Second, "r3 to receive the insert", func() bool {
		a := do(t, "GET", r3.HTTPURL()+"/v1/kv/row", nil)
		ctx = a.header.Get(HeaderContext)
		return a.status == 200
	})
	if a := do(t, "PUT", r3.HTTPURL()+"/v1/kv/row", []byte(`{"v":2}`), HeaderContext, ctx); a.status != 200 {
		t.Fatalf("update at r3: %d %s", a.status, a.body)
	}
	eventually(t, 10*time.Second, "r2 to receive the update", func() bool {
		a := do(t, "GET", r2.HTTPURL()+"/v1/kv/row", nil)
		return a.status == 200 && strings.TrimSpace(string(a.body)) == `{"v":2}`
	})
	resume(t, r2, "r1")
	// The late insert changes nothing at r2, so wait for its watermark.
	eventually(t, 10*time.Second, "r2 to apply r1's insert", func() bool {
		return r2.Store().Applied()[r1.Store().Actor()] == 1
	})
	waitConverged(t, c, 10*time.Second)
	for _, n := range c.Nodes() {
		m := do(t, "GET", n.HTTPURL()+"/v1/kv/row?meta=true", nil).json(t)
		vs := m["versions"].([]any)
		if len(vs) != 1 {
			t.Fatalf("%s holds %d versions, want the update only: %v", n.Config().Region, len(vs), m)
		}
		v, _ := json.Marshal(vs[0].(map[string]any)["value"])
		if string(v) != `{"v":2}` {
			t.Fatalf("%s holds %s", n.Config().Region, v)
		}
	}
	if dup := r2.Store().Stats().Applied; dup != 2 {
		t.Fatalf("r2 applied %d events, want 2 (the late insert is applied as superseded)", dup)
	}
}

// TestRelayOutage stops the star hub, or one member of a circle, while the
// other regions keep writing; once it returns, every write flows everywhere.
func TestRelayOutage(t *testing.T) {
	for _, kind := range []string{"star", "circular"} {
		t.Run(kind, func(t *testing.T) {
			regions := []string{"r1", "r2", "r3"}
			if kind == "circular" {
				regions = append(regions, "r4")
			}
			c := startCluster(t, regions, kind, nil)
			down := "r1" // the hub, or a ring member
			if err := c.Stop(down); err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				for _, n := range c.Nodes() {
					if n == nil {
						continue
					}
					key := fmt.Sprintf("%s-%d", n.Config().Region, i)
					if a := do(t, "PUT", n.HTTPURL()+"/v1/kv/"+key, []byte(`1`)); a.status != 200 {
						t.Fatalf("write while %s is down: %d", down, a.status)
					}
				}
			}
			if err := c.StartRegion(context.Background(), down); err != nil {
				t.Fatal(err)
			}
			waitConverged(t, c, 30*time.Second)
			_, count, _ := c.Node("r2").Store().Digest()
			if want := 10 * (len(regions) - 1); count != want {
				t.Fatalf("r2 holds %d keys, want %d", count, want)
			}
		})
	}
}

// TestExternalNATS runs two regions against NATS servers started outside
// geogate (nats.embedded: false, nats.url): the same links replicate.
func TestExternalNATS(t *testing.T) {
	urls := map[string]string{}
	for _, r := range []string{"r1", "r2"} {
		srv, err := link.StartServer(link.ServerOptions{Name: "external-" + r, Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), SyncAlways: true,
			MaxPayload: 2 << 20}) // room for the 1 MiB documents of the default http.max_value_bytes
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		urls[r] = srv.ClientURL()
	}
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", nil, func(s *ClusterSpec) {
		s.Tune = func(cfg *config.Config) {
			cfg.NATS.Embedded = false
			cfg.NATS.Listen = ""
			cfg.NATS.URL = urls[cfg.Region]
		}
	})
	for _, n := range c.Nodes() {
		if n.NATSURL() != urls[n.Config().Region] {
			t.Fatalf("%s uses %s, want the external %s", n.Config().Region, n.NATSURL(), urls[n.Config().Region])
		}
	}
	do(t, "PUT", c.Node("r1").HTTPURL()+"/v1/kv/x", []byte(`1`))
	do(t, "PUT", c.Node("r2").HTTPURL()+"/v1/kv/y", []byte(`2`))
	waitConverged(t, c, 10*time.Second)
	if _, n, _ := c.Node("r2").Store().Digest(); n != 2 {
		t.Fatalf("r2 holds %d keys, want 2", n)
	}
}
