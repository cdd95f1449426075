package testbed

import (
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/store"
)

const nodesHead = "mode: process\nregions: [a, b]\nnodes_of: {a: 3}\nworkload: {rate: 10, keys: 10}\nduration: 10s\n"

func TestNodeLayout(t *testing.T) {
	sc, err := Parse([]byte(nodesHead), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.AllNodes(); !slices.Equal(got, []string{"a-1", "a-2", "a-3", "b"}) {
		t.Fatalf("AllNodes = %v", got)
	}
	if sc.RegionOfNode("a-2") != "a" || sc.RegionOfNode("b") != "b" || sc.RegionOfNode("c") != "" {
		t.Fatalf("RegionOfNode: a-2 %q b %q c %q", sc.RegionOfNode("a-2"), sc.RegionOfNode("b"), sc.RegionOfNode("c"))
	}
	if !sc.Clustered() || sc.NodesIn("b") != 1 || sc.Nodes != 1 {
		t.Fatalf("clustered %v, nodes of b %d, nodes %d", sc.Clustered(), sc.NodesIn("b"), sc.Nodes)
	}
	for _, tc := range []struct{ target, region, node, err string }{
		{"a", "a", "", ""},
		{"b", "b", "", ""},
		{"a-3", "a", "a-3", ""},
		{"a/leader", "a", TargetLeader, ""},
		{"a/follower", "a", TargetFollower, ""},
		{"b/leader", "", "", "region b has one node"},
		{"a/boss", "", "", "want a/leader or a/follower"},
		{"z/leader", "", "", `"z" is not one of the regions`},
		{"a-4", "", "", "nor one of their nodes"},
	} {
		region, node, err := sc.Target(tc.target)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Target(%q) err = %v, want %q", tc.target, err, tc.err)
		case tc.err == "" && (err != nil || region != tc.region || node != tc.node):
			t.Errorf("Target(%q) = %q, %q, %v; want %q, %q", tc.target, region, node, err, tc.region, tc.node)
		}
	}
}

func TestValidateNodes(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"ok", "faults:\n  - {at: 1s, for: 2s, kill: a/leader}\n  - {at: 2s, for: 2s, freeze: a/leader, until_replaced: true}\n  - {at: 3s, kill: a-2}\n", ""},
		{"in process", "mode: in-process\n", "regions of several nodes run in mode process"},
		{"too many", "nodes_of: {a: 10}\n", "nodes_of.a: 10: must be 1 to 9"},
		{"unknown region", "nodes_of: {z: 3}\n", `nodes_of: "z" is not one of the regions`},
		{"zero nodes", "nodes: -1\n", "nodes: -1"},
		{"leader of one node", "faults:\n  - {at: 1s, kill: b/leader}\n", "region b has one node"},
		{"freeze in process", "mode: in-process\nnodes_of: {}\nfaults:\n  - {at: 1s, freeze: a}\n", "needs mode process"},
		{"until_replaced alone", "faults:\n  - {at: 1s, kill: a/leader, until_replaced: true}\n", "until_replaced: only goes with freeze"},
		{"until_replaced follower", "faults:\n  - {at: 1s, freeze: a/follower, until_replaced: true}\n", "until_replaced: only goes with freezing one node"},
		{"until_replaced region", "faults:\n  - {at: 1s, freeze: a, until_replaced: true}\n", "until_replaced: only goes with freezing one node"},
		{"corrupt several", "faults:\n  - {at: 1s, corrupt: {region: a, keys: 1}}\n", "corrupt faults are for regions of one node"},
		{"backup several", "faults:\n  - {at: 1s, backup: a}\n", "backup faults are for regions of one node"},
		{"node named as region", "regions: [a, a-1]\n", "node a-1 of region a has the name of a region"},
		{"failover bound", "checks: {failover: {max: 0s}}\n", "checks.failover.max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(mergeYAML(nodesHead, tc.yaml)), false)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func st(role, leader string, term, pos, lag uint64) client.Status {
	state := "following"
	if role == "leader" {
		state = "leading"
	}
	return client.Status{Role: role, Leader: leader, Term: term, NodeState: state,
		RegionLog: &client.RegionLogStatus{Position: pos, LagEntries: lag}}
}

