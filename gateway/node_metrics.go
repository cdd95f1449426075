package gateway

import "github.com/prometheus/client_golang/prometheus"

// registerNodeMetrics exports the node's part in its region (see
// NodeStatus): whether it leads, its term, its position in the region log
// and how far behind a follower is, the copies it loaded and the terms it
// led. A region of one node exports only geogate_node_leader (always 1) and
// geogate_node_term (0).
func (n *Node) registerNodeMetrics() {
	st := func(f func(NodeStatus) float64) func() float64 {
		return func() float64 { return f(n.nodeStatus()) }
	}
	logged := func(f func(*RegionLogStatus) float64) func() float64 {
		return st(func(s NodeStatus) float64 {
			if s.Log == nil {
				return 0
			}
			return f(s.Log)
		})
	}
	gauge := func(name, help string, get func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, get)
	}
	counter := func(name, help string, get func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, get)
	}
	cs := []prometheus.Collector{
		gauge("geogate_node_leader", "1 while this node is its region's leader (always 1 in a region of one node).", st(func(s NodeStatus) float64 {
			if s.Role == "leader" {
				return 1
			}
			return 0
		})),
		gauge("geogate_node_term", "The highest region-leader term this node knows.", st(func(s NodeStatus) float64 { return float64(s.Term) })),
	}
	if !n.cfg.Clustered() {
		n.metrics.reg.MustRegister(cs...)
		return
	}
	cs = append(cs,
		gauge("geogate_region_log_position", "The last region-log entry this node applied.", logged(func(l *RegionLogStatus) float64 { return float64(l.Position) })),
		gauge("geogate_region_log_lag_entries", "Region-log entries a follower has not applied yet (0 on the leader).", logged(func(l *RegionLogStatus) float64 { return float64(l.LagEntries) })),
		gauge("geogate_region_log_lag_seconds", "How long a follower has been behind the region log's end (0 when caught up).", logged(func(l *RegionLogStatus) float64 { return l.LagSeconds })),
		gauge("geogate_node_ready_to_lead", "1 while this node could take over as leader (it follows the log and holds no stale copy).", logged(func(l *RegionLogStatus) float64 {
			if l.ReadyToLead {
				return 1
			}
			return 0
		})),
		counter("geogate_node_copies_total", "Copies of the leader's store this node loaded (at join, or when the log it needed was trimmed).", logged(func(l *RegionLogStatus) float64 { return float64(l.Copies) })),
		counter("geogate_node_terms_led_total", "Terms this node has led since it started.", logged(func(l *RegionLogStatus) float64 { return float64(l.TermsLed) })),
	)
	n.metrics.reg.MustRegister(cs...)
}
