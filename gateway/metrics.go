package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology/link"
)

// metrics is one node's Prometheus registry. Each node has its own, so
// several regions can run in one process (demo, testbed, tests).
type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	writes     *prometheus.CounterVec
	ruleErrors *prometheus.CounterVec
	conflicts  *prometheus.CounterVec
	forwards   *prometheus.CounterVec
	fallbacks  *prometheus.CounterVec
	staleReads prometheus.Counter
	// contextRefusals counts writes refused for their context: naming
	// this region's own log beyond what it wrote, or versions it had not
	// applied within the wait (by reason).
	contextRefusals *prometheus.CounterVec
	tokenRejections *prometheus.CounterVec
	keyReloads      *prometheus.CounterVec
	clockOffset     *prometheus.GaugeVec
	clockRefusing   prometheus.Gauge
	clockRefusals   prometheus.Counter
	skew            prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f(buildInfoMetric())
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_http_requests_total", Help: "HTTP requests by route and status code."}, []string{"route", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "geogate_http_request_seconds", Help: "HTTP request latency by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route"})
	m.writes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_writes_total", Help: "Acknowledged local writes by operation."}, []string{"op"})
	m.ruleErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_rule_errors_total", Help: "Rule expressions that failed at run time, by rule and field (match, home, select, merge, on_read); the key kept every version."}, []string{"rule", "field"})
	m.conflicts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_conflicts_total", Help: "Conflict-log entries written, by rule."}, []string{"rule"})
	m.forwards = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_home_forwards_total", Help: "Writes for home-region keys handled elsewhere, by mode and result."}, []string{"mode", "result"})
	m.fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_home_fallbacks_total", Help: "Writes taken under a rule's fallback because the home region was unreachable."}, []string{"rule", "fallback"})
	m.staleReads = prometheus.NewCounter(prometheus.CounterOpts{Name: "geogate_session_stale_reads_total", Help: "Session reads answered 503 stale."})
	m.skew = prometheus.NewCounter(prometheus.CounterOpts{Name: "geogate_clock_skew_flagged_total", Help: "Replicated events whose HLC was further ahead than replication.max_clock_skew."})
	f(m.requests)
	f(m.latency)
	f(m.writes)
	f(m.ruleErrors)
	f(m.conflicts)
	f(m.forwards)
	f(m.fallbacks)
	f(m.staleReads)
	m.contextRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_context_refusals_total", Help: "Writes refused because their context names versions this region has not written (own_log) or not applied within the wait (ahead)."}, []string{"reason"})
	m.tokenRejections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_token_rejections_total", Help: "Context and session tokens refused, by kind and reason (malformed, forged, unknown_key, wrong_key)."}, []string{"kind", "reason"})
	m.keyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geogate_token_key_reloads_total", Help: "Re-reads of security.token_keys_file after it changed, by result (an error keeps the current keys)."}, []string{"result"})
	f(m.contextRefusals)
	f(m.tokenRejections)
	f(m.keyReloads)
	m.clockOffset = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "geogate_clock_offset_seconds", Help: "A peer's clock minus this region's, as last measured over NATS (bounded by half the round trip)."}, []string{"peer"})
	m.clockRefusing = prometheus.NewGauge(prometheus.GaugeOpts{Name: "geogate_clock_skew_refusing", Help: "1 while this region refuses local writes because its clock is more than replication.max_clock_skew ahead of most peers."})
	m.clockRefusals = prometheus.NewCounter(prometheus.CounterOpts{Name: "geogate_clock_skew_refusals_total", Help: "Local writes refused with 503 clock_skew."})
	f(m.clockOffset)
	f(m.clockRefusing)
	f(m.clockRefusals)
	f(m.skew)
	stat := func(name, help string, get func() float64, counter bool) {
		if counter {
			f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, get))
		} else {
			f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, get))
		}
	}
	stat("geogate_applied_events_total", "Replicated events applied here.", func() float64 { return float64(n.store.Stats().Applied) }, true)
	stat("geogate_duplicate_events_total", "Replicated events recognised as already applied.", func() float64 { return float64(n.store.Stats().Duplicates) }, true)
	stat("geogate_forwarded_events_total", "Replicated events forwarded into this region's stream.", func() float64 { return float64(n.store.Stats().Forwarded) }, true)
	stat("geogate_store_commits_total", "Group commits of the store writer.", func() float64 { return float64(n.store.Stats().Commits) }, true)
	stat("geogate_conflict_observations_pending", "Committed changes whose conflict-log entries the store's observer has not appended yet.", func() float64 { return float64(n.store.PendingObservations()) }, false)
	stat("geogate_conflict_observations_lost_total", "Pending conflict observations dropped because they no longer decoded (each logged).", func() float64 { return float64(n.store.Stats().LostObservations) }, true)
	stat("geogate_outbox_pending", "Outbox entries not yet trimmed: not yet in this region's stream, or (log_mode outbox) kept until every downstream region applied them.", func() float64 { return float64(n.store.OutboxLen()) }, false)
	stat("geogate_seq", "This region's last own log sequence.", func() float64 { return float64(n.store.Seq()) }, false)
	stat("geogate_outbox_unpublished", "Outbox entries not yet acknowledged by this region's stream.", func() float64 { return float64(n.Unpublished()) }, false)
	pub := func(f func(link.PublisherStats) uint64) func() float64 {
		return func() float64 {
			p := n.publisher.Load()
			if p == nil {
				return 0
			}
			return float64(f(p.Stats()))
		}
	}
	stat("geogate_publisher_resyncs_total", "Times the stream was found behind what it had acknowledged (lost tail) and the outbox was republished.", pub(func(s link.PublisherStats) uint64 { return s.Resyncs }), true)
	stat("geogate_publisher_expired_total", "Outbox entries trimmed by replication.max_hold before every downstream region applied them.", pub(func(s link.PublisherStats) uint64 { return s.Expired }), true)
	stat("geogate_publisher_errors_total", "Publish rounds and trims that failed and were retried.", pub(func(s link.PublisherStats) uint64 { return s.Errors }), true)
	stat("geogate_publisher_stalls_total", "Times publishing to this region's stream failed round after round (state stalled).", pub(func(s link.PublisherStats) uint64 { return s.Stalls }), true)
	stat("geogate_publisher_stalled", "1 while publishing to this region's stream keeps failing.", pub(func(s link.PublisherStats) uint64 {
		if s.State == link.PublisherStalled {
			return 1
		}
		return 0
	}), false)
	stat("geogate_publisher_behind_seconds", "Age of the oldest outbox entry read and not yet acknowledged by the stream.", func() float64 {
		p := n.publisher.Load()
		if p == nil {
			return 0
		}
		return p.Stats().Behind.Seconds()
	}, false)
	stat("geogate_storage_free_bytes", "Free space on the filesystem of the region's store at the last check.", func() float64 { return float64(n.store.Storage().FreeBytes) }, false)
	stat("geogate_storage_state", "0 ok, 1 low_space (writes refused below storage.min_free_bytes), 2 failed (a storage error; everything refused until restart).", func() float64 {
		switch n.store.Storage().State {
		case store.StorageLowSpace:
			return 1
		case store.StorageFailed:
			return 2
		}
		return 0
	}, false)
	m.reg.MustRegister(linkCollector{n})
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// instrument counts requests and their latency by route pattern.
func (m *metrics) instrument(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(sw, r)
		route := r.Pattern // set by the mux when it routed the request
		if route == "" {
			route = "other"
		}
		m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

var (
	descLag     = prometheus.NewDesc("geogate_link_lag_seconds", "Replication lag of an inbound link, measured from the peer's heartbeats.", []string{"from"}, nil)
	descPending = prometheus.NewDesc("geogate_link_pending_events", "Events in the peer's stream not yet applied here.", []string{"from"}, nil)
	descUp      = prometheus.NewDesc("geogate_link_up", "1 when the inbound link is up, 0 when paused, down, blocked or stalled.", []string{"from"}, nil)
	descStalled = prometheus.NewDesc("geogate_link_stalled", "1 when the inbound link stalled on an event it cannot apply (see /v1/status).", []string{"from"}, nil)
	descBlocked = prometheus.NewDesc("geogate_link_blocked", "1 while applying the inbound link's events fails (e.g. insufficient storage).", []string{"from"}, nil)
	descReject  = prometheus.NewDesc("geogate_link_rejected_total", "Deliveries of events the region could not apply (undecodable or impossible).", []string{"from"}, nil)
)

// linkCollector exports per-link state at scrape time.
type linkCollector struct{ n *Node }

func (c linkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLag
	ch <- descPending
	ch <- descUp
	ch <- descStalled
	ch <- descBlocked
	ch <- descReject
}

func (c linkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.n.linkStatuses() {
		up := 0.0
		if s.State == "up" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, s.LagSeconds, s.From)
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(s.Pending), s.From)
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, s.From)
		ch <- prometheus.MustNewConstMetric(descStalled, prometheus.GaugeValue, flag(s.State == link.StateStalled), s.From)
		ch <- prometheus.MustNewConstMetric(descBlocked, prometheus.GaugeValue, flag(s.State == link.StateBlocked), s.From)
		ch <- prometheus.MustNewConstMetric(descReject, prometheus.CounterValue, float64(s.Rejected), s.From)
	}
}

func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
