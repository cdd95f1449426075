// Package gateway is one region's geogate node: it wires the store, the
// rules, the topology plan and the replication links together, and serves
// the HTTP API (openapi.json, routes.go). All I/O lives here and below; the
// decisions are made by the pure packages conflict, rules and topology.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/store"
	"github.com/geogate/geogate/topology"
	"github.com/geogate/geogate/topology/link"
)

// Options are a node's dependencies beyond its configuration. The zero
// value is production: wall clock, no WAN emulation, default logger.
type Options struct {
	Logger *slog.Logger
	// Clock is the physical clock behind the node's HLC (Unix ms). The
	// testbed injects a skewed one.
	Clock conflict.PhysicalClock
	// Dialer, if set, dials this region's connections to peer's NATS: the
	// inbound link from peer and home-region forwarding to it (the testbed
	// puts a WAN-emulating proxy there).
	Dialer func(peer string) nats.CustomDialer
	// SmallFootprint shrinks Badger's memory for many regions per process.
	SmallFootprint bool
	// RulesFile, if set, is watched and its rules hot-reloaded (see
	// WatchRules); normally the config file.
	RulesFile string
	// TokenKeys, if set, authenticate tokens instead of the keys of
	// security.token_keys_file: regions run together in one process (the
	// demo, the testbed) share keys drawn for the run.
	TokenKeys *TokenKeys
}

// Node is one running region. Create it with New, start it with Start, stop
// it with Close.
type Node struct {
	cfg   *config.Config
	opts  Options
	log   *slog.Logger
	clock *conflict.Clock
	plan  *topology.Plan
	store *store.Store

	ruleSet atomic.Pointer[rules.Set]
	tokens  tokens
	clocks  *clockWatch
	book    *rulebook // the set's status, rule failures, keys holding siblings

	nats      *link.Server // embedded server, nil when external
	natsURL   string
	conn      *nats.Conn // this region's NATS: publisher, home-forward service
	publisher atomic.Pointer[link.Publisher]
	// duty is the duties running while the node leads its region (all
	// the time in a region of one node): duty.go.
	duty atomic.Pointer[duties]
	// rn is the node's part in a region of several nodes (nil for one):
	// regionnode.go.
	rn *regionNode

	listener net.Listener
	server   *http.Server
	metrics  *metrics
	sec      *security  // TLS, credentials, auth (gateway/security.go)
	life     *lifecycle // re-seeding, anti-entropy, tombstones (lifecycle.go)

	mu    sync.Mutex
	links map[string]*link.Link
	// running are the links started by startLink, which a topology reload
	// stops and starts (topology_reload.go).
	running map[string]*runningLink
	// topo is the regions and plan in effect once a reload changed them
	// (nil: cfg's and plan's).
	topo atomic.Pointer[topoState]
	// reloading serialises topology reloads (two watchers of one file
	// would start a link twice).
	reloading sync.Mutex
	// installing serialises installs of rule sets (setRules).
	installing sync.Mutex
	peers      map[string]Peer // set by Start
	// peerConns are connections to peers' NATS for home forwarding.
	peerConns map[string]*nats.Conn
	merges    *mergeQueue

	closing atomic.Bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New opens the region's store, starts its embedded NATS server (unless an
// external one is configured) and binds its HTTP listener. It does not serve
// or replicate until Start. The config must be complete and valid
// (config.Load returns such).
func New(cfg *config.Config, opts Options) (n *Node, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = conflict.WallClock
	}
	n = &Node{cfg: cfg, opts: opts, log: nodeLogger(opts.Logger, cfg), links: map[string]*link.Link{},
		peerConns: map[string]*nats.Conn{}, merges: newMergeQueue(), clocks: newClockWatch()}
	// The plan and the rule options come from the config, which validated
	// both the same way (config.Validate), so a loaded config cannot fail
	// here; one built in code and not validated still can.
	if n.plan, err = cfg.Plan(); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	set, err := n.startingRules() // rulesapi.go: the lint's checks, before any data is touched
	if err != nil {
		return nil, err
	}
	n.ruleSet.Store(set)
	if err := n.loadTokenKeys(); err != nil { // before any data is touched
		return nil, err
	}
	n.clock = conflict.NewClock(opts.Clock, cfg.Replication.MaxClockSkew.Milliseconds())

	// A failure from here on undoes what started; the named result n is
	// nil by then, so the node is captured.
	node := n
	defer func() {
		if err != nil {
			node.shutdown()
		}
	}()
	if n.sec, err = loadSecurity(cfg, n.log); err != nil {
		return nil, err
	}
	if cfg.Clustered() {
		n.rn = newRegionNode(n)
	}
	n.store, err = store.Open(store.Options{
		Dir: cfg.DataDir + "/store", Region: cfg.Region, Sync: cfg.Durability.Sync, Clock: n.clock, Clustered: cfg.Clustered(),
		Observer: observer{n}, ConflictRetention: cfg.Conflicts.Retention, ConflictMaxAge: cfg.Conflicts.MaxAge,
		MinFreeBytes:  minFreeBytes(cfg.Storage.MinFreeBytes),
		MaxEventBytes: int(cfg.HTTP.MaxValueBytes + config.EventReserve - config.HeaderReserve),
		OnConflicts:   n.publishConflicts,
		OnOutbox:      n.notifyPublisher,
		Logger:        n.log, SmallFootprint: opts.SmallFootprint,
		FeedRetention: cfg.Watch.Retention, // the change feed's log (watch.go)
	})
	if err != nil {
		return nil, err
	}
	n.metrics = newMetrics(n)
	n.registerNodeMetrics()
	n.life = newLifecycle(n)
	n.book = newRulebook(n, set, rulesSource(cfg, opts))
	n.metrics.reg.MustRegister(n.sec.failures.Collector())
	if err := n.startNATS(); err != nil {
		return nil, err
	}
	n.listener, err = net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)
	}
	n.listener = n.sec.secureListener(n.listener)
	n.server = &http.Server{
		Handler: n.sec.secureHandler(n.routes()), ReadTimeout: cfg.HTTP.ReadTimeout, WriteTimeout: cfg.HTTP.WriteTimeout,
		IdleTimeout: cfg.HTTP.IdleTimeout, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: n.sec.errorLog(n.log),
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.book.seedConflicted()
	}()
	// Observe reads the rule book, the metrics and the NATS connection:
	// the store holds the changes a crash left unobserved until now.
	n.store.StartObserving()
	return n, nil
}

