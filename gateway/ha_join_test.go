package gateway

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology/region"
	"github.com/nats-io/nats.go/jetstream"
)

// TestNodeJoinsByCopy: the region log keeps entries for region_log.max_age
// only. A node whose data is lost (an empty store) and a node stopped
// while the log trimmed past its position both come back by copying the
// leader's store, then follow the log; a node whose store holds writes
// that never went through the region log is diverged (it neither leads nor
// serves as a follower, and says why), and comes back by copying once its
// data is moved aside.
func TestNodeJoinsByCopy(t *testing.T) {
	dataDir := t.TempDir()
	c := haCluster(t, func(s *ClusterSpec) {
		s.DataDir = dataDir
		s.Tune = func(c *config.Config) {
			c.Election.LeaseTTL = time.Second
			c.RegionLog.MaxAge = 2 * time.Second
		}
	})
	leader := leaderOf(t, c, "a", 30*time.Second)
	fs := followersOf(c, "a", leader)
	wiped, behind := fs[0].cfg.Node, fs[1].cfg.Node
	// One node at a time (two of three down leave the log no majority):
	// the first loses its data, the second only falls behind.
	for round, name := range []string{wiped, behind} {
		if err := c.StopNode(name); err != nil {
			t.Fatal(err)
		}
		if name == wiped {
			if err := os.RemoveAll(filepath.Join(dataDir, wiped)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 30 {
			// A node's stop may cost the log a JetStream election (the
			// node led its stream): writes are retried on 503, as
			// clients do.
			var w answer
			eventually(t, 30*time.Second, "a write to be taken", func() bool {
				w = do(t, "PUT", leader.HTTPURL()+fmt.Sprintf("/v1/kv/j%d-%d", round, i), []byte(fmt.Sprint(i)))
				return w.status != http.StatusServiceUnavailable
			})
			if w.status != http.StatusOK {
				t.Fatalf("write: %d %s", w.status, w.body)
			}
		}
		last, _ := leader.Store().LogPosition()
		eventually(t, 30*time.Second, "the region log to trim past the writes", func() bool {
			first, err := leader.rn.rlog.First(context.Background())
			return err == nil && first > last
		})
		if err := c.StartNode(t.Context(), name); err != nil {
			t.Fatal(err)
		}
		n := c.NodeByName(name)
		eventually(t, 30*time.Second, name+" to copy the leader's store and follow", func() bool {
			st := n.Status()
			_, ok, _ := n.Store().Get(fmt.Sprintf("j%d-29", round))
			return ok && st.Role == "follower" && st.Log != nil && st.Log.Copies >= 1 && st.State == nodeFollowing
		})
	}
	// They follow the log again: a later write reaches them.
	put(t, leader, "after-copy", `1`)
	for _, name := range []string{wiped, behind} {
		n := c.NodeByName(name)
		eventually(t, 20*time.Second, name+" to follow after its copy", func() bool { _, ok, _ := n.Store().Get("after-copy"); return ok })
	}
	eventually(t, 20*time.Second, "the region's nodes to hold the same records", sameData(t, followersOf(c, "a", nil)...))

	// A store of writes that never went through the region log, put in a
	// node's place, is diverged; moved aside, the node copies.
	if err := c.StopNode(behind); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(dataDir, behind)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	foreign, err := store.Open(store.Options{Dir: filepath.Join(dir, "store"), Region: "a", Clock: conflict.NewClock(conflict.WallClock, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := foreign.Write(context.Background(), store.Mutation{Key: "foreign", Value: store.MustParseDoc(`1`)}); err != nil {
		t.Fatal(err)
	}
	if err := foreign.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.StartNode(t.Context(), behind); err != nil {
		t.Fatal(err)
	}
	n := c.NodeByName(behind)
	eventually(t, 20*time.Second, behind+" to find itself diverged", func() bool { return n.Status().State == nodeDiverged })
	if st := n.Status(); st.Role != "follower" || st.Why == "" || st.Log.ReadyToLead {
		t.Fatalf("diverged node's status: %+v", st.NodeStatus)
	}
	if _, ok, _ := leader.Store().Get("foreign"); ok {
		t.Fatal("the diverged node's write reached the leader")
	}
	if err := c.StopNode(behind); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, dir+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartNode(t.Context(), behind); err != nil {
		t.Fatal(err)
	}
	n = c.NodeByName(behind)
	eventually(t, 30*time.Second, behind+" to copy after its data was moved aside", func() bool {
		_, ok, _ := n.Store().Get("after-copy")
		return ok && n.Status().State == nodeFollowing
	})
}

// TestRegionOfOneBecomesThree: a region of one node with data is
// converted to three nodes, all started at once with the new configs: the
// node holding the data becomes the first leader (the empty nodes hold
// off), the new nodes copy its store, and nothing written before is lost.
func TestRegionOfOneBecomesThree(t *testing.T) {
	dataDir := t.TempDir()
	one := startCluster(t, []string{"a", "b"}, "all-to-all", nil, func(s *ClusterSpec) { s.DataDir = dataDir })
	for i := range 20 {
		put(t, one.Node("a"), fmt.Sprintf("before%d", i), fmt.Sprint(i))
	}
	put(t, one.Node("b"), "from-b", `"b"`)
	eventually(t, 20*time.Second, "a's writes at b", func() bool { _, ok, _ := one.Node("b").Store().Get("before19"); return ok })
	eventually(t, 20*time.Second, "b's write at a", func() bool { _, ok, _ := one.Node("a").Store().Get("from-b"); return ok })
	actor := one.Node("a").Status().Actor
	if err := one.Close(); err != nil {
		t.Fatal(err)
	}
	// The region's data directory becomes its first node's.
	if err := os.Rename(filepath.Join(dataDir, "a"), filepath.Join(dataDir, NodeName("a", 0))); err != nil {
		t.Fatal(err)
	}
	c := haCluster(t, func(s *ClusterSpec) { s.DataDir = dataDir })
	leader := leaderOf(t, c, "a", 30*time.Second)
	if leader.cfg.Node != NodeName("a", 0) || leader.Status().Actor != actor {
		t.Fatalf("first leader %s (actor %s), want %s, the node with the data (actor %s)", leader.cfg.Node, leader.Status().Actor, NodeName("a", 0), actor)
	}
	for _, f := range followersOf(c, "a", leader) {
		eventually(t, 30*time.Second, f.cfg.Node+" to copy the converted node's store", func() bool {
			_, ok, _ := f.Store().Get("before19")
			_, okb, _ := f.Store().Get("from-b")
			return ok && okb && f.Status().State == nodeFollowing
		})
	}
	put(t, leader, "after", `1`)
	wrote := time.Now()
	eventually(t, 60*time.Second, "the write after the conversion at b", func() bool { _, ok, _ := c.Node("b").Store().Get("after"); return ok })
	t.Logf("the write after the conversion reached b in %s", time.Since(wrote).Round(time.Millisecond))
	eventually(t, 20*time.Second, "every node of a to hold the same records", sameData(t, followersOf(c, "a", nil)...))
}

// TestNodeAddedToRegion follows the README's "Add a node": a region of
// three nodes holding data stops, every node's config gains a fourth node
// (nats.replicas follows the node count), and the region starts again
// with the new node's data directory empty. The new node takes the
// region's data (from the log, or by copy once the log was trimmed) and
// follows; the region takes writes, and every node ends with the same
// records.
func TestNodeAddedToRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("a region of three, then of four, nodes")
	}
	dataDir := t.TempDir()
	three := haCluster(t, func(s *ClusterSpec) { s.DataDir = dataDir })
	leader := leaderOf(t, three, "a", 30*time.Second)
	for i := range 30 {
		put(t, leader, fmt.Sprintf("before%d", i), fmt.Sprint(i))
	}
	eventually(t, 30*time.Second, "the three nodes to hold the same records", sameData(t, followersOf(three, "a", nil)...))
	if err := three.Close(); err != nil {
		t.Fatal(err)
	}

	four := haCluster(t, func(s *ClusterSpec) {
		s.DataDir = dataDir
		s.NodesOf = map[string]int{"a": 4}
	})
	leader = leaderOf(t, four, "a", 60*time.Second)
	var added *Node
	for _, n := range four.RegionNodes("a") {
		if n.cfg.Node == NodeName("a", 3) {
			added = n
		}
	}
	if added == nil {
		t.Fatalf("the added node %s is missing", NodeName("a", 3))
	}
	// The log still holds the region's whole history here, so the new
	// node may apply it from the start rather than copy, and once it has
	// applied it to the end it may even be elected.
	eventually(t, 60*time.Second, "the added node to hold the region's data and follow or lead", func() bool {
		_, ok, _ := added.Store().Get("before29")
		st := added.Status().State
		return ok && (st == nodeFollowing || st == nodeLeading)
	})
	put(t, leader, "after", `1`)
	eventually(t, 30*time.Second, "the write after the addition at every node of a", func() bool {
		for _, n := range four.RegionNodes("a") {
			if _, ok, _ := n.Store().Get("after"); !ok {
				return false
			}
		}
		return true
	})
	eventually(t, 30*time.Second, "every node of a to hold the same records", sameData(t, followersOf(four, "a", nil)...))
	// The region log is kept on all four nodes now (nats.replicas is the
	// node count).
	js, err := jetstream.New(leader.conn)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the region log to have four replicas", func() bool {
		st, err := js.Stream(t.Context(), region.LogStream("a"))
		if err != nil {
			return false
		}
		info, err := st.Info(t.Context())
		return err == nil && info.Config.Replicas == 4 && info.Cluster != nil && len(info.Cluster.Replicas) == 3
	})
}