func TestLeaderAmongAndSettled(t *testing.T) {
	nodes := []string{"a-1", "a-2", "a-3"}
	settled := map[string]client.Status{"a-1": st("follower", "a-2", 2, 9, 0), "a-2": st("leader", "a-2", 2, 9, 0), "a-3": st("follower", "a-2", 2, 9, 0)}
	if l, ok := regionSettled(nodes, settled); l != "a-2" || !ok {
		t.Fatalf("settled region: %q %v", l, ok)
	}
	for name, change := range map[string]func(map[string]client.Status){
		"a node silent":        func(m map[string]client.Status) { delete(m, "a-3") },
		"a follower behind":    func(m map[string]client.Status) { m["a-3"] = st("follower", "a-2", 2, 8, 1) },
		"a follower short":     func(m map[string]client.Status) { m["a-3"] = st("follower", "a-2", 2, 8, 0) },
		"a follower elsewhere": func(m map[string]client.Status) { m["a-3"] = st("follower", "a-1", 2, 9, 0) },
		"two leaders":          func(m map[string]client.Status) { m["a-1"] = st("leader", "a-1", 1, 9, 0) },
		"no leader":            func(m map[string]client.Status) { m["a-2"] = st("follower", "", 2, 9, 0) },
		"copying":              func(m map[string]client.Status) { s := m["a-1"]; s.NodeState = "copying"; m["a-1"] = s },
	} {
		m := map[string]client.Status{}
		for k, v := range settled {
			m[k] = v
		}
		change(m)
		if _, ok := regionSettled(nodes, m); ok {
			t.Errorf("%s: settled", name)
		}
	}
	// leaderAmong ignores the silent: a frozen old leader does not vote.
	if l := leaderAmong(map[string]client.Status{"a-1": st("follower", "a-2", 3, 9, 0), "a-2": st("leader", "a-2", 3, 9, 0)}); l != "a-2" {
		t.Errorf("leaderAmong of the running nodes = %q, want a-2", l)
	}
	if l := leaderAmong(map[string]client.Status{"a-1": st("follower", "a-3", 1, 9, 0), "a-2": st("leader", "a-2", 2, 9, 0)}); l != "" {
		t.Errorf("leaderAmong while a node names another leader = %q, want none", l)
	}
}

func TestNodesQuiescent(t *testing.T) {
	layout := map[string][]string{"a": {"a-1", "a-2"}, "b": {"b"}}
	regions := []string{"a", "b"}
	quiet := map[string]client.Status{
		"a-1": st("leader", "a-1", 1, 5, 0), "a-2": st("follower", "a-1", 1, 5, 0),
		"b": {Role: "leader", Leader: "b"},
	}
	if !nodesQuiescent(layout, regions, quiet) {
		t.Fatal("a settled region and a quiet one: not quiescent")
	}
	behind := map[string]client.Status{}
	for k, v := range quiet {
		behind[k] = v
	}
	behind["a-2"] = st("follower", "a-1", 1, 4, 1)
	if nodesQuiescent(layout, regions, behind) {
		t.Fatal("a follower behind its leader: quiescent")
	}
	// The leader's status is the region's: an outbox left there counts.
	busy := map[string]client.Status{}
	for k, v := range quiet {
		busy[k] = v
	}
	lead := busy["a-1"]
	lead.Outbox = 3
	busy["a-1"] = lead
	if nodesQuiescent(layout, regions, busy) {
		t.Fatal("the leader's outbox holds entries: quiescent")
	}
	if nodesQuiescent(layout, regions, map[string]client.Status{"a-1": quiet["a-1"], "a-2": quiet["a-2"]}) {
		t.Fatal("region b did not answer: quiescent")
	}
}

func version(actor string, counter uint64, id string) conflict.Version {
	return conflict.Version{Dot: conflict.Dot{Actor: actor, Counter: counter}, Value: doc(id)}
}

