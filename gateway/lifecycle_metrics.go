package gateway

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geogate/geogate/store"
)

// lifecycleMetrics are the lifecycle's Prometheus metrics, registered on
// the node's registry.
type lifecycleMetrics struct {
	// compared and repaired are read by their counters and by the status.
	compared, repaired atomic.Uint64
	aeLastFull         prometheus.Gauge
	aeRounds           *prometheus.CounterVec
	reseeds            *prometheus.CounterVec
	tombstonesHeld     prometheus.Gauge
	snapshotsServed    prometheus.Counter
}

func newLifecycleMetrics(n *Node, lc *lifecycle) *lifecycleMetrics {
	m := &lifecycleMetrics{
		aeLastFull:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "geogate_antientropy_last_full_round_timestamp_seconds", Help: "When this region last compared its records with every peer it pulls from without an error."}),
		aeRounds:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_antientropy_comparisons_total", Help: "Comparisons with a peer, by result."}, []string{"result"}),
		reseeds:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_reseeds_total", Help: "Re-seeds from a peer's snapshot, by peer and result."}, []string{"peer", "result"}),
		tombstonesHeld:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "geogate_tombstones_held", Help: "Tombstones stored, as of the last collection scan."}),
		snapshotsServed: prometheus.NewCounter(prometheus.CounterOpts{Name: "geogate_snapshots_served_total", Help: "Snapshots streamed whole to peers and backups."}),
	}
	s := n.store
	life := func() store.LifecycleStats { return s.LifecycleStats() }
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "geogate_antientropy_ranges_compared_total", Help: "Digest-tree nodes (key ranges of hashed buckets) compared with peers."},
			func() float64 { return float64(m.compared.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "geogate_antientropy_keys_repaired_total", Help: "Records anti-entropy changed here by merging a peer's copy (lost, altered or corrupt records)."},
			func() float64 { return float64(m.repaired.Load()) }),
		m.aeLastFull, m.aeRounds, m.reseeds, m.tombstonesHeld, m.snapshotsServed,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "geogate_tombstones_collected_total", Help: "Records removed by tombstone collection."},
			func() float64 { return float64(life().Collected) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "geogate_corrupt_records_found_total", Help: "Stored records found failing their checksum (not served; repaired from a peer)."},
			func() float64 { _, n := s.Suspects(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "geogate_corrupt_records", Help: "Stored records failing their checksum and not repaired yet."},
			func() float64 { k, _ := s.Suspects(); return float64(len(k)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "geogate_scrub_buckets_moved_total", Help: "Digest-tree buckets a scrub found changed behind the store's back."},
			func() float64 { _, moved, _ := s.TreeStats(); return float64(moved) }),
	} {
		n.metrics.reg.MustRegister(c)
	}
	return m
}