// ruleOptions are the options every rule set of this node is compiled
// under, at start and on reload: the config's, which Validate used.
func (n *Node) ruleOptions() rules.Options { return n.current().cfg.RuleOptions() }

func (n *Node) rules() *rules.Set { return n.ruleSet.Load() }

// SetRules replaces the rule set atomically; requests in flight finish
// under the set they started with. /v1/status shows its source as "api".
func (n *Node) SetRules(s *rules.Set) { n.setRules(s, "api") }

// Config returns the node's configuration (do not modify).
func (n *Node) Config() *config.Config { return n.cfg }

// Store returns the node's store (tests and the testbed read digests).
func (n *Node) Store() *store.Store { return n.store }

// HTTPURL returns the base URL the HTTP API listens on.
func (n *Node) HTTPURL() string { return n.sec.scheme() + "://" + n.listener.Addr().String() }

// NATSURL returns the URL of this region's NATS server (the embedded one's
// actual address, or the configured external URL).
func (n *Node) NATSURL() string { return n.natsURL }

// Handler returns the HTTP API handler (for in-process tests).
func (n *Node) Handler() http.Handler { return n.server.Handler }

// Peer is where a region is reached.
type Peer struct{ HTTP, NATS string }

// Start serves the HTTP API and starts replication: the outbox publisher,
// one inbound link per edge of the plan, heartbeats and the home-region
// forwarding service. peers overrides the configured addresses of regions
// (nil: as configured). Start returns once everything is launched; failures
// of peers are retried in the background.
func (n *Node) Start(ctx context.Context, peers map[string]Peer) error {
	ctx, n.cancel = context.WithCancel(ctx)
	addrs := map[string]Peer{}
	for r, e := range n.cfg.Regions {
		addrs[r] = Peer{HTTP: e.HTTP, NATS: e.NATS}
		if p, ok := peers[r]; ok {
			addrs[r] = p
		}
	}
	n.mu.Lock()
	n.peers = addrs
	n.mu.Unlock()
	if err := n.serveClock(); err != nil {
		return err
	}
	n.spawn(ctx, func() { n.watchClocks(ctx) })
	if n.rn == nil {
		if _, err := n.startDuties(ctx); err != nil {
			return err
		}
	} else {
		n.rn.start(ctx)
	}
	if n.opts.RulesFile != "" {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.WatchRules(ctx, n.opts.RulesFile, DefaultRulesPoll)
		}()
	}
	if path := n.cfg.Security.TokenKeysFile; path != "" && n.opts.TokenKeys == nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.watchTokenKeys(ctx, path)
		}()
	}
	n.sec.serveMetrics(n.metrics.handler(), n.log)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.server.Serve(n.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	n.log.Info("region serving", "node", n.cfg.Node, "http", n.HTTPURL(), "nats", n.natsURL, "topology", n.plan.Describe(), "actor", n.store.Actor())
	return nil
}

// Close shuts the node down gracefully: it stops taking requests, lets
// those in flight finish (bounded), stops the links and the publisher (so
// nothing is acked that is not applied), closes the store (flushing the
// writer) and stops the embedded NATS server. Idempotent.
func (n *Node) Close() error {
	if !n.closing.CompareAndSwap(false, true) {
		return nil
	}
	if n.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.server.Shutdown(ctx); err != nil {
			// Requests still running after 10 s (a backup download, a
			// client that stopped reading) hold store reads that Close
			// would wait for: their connections are cut.
			n.log.Warn("requests still running at shutdown; closing their connections", "err", err)
			n.server.Close() //nolint:errcheck // closing anyway
		}
		cancel()
	}
	return n.shutdown()
}