func TestCheckDots(t *testing.T) {
	rec := func(vs ...conflict.Version) conflict.Record { return conflict.Record{Versions: vs} }
	acked := []AckedWrite{
		{ID: "w1", Key: "k", Node: "a-1", Dot: conflict.Dot{Actor: "a~1", Counter: 1}},
		{ID: "w2", Key: "j", Node: "a-1", Dot: conflict.Dot{Actor: "a~1", Counter: 2}},
	}
	good := []RegionState{
		{Region: "a-1", Records: map[string]conflict.Record{"k": rec(version("a~1", 1, "w1")), "j": rec(version("a~1", 2, "w2"))}},
		{Region: "a-2", Records: map[string]conflict.Record{"k": rec(version("a~1", 1, "w1")), "j": rec(version("a~1", 2, "w2"))}},
	}
	if res := CheckDots(acked, good); !res.Pass {
		t.Fatalf("consistent dots fail: %s %v", res.Summary, res.Details)
	}
	// A deposed leader minted a~1:2 again for another write.
	twiceAcked := append(slices.Clone(acked), AckedWrite{ID: "w9", Key: "x", Node: "a-2", Dot: conflict.Dot{Actor: "a~1", Counter: 2}})
	if res := CheckDots(twiceAcked, good); res.Pass || !strings.Contains(res.Summary, "1 with two values") {
		t.Fatalf("a dot acknowledged for two writes passes: %s", res.Summary)
	}
	// Only the nodes' stores show it: a frontier at one node, a conflict
	// log's discarded version at another.
	split := []RegionState{
		good[0],
		{Region: "a-2", Records: map[string]conflict.Record{"k": rec(version("a~1", 1, "w1"))},
			Conflicts: []store.ConflictEntry{{Key: "j", Discarded: []conflict.Version{version("a~1", 2, "w7")}}}},
	}
	if res := CheckDots(nil, split); res.Pass || len(res.Details) != 1 || !strings.Contains(res.Details[0], "w7") {
		t.Fatalf("a dot with two values in the stores passes: %s %v", res.Summary, res.Details)
	}
	if res := CheckDots(acked, nil); res.Pass {
		t.Fatal("no state collected passes")
	}
}

// TestCheckDotsLaw: dots drawn at random from a small space, each given
// one of two values: the check fails exactly when some dot got both.
func TestCheckDotsLaw(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 30).Draw(t, "n")
		var acked []AckedWrite
		seen := map[uint64]string{}
		twice := false
		for i := range n {
			c := rapid.Uint64Range(1, 8).Draw(t, "counter")
			id := rapid.SampledFrom([]string{"x", "y"}).Draw(t, "value")
			if prev, ok := seen[c]; ok && prev != id {
				twice = true
			}
			seen[c] = id
			acked = append(acked, AckedWrite{ID: id, Key: "k", Dot: conflict.Dot{Actor: "a~1", Counter: c}, At: time.Duration(i)})
		}
		res := CheckDots(acked, []RegionState{{Region: "a"}})
		if res.Pass == twice {
			t.Fatalf("pass %v with a dot given two values %v: %s", res.Pass, twice, res.Summary)
		}
	})
}

func TestCheckFailover(t *testing.T) {
	fo := Failover{Region: "a", Fault: "kill a/leader", Old: "a-1", New: "a-2", At: time.Second, FailoverSeconds: 3.2, FirstAck: "w5"}
	bound := &FailoverBound{Max: 5 * time.Second}
	if res := CheckFailover([]Failover{fo}, bound); !res.Pass {
		t.Fatalf("3.2s under 5s fails: %s", res.Summary)
	}
	slow := fo
	slow.FailoverSeconds = 6.5
	if res := CheckFailover([]Failover{fo, slow}, bound); res.Pass {
		t.Fatalf("6.5s over 5s passes: %s", res.Summary)
	}
	if res := CheckFailover([]Failover{slow}, nil); !res.Pass {
		t.Fatalf("unbounded fails: %s", res.Summary)
	}
	none := fo
	none.FirstAck, none.FailoverSeconds = "", 0
	if res := CheckFailover([]Failover{none}, nil); res.Pass {
		t.Fatalf("a failover after which nothing was acknowledged passes: %s", res.Summary)
	}
	if res := CheckFailover(nil, bound); res.Pass {
		t.Fatal("a bound without any failover passes")
	}
}

