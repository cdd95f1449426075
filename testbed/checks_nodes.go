package testbed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/conflict"
)

// Checks of regions of several nodes (and of dots everywhere). Like the
// others they are pure functions over what a run collected.

// versionIdentity names a version's value for the dot check: the
// workload's id in the document, else a hash of the bytes ("deleted" for a
// tombstone).
func versionIdentity(v conflict.Version) string {
	if v.Deleted {
		return "deleted"
	}
	if id := valueID(v.Value); id != "" {
		return id
	}
	sum := sha256.Sum256(v.Value)
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// CheckDots passes when no dot names two different values anywhere: among
// the dots the write answers named (each with the id of the document
// written) and the versions every node holds at the end, in its records'
// frontiers and in its conflict log's discarded versions. A dot minted
// twice, by two leaders of one region that both took writes, is what
// fencing must prevent (Riak KV679): the second write may look like it
// superseded the first, so the lost-write check alone can miss it.
func CheckDots(acked []AckedWrite, states []RegionState) CheckResult {
	res := CheckResult{Name: "dots", Pass: true}
	type seen struct{ id, where string }
	byDot := map[conflict.Dot]seen{}
	twice := map[conflict.Dot]bool{}
	note := func(d conflict.Dot, id, where string) {
		if d == (conflict.Dot{}) {
			return
		}
		prev, ok := byDot[d]
		if !ok {
			byDot[d] = seen{id, where}
			return
		}
		if prev.id != id {
			if !twice[d] {
				res.addDetail("dot %s names %s (%s) and %s (%s)", d, prev.id, prev.where, id, where)
			}
			twice[d] = true
			res.Pass = false
		}
	}
	for _, a := range acked {
		by := a.Node
		if by == "" {
			by = a.Region
		}
		note(a.Dot, a.ID, fmt.Sprintf("acknowledged by %s at %s", by, a.At.Round(time.Millisecond)))
	}
	versions := 0
	for _, s := range states {
		for _, key := range slices.Sorted(maps.Keys(s.Records)) {
			for _, v := range s.Records[key].Versions {
				versions++
				note(v.Dot, versionIdentity(v), fmt.Sprintf("%q at %s", key, s.Region))
			}
		}
		for _, e := range s.Conflicts {
			for _, v := range e.Discarded {
				versions++
				note(v.Dot, versionIdentity(v), fmt.Sprintf("%q in the conflict log of %s", e.Key, s.Region))
			}
		}
	}
	res.Summary = fmt.Sprintf("%d dots (%d acknowledged writes, %d versions held at %d nodes): %d with two values",
		len(byDot), len(acked), versions, len(states), len(twice))
	if len(states) == 0 {
		res.Pass = false
		res.Summary = "no node state collected"
	}
	return res
}

// CheckFailover passes when every failover (a fault struck a region's
// leader) was followed by a probe write another node of the region
// acknowledged (Failover), within the bound if there is one. With a bound and no failover it
// fails: the scenario meant to measure one.
func CheckFailover(fos []Failover, bound *FailoverBound) CheckResult {
	res := CheckResult{Name: "failover", Pass: true}
	var parts []string
	for _, fo := range fos {
		text := fmt.Sprintf("%s at %s: %s", fo.Fault, fo.At.Round(time.Millisecond), fo.Old)
		if fo.New != "" {
			text += fmt.Sprintf(" -> %s (term %d, leading by its status after %.2fs)", fo.New, fo.Term, fo.ElectedSeconds)
		}
		switch {
		case fo.FirstAck == "":
			res.Pass = false
			res.addDetail("%s: no probe write acknowledged by another node of %s within a minute of the fault", fo.Fault, fo.Region)
			text += ", no write acknowledged after it"
		default:
			text += fmt.Sprintf(", first probe write acknowledged after %.2fs", fo.FailoverSeconds)
			if bound != nil && fo.FailoverSeconds > bound.Max.Seconds() {
				res.Pass = false
				res.addDetail("%s: the first write another node acknowledged came %.2fs after the fault; the bound is %s",
					fo.Fault, fo.FailoverSeconds, bound.Max)
			}
		}
		parts = append(parts, text)
	}
	if len(fos) == 0 {
		res.Summary = "no fault struck a region's leader"
		if bound != nil {
			res.Pass = false
		}
	} else {
		res.Summary = strings.Join(parts, "; ")
	}
	if bound != nil {
		res.Summary += "; bound " + bound.Max.String()
	} else {
		res.Summary += "; not bounded"
	}
	return res
}

// CheckDeposed passes when no leader acknowledged a write after it was
// deposed. Dots tell: a region's dot counters follow its log, and a new
// leader mints after every entry the old one appended, so a write the old
// leader acknowledged (answered itself) at or after the fault whose dot
// counter is at least the smallest its successors minted after the fault
// was taken after the successor took over. The old leader's writes are
// judged until a later fault of the region makes it the leader again
// (from then on it leads lawfully, in a later term). Without a write of a
// successor there is nothing to compare with, and it passes saying so.
func CheckDeposed(fos []Failover, acked []AckedWrite, layout map[string][]string) CheckResult {
	res := CheckResult{Name: "deposed_leader", Pass: true}
	judged := 0
	for _, fo := range fos {
		until := time.Duration(math.MaxInt64) // when fo.Old leads again after a later fault
		for _, next := range fos {
			if next.Region == fo.Region && next.At > fo.At && next.New == fo.Old && next.At < until {
				until = next.At
			}
		}
		lowest := map[string]uint64{} // actor -> smallest counter a successor minted
		for _, a := range acked {
			if a.At < fo.At || a.Node == "" || a.Node == fo.Old || a.Dot == (conflict.Dot{}) || !slices.Contains(layout[fo.Region], a.Node) {
				continue
			}
			if c, ok := lowest[a.Dot.Actor]; !ok || a.Dot.Counter < c {
				lowest[a.Dot.Actor] = a.Dot.Counter
			}
		}
		if len(lowest) == 0 {
			continue
		}
		judged++
		old, late := 0, 0
		for _, a := range acked {
			if a.Node != fo.Old || a.At < fo.At || a.At >= until || a.Dot == (conflict.Dot{}) {
				continue
			}
			old++
			if c, ok := lowest[a.Dot.Actor]; ok && a.Dot.Counter >= c {
				late++
				res.Pass = false
				res.addDetail("%s acknowledged write %s of %q with dot %s at %s, after its successor minted from %s:%d",
					fo.Old, a.ID, a.Key, a.Dot, a.At.Round(time.Millisecond), a.Dot.Actor, c)
			}
		}
		res.Summary += fmt.Sprintf("%s: %d writes acknowledged by %s after the fault, %d of them after its successor took over; ",
			fo.Fault, old, fo.Old, late)
	}
	switch {
	case len(fos) == 0:
		res.Summary = "no fault struck a region's leader"
	case judged == 0:
		res.Summary = "no successor acknowledged a write: nothing to compare with"
	default:
		res.Summary = strings.TrimSuffix(res.Summary, "; ")
	}
	return res
}

// CheckNodes passes when, at the end, every region of several nodes is
// settled: every node answered its status, one leads, every other follows
// it with nothing left to apply (at the leader's region-log position). So
// a leader killed or frozen and brought back rejoined as a follower and
// caught up.
func CheckNodes(layout map[string][]string, regions []string, sts map[string]client.Status) CheckResult {
	res := CheckResult{Name: "nodes", Pass: true}
	var parts []string
	for _, r := range regions {
		nodes := layout[r]
		if len(nodes) < 2 {
			continue
		}
		mine := map[string]client.Status{}
		for _, n := range nodes {
			if st, ok := sts[n]; ok {
				mine[n] = st
			}
		}
		leader, ok := regionSettled(nodes, mine)
		if ok {
			pos := uint64(0)
			if lg := mine[leader].RegionLog; lg != nil {
				pos = lg.Position
			}
			parts = append(parts, fmt.Sprintf("%s: %s leads (term %d), %d followers at position %d", r, leader, mine[leader].Term, len(nodes)-1, pos))
			continue
		}
		res.Pass = false
		parts = append(parts, r+": not settled")
		for _, n := range nodes {
			st, ok := mine[n]
			if !ok {
				res.addDetail("%s: no status", n)
				continue
			}
			pos, lag := uint64(0), uint64(0)
			if st.RegionLog != nil {
				pos, lag = st.RegionLog.Position, st.RegionLog.LagEntries
			}
			res.addDetail("%s: %s (%s %s), leader %q, term %d, position %d, %d entries behind", n, st.Role, st.NodeState,
				st.NodeStateReason, st.Leader, st.Term, pos, lag)
		}
	}
	res.Summary = strings.Join(parts, "; ")
	return res
}
