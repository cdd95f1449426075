package testbed

import (
	"fmt"
	"slices"
	"strings"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/gateway"
)

// Regions of several nodes. The testbed names a run's processes by node:
// a region of one node is one process named after the region; a region of
// N > 1 is N processes named <region>-1 ... <region>-N (gateway.NodeName,
// the names `geogate init --nodes` gives). Data directories, logs and the
// final states are per node.

// Selectors of a fault target "REGION/leader" or "REGION/follower".
const (
	TargetLeader   = "leader"
	TargetFollower = "follower"
)

// NodesIn returns the number of nodes of region (NodesOf, else Nodes,
// at least 1).
func (s *Scenario) NodesIn(region string) int {
	if n, ok := s.NodesOf[region]; ok {
		return max(n, 1)
	}
	return max(s.Nodes, 1)
}

// NodeNames returns region's nodes in order: the region itself for a
// region of one node.
func (s *Scenario) NodeNames(region string) []string {
	n := s.NodesIn(region)
	if n == 1 {
		return []string{region}
	}
	out := make([]string, n)
	for k := range n {
		out[k] = gateway.NodeName(region, k)
	}
	return out
}

// AllNodes returns every node of the run, region by region.
func (s *Scenario) AllNodes() []string {
	var out []string
	for _, r := range s.Regions {
		out = append(out, s.NodeNames(r)...)
	}
	return out
}

// Layout maps every region to its nodes.
func (s *Scenario) Layout() map[string][]string {
	out := make(map[string][]string, len(s.Regions))
	for _, r := range s.Regions {
		out[r] = s.NodeNames(r)
	}
	return out
}

// RegionOfNode returns the region a node belongs to ("" for none).
func (s *Scenario) RegionOfNode(node string) string {
	for _, r := range s.Regions {
		if slices.Contains(s.NodeNames(r), node) {
			return r
		}
	}
	return ""
}

// Clustered reports whether any region runs several nodes.
func (s *Scenario) Clustered() bool {
	return slices.ContainsFunc(s.Regions, func(r string) bool { return s.NodesIn(r) > 1 })
}

// Target parses a kill or freeze target: a region (node ""), a node of a
// region of several (node its name), or REGION/leader, REGION/follower
// (node TargetLeader, TargetFollower) for a region of several nodes.
func (s *Scenario) Target(t string) (region, node string, err error) {
	if r, sel, ok := strings.Cut(t, "/"); ok {
		if !slices.Contains(s.Regions, r) {
			return "", "", fmt.Errorf("%q: %q is not one of the regions %v", t, r, s.Regions)
		}
		if sel != TargetLeader && sel != TargetFollower {
			return "", "", fmt.Errorf("%q: want %s/leader or %s/follower", t, r, r)
		}
		if s.NodesIn(r) < 2 {
			return "", "", fmt.Errorf("%q: region %s has one node (set nodes or nodes_of)", t, r)
		}
		return r, sel, nil
	}
	if slices.Contains(s.Regions, t) {
		return t, "", nil
	}
	if r := s.RegionOfNode(t); r != "" {
		return r, t, nil
	}
	return "", "", fmt.Errorf("%q is not one of the regions %v nor one of their nodes, REGION/leader or REGION/follower", t, s.Regions)
}

func corruptRegion(f Fault) string {
	if f.Corrupt == nil {
		return ""
	}
	return f.Corrupt.Region
}

func diskFullRegion(f Fault) string {
	if f.DiskFull == nil {
		return ""
	}
	return f.DiskFull.Region
}

// leaderAmong returns the node that leads a region of several nodes by the
// statuses of its nodes (by node name; a node that did not answer is
// absent): the one whose status says it leads, named as leader by every
// other node that answered. "" when there is none, or no agreement.
func leaderAmong(sts map[string]client.Status) string {
	leader := ""
	for name, st := range sts {
		if st.Role == "leader" {
			if leader != "" {
				return "" // two claim to lead: an election is settling
			}
			leader = name
		}
	}
	if leader == "" {
		return ""
	}
	for _, st := range sts {
		if st.Leader != leader {
			return ""
		}
	}
	return leader
}

// regionSettled reports whether a region of several nodes is settled: every
// node answered (want lists them), one leads, every other follows it with
// nothing left to apply at the leader's position. It returns the leader.
func regionSettled(want []string, sts map[string]client.Status) (string, bool) {
	for _, n := range want {
		if _, ok := sts[n]; !ok {
			return "", false
		}
	}
	leader := leaderAmong(sts)
	if leader == "" {
		return "", false
	}
	lead := sts[leader]
	for name, st := range sts {
		if name == leader {
			continue
		}
		if st.Role != "follower" || st.NodeState != "following" || st.RegionLog == nil || lead.RegionLog == nil ||
			st.RegionLog.LagEntries > 0 || st.RegionLog.Position != lead.RegionLog.Position {
			return leader, false
		}
	}
	return leader, true
}