func TestCheckDeposed(t *testing.T) {
	layout := map[string][]string{"a": {"a-1", "a-2", "a-3"}}
	fo := Failover{Region: "a", Fault: "freeze a/leader", Old: "a-1", At: time.Second}
	w := func(id, node string, at time.Duration, counter uint64) AckedWrite {
		return AckedWrite{ID: id, Key: "k", Region: "a", Node: node, At: at, Dot: conflict.Dot{Actor: "a~1", Counter: counter}}
	}
	acked := []AckedWrite{
		w("w1", "a-1", 500*time.Millisecond, 10), // before the fault
		w("w2", "a-1", 5*time.Second, 11),        // answered late, taken before the successor's first
		w("w3", "a-2", 4*time.Second, 13),        // the successor's first (its marker took 12)
		w("w4", "a-2", 6*time.Second, 14),
	}
	if res := CheckDeposed([]Failover{fo}, acked, layout); !res.Pass {
		t.Fatalf("no late acknowledgement, yet: %s %v", res.Summary, res.Details)
	}
	late := append(slices.Clone(acked), w("w5", "a-1", 7*time.Second, 13))
	if res := CheckDeposed([]Failover{fo}, late, layout); res.Pass || len(res.Details) != 1 || !strings.Contains(res.Details[0], "w5") {
		t.Fatalf("the deposed leader's write after its successor's first passes: %s %v", res.Summary, res.Details)
	}
	if res := CheckDeposed([]Failover{fo}, acked[:2], layout); !res.Pass || !strings.Contains(res.Summary, "nothing to compare") {
		t.Fatalf("without a successor's write: %s", res.Summary)
	}
	// A second fault deposes the successor and a-1 leads again (a later
	// term): its writes from then on are lawful; one it acknowledged
	// between its successor's first and that fault is not.
	second := Failover{Region: "a", Fault: "freeze a/leader", Old: "a-2", New: "a-1", At: 10 * time.Second}
	again := append(slices.Clone(acked), w("w6", "a-1", 14*time.Second, 30), w("w7", "a-3", 11*time.Second, 20))
	if res := CheckDeposed([]Failover{fo, second}, again, layout); !res.Pass {
		t.Fatalf("the old leader's writes after it was elected again fail: %s %v", res.Summary, res.Details)
	}
	again = append(again, w("w8", "a-1", 8*time.Second, 15))
	res := CheckDeposed([]Failover{fo, second}, again, layout)
	if res.Pass || len(res.Details) != 1 || !strings.Contains(res.Details[0], "w8") {
		t.Fatalf("a late write before the old leader led again passes: %s %v", res.Summary, res.Details)
	}
	if !strings.Contains(res.Summary, "1 of them after its successor took over") || !strings.Contains(res.Summary, "0 of them after") {
		t.Fatalf("late writes are not counted per fault: %s", res.Summary)
	}
}

func TestCheckNodes(t *testing.T) {
	layout := map[string][]string{"a": {"a-1", "a-2"}, "b": {"b"}}
	sts := map[string]client.Status{"a-1": st("follower", "a-2", 2, 7, 0), "a-2": st("leader", "a-2", 2, 7, 0)}
	if res := CheckNodes(layout, []string{"a", "b"}, sts); !res.Pass || !strings.Contains(res.Summary, "a-2 leads (term 2)") {
		t.Fatalf("settled: %s %v", res.Summary, res.Details)
	}
	sts["a-1"] = st("follower", "a-2", 2, 3, 4)
	if res := CheckNodes(layout, []string{"a", "b"}, sts); res.Pass || len(res.Details) != 2 {
		t.Fatalf("a follower 4 entries behind: %s %v", res.Summary, res.Details)
	}
}

// TestPickSkipsUnhealthyNodes: a region's requests go round robin to its
// nodes, skipping one that refused a connection lately or has requests
// outstanding and answered none for a while; with every node unhealthy,
// round robin again.
func TestPickSkipsUnhealthyNodes(t *testing.T) {
	urls := map[string]string{"a-1": "http://127.0.0.1:1", "a-2": "http://127.0.0.1:2", "a-3": "http://127.0.0.1:3"}
	c, err := newAPIClient(urls, map[string][]string{"a": {"a-1", "a-2", "a-3"}}, time.Second, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := c.groups["a"]
	picks := func(n int) map[string]int {
		out := map[string]int{}
		for range n {
			out[g.names[c.pick(g)]]++
		}
		return out
	}
	if got := picks(30); got["a-1"] != 10 || got["a-2"] != 10 || got["a-3"] != 10 {
		t.Fatalf("healthy nodes picked %v, want 10 each", got)
	}
	now := time.Now()
	c.health["a-1"].refused = now                                                  // down
	c.health["a-2"].inflight, c.health["a-2"].progress = 2, now.Add(-2*stallAfter) // frozen
	if got := picks(10); got["a-3"] != 10 {
		t.Fatalf("with a-1 down and a-2 frozen, picked %v", got)
	}
	c.health["a-3"].refused = now
	if got := picks(30); got["a-1"] != 10 || got["a-2"] != 10 || got["a-3"] != 10 {
		t.Fatalf("every node unhealthy: picked %v, want round robin", got)
	}
	c.health["a-2"].progress = now // answered again
	c.health["a-3"].refused = now.Add(-2 * downFor)
	if got := picks(10); got["a-1"] != 0 {
		t.Fatalf("a-1 still down but picked: %v", got)
	}
}
