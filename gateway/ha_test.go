package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/testbed/diskfault"
)

// haCluster runs region a with three nodes and region b with one, all to
// all, with a lease of one second (elections in about a second and a
// half).
func haCluster(t testing.TB, tune ...func(*ClusterSpec)) *Cluster {
	t.Helper()
	return startCluster(t, []string{"a", "b"}, "all-to-all", nil, append([]func(*ClusterSpec){func(s *ClusterSpec) {
		s.NodesOf = map[string]int{"a": 3}
		s.Tune = func(c *config.Config) { c.Election.LeaseTTL = time.Second }
	}}, tune...)...)
}

// leaderOf waits until exactly one running node of region leads it and
// every running node knows it, and returns it.
func leaderOf(t testing.TB, c *Cluster, region string, within time.Duration) *Node {
	t.Helper()
	var leader *Node
	eventually(t, within, "one leader of "+region+" that every node knows", func() bool {
		leader = nil
		leaders := 0
		for _, n := range c.RegionNodes(region) {
			if n != nil && n.Status().Role == "leader" {
				leader, leaders = n, leaders+1
			}
		}
		if leaders != 1 {
			return false
		}
		for _, n := range c.RegionNodes(region) {
			if n != nil && n.Status().Leader != leader.cfg.Node {
				return false
			}
		}
		return true
	})
	return leader
}

func followersOf(c *Cluster, region string, leader *Node) []*Node {
	var out []*Node
	for _, n := range c.RegionNodes(region) {
		if n != nil && n != leader {
			out = append(out, n)
		}
	}
	return out
}