func (n *Node) shutdown() error {
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	if n.listener != nil {
		// Shutdown closes only a listener Serve took; this one may not
		// have been (Close before Start, or a failed Start).
		n.listener.Close()
	}
	n.mu.Lock()
	for _, c := range n.peerConns {
		c.Close()
	}
	n.mu.Unlock()
	if n.rn != nil && n.conn != nil {
		// A node that stops hands the leadership of the region's streams
		// it leads to the other nodes first: otherwise the region's writes
		// would wait for JetStream to notice and elect (4 to 9 s).
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		n.rn.moveStreamLeaders(ctx, "")
		cancel()
	}
	if n.conn != nil {
		n.conn.Drain() //nolint:errcheck // closing anyway
		n.conn.Close()
	}
	var err error
	if n.store != nil {
		err = n.store.Close()
	}
	if n.nats != nil {
		n.nats.Shutdown()
	}
	n.sec.close()
	return err
}

// matchRule finds the rule governing key. A match expression that failed
// at run time holds the key under its rule (rules.Set.Match: siblings, no
// later rule tried); the failure is counted and logged. Only a key no rule
// matches is an error.
func (n *Node) matchRule(key string) (*rules.Rule, error) {
	rule, err := n.rules().Match(key)
	if rule == nil {
		return nil, errorf(http.StatusInternalServerError, "rule_error", "no rule governs key %q (add a final rule with match: 'true'): %v", key, err)
	}
	if err != nil {
		n.book.failed(key, err)
	}
	return rule, nil
}

// ruleError counts and logs a rule expression that failed at run time. The
// versions were kept as siblings, so nothing is lost.
func (n *Node) ruleError(key string, err error) { n.book.failed(key, err) }

// observer writes conflict-log entries for versions a rule collapses away,
// and keeps the index of conflicted keys. The store stores each change
// Notable accepts with its commit and calls Observe after the commit, off
// the write path, in commit order (store.Observer).
type observer struct{ n *Node }

// Notable accepts the changes that may need a conflict-log entry or move a
// key in or out of the conflicted index: a skewed clock, a resolver's
// merge that superseded versions, or siblings before or after. It is pure
// and quick, as the store's writer requires.
func (observer) Notable(c store.Change) bool {
	return c.Skewed || c.Merged && len(c.Outcome.Superseded) > 0 || len(c.Before.Versions) > 1 || len(c.After.Versions) > 1
}

// Observe evaluates the key's rule on a notable change: the entries to log,
// the metrics and the rule failures to count.
func (o observer) Observe(c store.Change) []store.ConflictEntry {
	o.n.book.conflicted.note(c.Key, len(c.After.Versions))
	var out []store.ConflictEntry
	if c.Skewed {
		o.n.metrics.skew.Inc()
		v := c.Event.Version
		out = append(out, store.ConflictEntry{Key: c.Key, Rule: "clock-skew", Kept: &v, At: o.n.opts.Clock().UnixMilli(),
			Note: fmt.Sprintf("HLC %s from %s is more than replication.max_clock_skew (%s) ahead of this region's clock", v.HLC, v.Origin, o.n.cfg.Replication.MaxClockSkew)})
	}
	merged := c.Merged && len(c.Outcome.Superseded) > 0
	if !merged && len(c.After.Versions) < 2 {
		return out // no conflict: no rule needed (the common case)
	}
	rule, err := o.n.matchRule(c.Key)
	if err != nil {
		return out
	}
	if merged {
		v := c.Event.Version
		o.n.metrics.conflicts.WithLabelValues(rule.Name()).Inc()
		return append(out, store.ConflictEntry{Key: c.Key, Rule: rule.Name(), Kept: &v, Discarded: c.Outcome.Superseded,
			At: o.n.opts.Clock().UnixMilli(), Note: "merged by the resolver region"})
	}
	res, err := rule.Resolve(c.Key, o.n.cfg.Region, c.After.Versions)
	if err != nil {
		o.n.ruleError(c.Key, err)
		return out
	}
	if len(res.Discarded) == 0 {
		return out
	}
	o.n.metrics.conflicts.WithLabelValues(rule.Name()).Inc()
	return append(out, store.ConflictEntry{
		Key: c.Key, Rule: rule.Name(), Kept: res.Kept, Discarded: res.Discarded, At: o.n.opts.Clock().UnixMilli(),
	})
}

// nodeLogger tags every line with the region and, in a region of several
// nodes, the node.
func nodeLogger(l *slog.Logger, cfg *config.Config) *slog.Logger {
	l = l.With("region", cfg.Region)
	if cfg.Clustered() {
		l = l.With("node", cfg.Node)
	}
	return l
}