// TestRegionOfSeveralNodes: a region of three nodes elects one leader;
// every node takes every request (a write at a follower is answered as the
// leader answers it), followers serve reads with sessions, the region
// replicates to and from another region; when the leader stops, another
// leads within seconds at a higher term, continues the region's actor and
// log (no dot minted twice), the other region's link and writes follow it,
// and the old leader comes back as a follower and catches up.
func TestRegionOfSeveralNodes(t *testing.T) {
	c := haCluster(t)
	leader := leaderOf(t, c, "a", 30*time.Second)
	followers := followersOf(c, "a", leader)
	st := leader.Status()
	if st.Term == 0 || st.Node != leader.cfg.Node || len(st.Nodes) != 3 {
		t.Fatalf("leader's status: %+v", st.NodeStatus)
	}
	for _, f := range followers {
		if fs := f.Status(); fs.Role != "follower" || fs.Leader != leader.cfg.Node || fs.Term != st.Term {
			t.Fatalf("%s's status: %+v, leader term %d", f.cfg.Node, fs.NodeStatus, st.Term)
		}
	}

	// The roles are in the metrics too.
	if m := string(do(t, "GET", leader.HTTPURL()+"/metrics", nil).body); !strings.Contains(m, "geogate_node_leader 1") || !strings.Contains(m, "geogate_region_log_lag_entries 0") {
		t.Fatalf("leader's metrics lack geogate_node_leader 1 / geogate_region_log_lag_entries 0")
	}
	if m := string(do(t, "GET", followers[0].HTTPURL()+"/metrics", nil).body); !strings.Contains(m, "geogate_node_leader 0") || !strings.Contains(m, fmt.Sprintf("geogate_node_term %d", st.Term)) {
		t.Fatalf("follower's metrics lack geogate_node_leader 0 / geogate_node_term %d", st.Term)
	}

	// A write at a follower is the leader's.
	w := do(t, "PUT", followers[0].HTTPURL()+"/v1/kv/k", []byte(`{"v":1}`))
	if w.status != http.StatusOK || w.header.Get(HeaderNode) != leader.cfg.Node || w.header.Get(HeaderContext) == "" {
		t.Fatalf("write at a follower: %d %s, node %q", w.status, w.body, w.header.Get(HeaderNode))
	}
	dots := map[string]string{w.json(t)["dot"].(string): `{"v":1}`}
	// Read your write at the other follower with the session.
	r := do(t, "GET", followers[1].HTTPURL()+"/v1/kv/k", nil, HeaderSession, w.header.Get(HeaderSession))
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"v":1}` || r.header.Get(HeaderSession) == "" {
		t.Fatalf("read at the other follower: %d %s", r.status, r.body)
	}
	// The other region gets it, and its writes reach the followers.
	b := c.Node("b")
	eventually(t, 20*time.Second, "b to get a's write", func() bool { _, ok, _ := b.Store().Get("k"); return ok })
	put(t, b, "from-b", `"b"`)
	for _, f := range followers {
		eventually(t, 20*time.Second, "b's write at "+f.cfg.Node, func() bool { _, ok, _ := f.Store().Get("from-b"); return ok })
	}

	// The leader stops: another leads.
	old := leader.cfg.Node
	start := time.Now()
	if err := c.StopNode(old); err != nil {
		t.Fatal(err)
	}
	next := leaderOf(t, c, "a", 15*time.Second)
	t.Logf("failover from %s to %s in %s", old, next.cfg.Node, time.Since(start).Round(time.Millisecond))
	if ns := next.Status(); ns.Term <= st.Term || ns.Actor != st.Actor {
		t.Fatalf("new leader: term %d (was %d), actor %s (was %s)", ns.Term, st.Term, ns.Actor, st.Actor)
	}
	for i := range 20 {
		w := do(t, "PUT", next.HTTPURL()+fmt.Sprintf("/v1/kv/after%d", i), []byte(fmt.Sprintf("%d", i)))
		if w.status != http.StatusOK {
			t.Fatalf("write at the new leader: %d %s", w.status, w.body)
		}
		dot := w.json(t)["dot"].(string)
		if prev, dup := dots[dot]; dup {
			t.Fatalf("dot %s minted twice: %s and %d", dot, prev, i)
		}
		dots[dot] = fmt.Sprint(i)
	}
	eventually(t, 20*time.Second, "b to get the new leader's writes", func() bool { _, ok, _ := b.Store().Get("after19"); return ok })
	put(t, b, "from-b-2", `"b2"`)
	eventually(t, 20*time.Second, "b's write at the new leader", func() bool { _, ok, _ := next.Store().Get("from-b-2"); return ok })

	// The old leader comes back as a follower and catches up.
	if err := c.StartNode(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	back := c.NodeByName(old)
	eventually(t, 45*time.Second, old+" to catch up", func() bool {
		_, ok, _ := back.Store().Get("from-b-2")
		return ok && back.Status().Role == "follower" && back.Status().Leader == next.cfg.Node
	})
	eventually(t, 20*time.Second, "the region's nodes to hold the same records", sameData(t, append(followersOf(c, "a", nil), b)...))
}

// TestAbandonedPromotionFollowsAgain: a node whose promotion succeeded (it
// caught up, its term marker is in the log, its store leads) while its
// elector found the lease lost is handed to abandon instead of lead: it
// stops acknowledging and follows the log again, so the writes the region
// acknowledges afterwards reach it. (Without abandon the node kept a
// leading store and a stopped follower loop, and never applied another
// entry.)
func TestAbandonedPromotionFollowsAgain(t *testing.T) {
	c := haCluster(t)
	leader := leaderOf(t, c, "a", 30*time.Second)
	f := followersOf(c, "a", leader)[0]
	put(t, leader, "before", `1`)
	eventually(t, 20*time.Second, "the follower to apply the first write", func() bool {
		_, ok, _ := f.Store().Get("before")
		return ok
	})
	// The promotion's marker append may meet a busy JetStream: try again,
	// under a term above every node's.
	var term uint64
	eventually(t, 20*time.Second, f.cfg.Node+"'s promotion", func() bool {
		for _, n := range c.RegionNodes("a") {
			term = max(term, n.Status().Term+1)
		}
		err := f.rn.promote(t.Context(), term)
		if err != nil {
			t.Logf("promote at term %d: %v", term, err)
		}
		return err == nil
	})
	f.rn.abandon(term)
	if role := f.Store().Role(); role == store.Leading {
		t.Fatalf("%s's store still leads after abandon", f.cfg.Node)
	}
	// f's marker fenced the leader off; the region elects again and goes
	// on taking writes, at whichever node leads now.
	eventually(t, 30*time.Second, "a write the region acknowledges", func() bool {
		return do(t, "PUT", leaderOf(t, c, "a", 20*time.Second).HTTPURL()+"/v1/kv/after", []byte(`2`)).status == http.StatusOK
	})
	eventually(t, 15*time.Second, f.cfg.Node+" to apply the write acknowledged after its abandoned promotion", func() bool {
		_, ok, _ := f.Store().Get("after")
		return ok
	})
}

// TestLeaderWithFailedDiskStepsDown: every node of region a keeps its data
// on a real ext4 filesystem of its own; the leader's turns read-only (an
// error the filesystem reports, as a failing disk makes it). The write
// that meets it is answered 503 outcome_unknown, since the region log
// took it, and the new leader holds it; or, when the node's NATS server,
// on the same filesystem, cost it the lease first, 503 not_leader, and
// nobody holds it. Either way another node, whose disk works, leads
// within seconds and takes writes.
func TestLeaderWithFailedDiskStepsDown(t *testing.T) {
	root := t.TempDir()
	disks := map[string]*diskfault.FailingDisk{}
	for i := 1; i <= 3; i++ {
		node := fmt.Sprintf("a-%d", i)
		d, err := diskfault.NewFailingDisk(filepath.Join(root, node), 256<<20, 320<<20)
		if errors.Is(err, diskfault.ErrUnsupported) {
			t.Skipf("skipped: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() }) //nolint:errcheck // best effort after the nodes closed
		disks[node] = d
	}
	c := haCluster(t, func(s *ClusterSpec) {
		s.DataDir = root
		lease := s.Tune
		s.Tune = func(cfg *config.Config) {
			lease(cfg)
			cfg.Storage.MinFreeBytes = 16 << 20
			cfg.Replication.StreamMaxBytes = 16 << 20 // JetStream reserves it on the small disk
			cfg.RegionLog.MaxBytes = 16 << 20
		}
	})
	leader := leaderOf(t, c, "a", 30*time.Second)
	put(t, leader, "before", `1`)
	if err := disks[leader.cfg.Node].TriggerError(); errors.Is(err, diskfault.ErrUnsupported) {
		t.Skipf("skipped: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	a := do(t, "PUT", leader.HTTPURL()+"/v1/kv/during", []byte(`2`))
	code := a.json(t)["code"]
	if a.status != http.StatusServiceUnavailable || code != "outcome_unknown" && code != "not_leader" {
		t.Fatalf("the write that met the read-only filesystem: %d %s, want 503 outcome_unknown or not_leader", a.status, a.body)
	}
	var next *Node
	eventually(t, 20*time.Second, "another node to lead", func() bool {
		next = leaderOf(t, c, "a", 20*time.Second)
		return next != leader
	})
	if code == "outcome_unknown" {
		eventually(t, 10*time.Second, "the write answered outcome_unknown at the new leader", func() bool {
			_, ok, _ := next.Store().Get("during")
			return ok
		})
	} else if _, ok, _ := next.Store().Get("during"); ok {
		t.Fatal("a write answered not_leader (nothing written) is held by the new leader")
	}
	eventually(t, 10*time.Second, "the region to take a write", func() bool {
		return do(t, "PUT", next.HTTPURL()+"/v1/kv/after", []byte(`3`)).status == http.StatusOK
	})
	if role := leader.Status().Role; role == "leader" {
		t.Fatalf("%s leads again with a failed disk", leader.cfg.Node)
	}
}
