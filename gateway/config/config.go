package config

import (
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/topology"
)

// Topology kinds (topology.kind): which replication links the regions run
// (topology.Kind).
const (
	// TopologyAllToAll: every region pulls from every other region.
	TopologyAllToAll = string(topology.AllToAll)
	// TopologyStar: spokes pull from the hub; the hub pulls from every spoke
	// and forwards.
	TopologyStar = string(topology.Star)
	// TopologyCircular: each region pulls from its predecessor in Order and
	// forwards.
	TopologyCircular = string(topology.Circular)
)

// Log modes (replication.log_mode).
const (
	LogModeOutbox = "outbox"
	LogModeStream = "stream"
)

// NATSSyncAlways is the nats.sync value that makes the embedded JetStream
// fsync every message before acknowledging it.
const NATSSyncAlways = "always"

// Config is the complete configuration of one region. The koanf tags are the
// configuration keys; any other key is an error. A Config returned by Load is
// complete (Complete has run) and valid (Validate returned nil).
type Config struct {
	// Region is this process's region name ([a-z0-9-]+); it must be a key
	// of Regions. Required.
	Region string `koanf:"region"`
	// Node is this process's name among its region's nodes ([a-z0-9-]+):
	// a key of Nodes when the region runs several. Default: the region's
	// name (a region of one node).
	Node string `koanf:"node"`
	// Nodes lists the nodes of this region when it runs more than one:
	// where each serves HTTP and, with embedded NATS, where its server
	// takes clients and routes from the other nodes' servers. Every node's
	// config lists the same nodes. Empty (the default): the region is this
	// one process. Two or more: one node leads (takes writes, replicates
	// across regions), the others follow (serve reads, forward writes);
	// see Election and RegionLog. A region of two nodes stops when either
	// is lost (a majority of two is two): run three or five.
	Nodes map[string]NodeEndpoints `koanf:"nodes"`
	// Election configures how a region's nodes choose their leader.
	Election Election `koanf:"election"`
	// RegionLog configures the region log, through which the leader's
	// commits reach the followers.
	RegionLog RegionLog `koanf:"region_log"`
	// Regions lists every region of the deployment by name: where clients
	// and peers reach it. Every region's config must list the same regions.
	// Required, at least one.
	Regions map[string]Endpoints `koanf:"regions"`
	// Topology selects which replication links run between the regions.
	Topology Topology `koanf:"topology"`
	// DataDir is where this region keeps its Badger store and, when NATS is
	// embedded, its JetStream files. Default ./data/<region> (relative paths
	// are relative to the working directory).
	DataDir string `koanf:"data_dir"`
	// HTTP configures the client API listener.
	HTTP HTTP `koanf:"http"`
	// Auth configures bearer-token authentication of the HTTP API.
	Auth Auth `koanf:"auth"`
	// Metrics configures an optional separate listener for /metrics.
	Metrics Metrics `koanf:"metrics"`
	// NATS configures the JetStream server this region publishes to.
	NATS NATS `koanf:"nats"`
	// Durability configures when a write is acknowledged.
	Durability Durability `koanf:"durability"`
	// Replication configures the replication links and their streams.
	Replication Replication `koanf:"replication"`
	// Conflicts configures the conflict log.
	Conflicts Conflicts `koanf:"conflicts"`
	// Sessions configures session-token reads (X-Geo-Session).
	Sessions Sessions `koanf:"sessions"`
	// Watch configures the change feed (GET /v1/watch).
	Watch Watch `koanf:"watch"`
	// Log configures logging.
	Log Log `koanf:"log"`
	// Security configures what authenticates this deployment's tokens.
	Security Security `koanf:"security"`
	// Storage configures the free-space guard of the region's disk.
	Storage Storage `koanf:"storage"`
	// Tombstones configures the collection of deleted keys' tombstones.
	Tombstones Tombstones `koanf:"tombstones"`
	// AntiEntropy configures the comparison and repair of this region's
	// records against its peers'.
	AntiEntropy AntiEntropy `koanf:"anti_entropy"`
	// Rules is the ordered conflict rule list (package rules); the first
	// rule whose match holds for a key governs it. Default: DefaultRules.
	// Validate compiles them (rules.Compile under RuleOptions).
	Rules []rules.Spec `koanf:"rules"`

	// file is the configuration file Load read, "" for none.
	file string
	// fileOrder is the order in which the file wrote the regions mapping.
	fileOrder []string
	// checked caches the findings of rules.Check on Rules (see
	// RuleFindings), so that Validate and the gateway run it once.
	checked *ruleCheck
}

// File returns the path of the configuration file Load read this Config
// from (given to Load, --config, or $GEOGATE_CONFIG), or "" when it read
// none or the Config was built in code. The rules in the file are the ones
// a running region reloads when the file changes.
func (c *Config) File() string { return c.file }

// ruleCheck is one run of rules.Check, with its input.
type ruleCheck struct {
	specs []rules.Spec
	opts  rules.Options
	diags []rules.Diagnostic
}

// RuleFindings returns what `geogate rules lint` finds in Rules under
// RuleOptions (rules.Check): errors, which Validate reports and which
// refuse the config, and warnings, which the gateway logs at start. The
// result is computed once per rule list.
func (c *Config) RuleFindings() []rules.Diagnostic { return c.checkRules(c.RuleOptions()) }

// checkRules runs rules.Check on Rules under opts, or returns the findings
// of the last run on the same input.
func (c *Config) checkRules(opts rules.Options) []rules.Diagnostic {
	if k := c.checked; k != nil && slices.Equal(k.specs, c.Rules) && slices.Equal(k.opts.Regions, opts.Regions) &&
		k.opts.DefaultResolver == opts.DefaultResolver && k.opts.MaxNodes == opts.MaxNodes && k.opts.MemoryBudget == opts.MemoryBudget &&
		k.opts.MaxInputBytes == opts.MaxInputBytes && k.opts.MaxResultBytes == opts.MaxResultBytes {
		return k.diags
	}
	diags := rules.Check(c.Rules, opts)
	c.checked = &ruleCheck{specs: slices.Clone(c.Rules), opts: opts, diags: diags}
	return diags
}

// Endpoints is where one region is reached.
type Endpoints struct {
	// HTTP is the region's client API base URL (http or https), used for
	// redirects and by operators. Required.
	HTTP string `koanf:"http"`
	// NATS is the URL (nats or tls) of the region's NATS server, from which
	// its peers pull its replication stream; for a region of several
	// nodes, every node's server, separated by commas (a peer connects to
	// any and fails over to the others). Required.
	NATS string `koanf:"nats"`
	// NKey is the region's public NATS identity (an NKey user key, "U"
	// followed by 55 characters; geogate init generates the pair). Set for
	// every region or for none: when set, every embedded server admits only
	// these users, each with the permissions the topology plan grants it
	// (see the README's Security section), and this region connects with
	// the seed in nats.nkey_seed_file.
	NKey string `koanf:"nkey"`
}

// NodeEndpoints is where one node of a region is reached.
type NodeEndpoints struct {
	// HTTP is the node's client API base URL (http or https). Required.
	HTTP string `koanf:"http"`
	// NATS is the URL (nats or tls) of the node's embedded NATS server,
	// where the node's own connections and the region's peers connect.
	// Required with an embedded server; unused with nats.url.
	NATS string `koanf:"nats"`
	// Cluster is the URL (nats or tls) on which the node's embedded server
	// takes routes from the other nodes' servers: together they form the
	// region's NATS cluster, which keeps the region log, the leader lease
	// and the region's stream on every node. Required with an embedded
	// server; unused with nats.url.
	Cluster string `koanf:"cluster"`
}

// Election configures how a region's nodes choose their leader: a lease
// in a JetStream key-value bucket replicated on the nodes.
type Election struct {
	// LeaseTTL is how long the leader's lease lasts without renewal. The
	// leader renews it every third of this; a follower looks for an
	// expired lease every sixth of this (drawn at random between a
	// twelfth and a sixth). So a leader that dies is replaced within about
	// LeaseTTL plus a sixth of it. A leader whose renewals fail leads on
	// (everything it acknowledges went through the region log first, and
	// a successor's first append fences it off): it steps down when it
	// learns another node holds the lease or an append is refused or
	// times out, so a slow leader does not make the lease flap. Default
	// 3s; at least 1s.
	LeaseTTL time.Duration `koanf:"lease_ttl"`
}

// RegionLog configures the region log: a JetStream stream replicated on
// the region's nodes, to which the leader appends each commit before it
// acknowledges it.
type RegionLog struct {
	// MaxAge is how long the log keeps an entry; a node away longer
	// reseeds from a copy of the leader's store. Default 24h.
	MaxAge time.Duration `koanf:"max_age"`
	// MaxBytes bounds the log's size (the oldest entries go first).
	// Accepts a size like "1GiB". Default 1GiB.
	MaxBytes ByteSize `koanf:"max_bytes"`
	// AppendTimeout bounds one append (a majority of the nodes must store
	// it; an append is retried meanwhile, e.g. while the log's stream
	// elects a leader, which JetStream does within 4 to 9 seconds); a
	// write whose append does not finish in time is answered 503
	// (outcome_unknown) and the leader steps down, so that a node that can
	// reach a majority leads. Default 10s.
	AppendTimeout time.Duration `koanf:"append_timeout"`
}

// Topology selects the region graph.
type Topology struct {
	// Kind is all-to-all (default), star or circular.
	Kind string `koanf:"kind"`
	// Hub is the star's centre; required for star, and a known region
	// whenever set.
	Hub string `koanf:"hub"`
	// Order is the ring for circular, r0 -> r1 -> ... -> r0: a permutation
	// of the regions. Optional; use Config.Order for the effective order.
	Order []string `koanf:"order"`
}

// HTTP configures the client API server.
type HTTP struct {
	// Listen is the host:port to serve on. Default: host:port of
	// regions.<region>.http.
	Listen string `koanf:"listen"`
	// MaxValueBytes bounds a written document; larger bodies get 413.
	// Accepts a number or a size like "1MiB". Default 1MiB.
	MaxValueBytes ByteSize `koanf:"max_value_bytes"`
	// ReadTimeout bounds reading one request (0: none). Default 30s.
	ReadTimeout time.Duration `koanf:"read_timeout"`
	// WriteTimeout bounds one response (0: none); it must exceed
	// sessions.max_wait so a waiting read can answer. Default 60s.
	WriteTimeout time.Duration `koanf:"write_timeout"`
	// IdleTimeout bounds an idle keep-alive connection (0: none).
	// Default 120s.
	IdleTimeout time.Duration `koanf:"idle_timeout"`
	// TLS serves the API over HTTPS when its certificate is set.
	TLS HTTPTLS `koanf:"tls"`
}

// NATS configures this region's NATS JetStream server: embedded in the
// process (default), or an external one at URL.
type NATS struct {
	// Embedded runs a NATS server with JetStream inside the process.
	// Default true, or false when url is set; true together with url is an
	// error.
	Embedded bool `koanf:"embedded"`
	// Listen is the embedded server's client host:port, the one peers pull
	// from. Default: host:port of regions.<region>.nats.
	Listen string `koanf:"listen"`
	// ClusterListen is the host:port on which the embedded server takes
	// routes from the other nodes' servers, for a region of several
	// nodes. Default: host:port of nodes.<node>.cluster.
	ClusterListen string `koanf:"cluster_listen"`
	// URL is an external NATS server for this region (nats:// or tls://,
	// several separated by commas), used instead of an embedded one.
	// Default when embedded is false: regions.<region>.nats.
	URL string `koanf:"url"`
	// StoreDir is the embedded JetStream's storage directory.
	// Default <data_dir>/nats.
	StoreDir string `koanf:"store_dir"`
	// Sync is the embedded JetStream's fsync policy: "always" (every
	// message) or an interval (default "1s", safe with the default
	// replication.log_mode: outbox).
	Sync string `koanf:"sync"`
	// Replicas is the replica count of this region's stream GEO_<region>
	// (and so of the consumers on it), 1 to MaxNATSReplicas; for a region
	// of several nodes also of its region log and leader lease. Default 1,
	// or for a region of several nodes (Nodes) their number, at most
	// MaxNATSReplicas. More than 1 needs a NATS cluster of at least that
	// many servers: the region's nodes' embedded servers, or an external
	// cluster (nats.url).
	Replicas int `koanf:"replicas"`
	// TLS is the certificate this region's NATS connections present and the
	// CA they trust; with an embedded server, also the server's own
	// certificate and the CA its clients' certificates must chain to.
	TLS NATSTLS `koanf:"tls"`
	// CredsFile is a NATS credentials file (user JWT and seed) this region
	// authenticates with on every NATS server it connects to: an external
	// NATS in operator mode. Exclusive with NKeySeedFile.
	CredsFile string `koanf:"creds_file"`
	// NKeySeedFile holds this region's NKey seed ("SU..."), the private half
	// of regions.<region>.nkey; the region signs the servers' challenges with
	// it on every NATS server it connects to. Required when the regions have
	// nkeys. Keep it 0600.
	NKeySeedFile string `koanf:"nkey_seed_file"`
}

// SyncInterval returns the embedded JetStream's fsync interval, or 0 when
// Sync is "always" (or not a valid duration, which Validate refuses).
func (n NATS) SyncInterval() time.Duration {
	if n.Sync == NATSSyncAlways {
		return 0
	}
	d, err := time.ParseDuration(n.Sync)
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// Durability configures when a write is acknowledged.
type Durability struct {
	// Sync makes the store fsync a write batch before acknowledging it.
	// Default true; false trades acknowledged writes lost on a machine crash
	// for throughput.
	Sync bool `koanf:"sync"`
}

// Replication configures the replication links and this region's stream.
type Replication struct {
	// MaxClockSkew is how far ahead of the local clock a remote HLC may be
	// before it is flagged. Default 5s.
	MaxClockSkew time.Duration `koanf:"max_clock_skew"`
	// Heartbeat is how often this region publishes its heartbeat (origin,
	// sequence, HLC) for lag measurement. Default 1s.
	Heartbeat time.Duration `koanf:"heartbeat"`
	// StreamMaxAge is the retention age of this region's stream GEO_<region>;
	// a peer away longer must be re-seeded. Default 168h.
	StreamMaxAge time.Duration `koanf:"stream_max_age"`
	// StreamMaxBytes bounds the size of the stream. Accepts a number or a
	// size like "1GiB". Default 1GiB.
	StreamMaxBytes ByteSize `koanf:"stream_max_bytes"`
	// Batch is the most events a link fetches and applies in one batch.
	// It also sizes the pipeline: a link keeps 4 batches' worth of events
	// requested ahead and at most 16 batches' worth delivered and not yet
	// acknowledged. Default 256.
	Batch int `koanf:"batch"`
	// AckWait is how long a peer's stream waits for this region's link to
	// acknowledge a delivered event before delivering it again (the link's
	// consumer AckWait): a lost acknowledgement or a stalled apply costs up
	// to this much delay, too short a wait redelivers events still queued
	// for applying. At least MinAckWait. Default 5s.
	AckWait time.Duration `koanf:"ack_wait"`
	// LogMode says when an entry may leave this region's outbox: "outbox"
	// (default) once every downstream region has applied it, so JetStream
	// may sync lazily (nats.sync an interval) and a stream that lost its
	// tail in a power cut is re-published from the outbox; or "stream" as
	// soon as JetStream stored it, which relies on nats.sync: always.
	LogMode string `koanf:"log_mode"`
	// MaxHold bounds how long outbox mode keeps an entry for a downstream
	// region that has not applied it (a region away longer needs
	// re-seeding, as with stream retention). Default 0: stream_max_age.
	MaxHold time.Duration `koanf:"max_hold"`
	// ReseedAfter is how long an inbound link may make no progress while
	// its peer has applied events of the link's origins that this region
	// has not, before the region concludes that the peer's stream no
	// longer holds them (trimmed by retention or max_hold) and re-seeds
	// from a snapshot of the peer. Default 30s.
	ReseedAfter time.Duration `koanf:"reseed_after"`
}

// Tombstones configures tombstone collection: a record whose versions are
// all tombstones older than Grace, and which every region has applied
// (causally stable, learned from the positions regions exchange), is
// removed.
type Tombstones struct {
	// Grace is how old (by its HLC) a tombstone must be before it may be
	// collected. Default 24h; 0 collects as soon as it is stable.
	Grace time.Duration `koanf:"grace"`
	// Interval is how often the records are scanned for tombstones to
	// collect. Default 1h.
	Interval time.Duration `koanf:"interval"`
}

// AntiEntropy configures anti-entropy: every Interval this region compares
// the digest tree of its records with each peer it pulls from and repairs
// the keys that differ by merging records both ways.
type AntiEntropy struct {
	// Interval between comparisons with each peer. Default 1m; 0 turns
	// anti-entropy off.
	Interval time.Duration `koanf:"interval"`
	// ScrubInterval is how often the digest tree is rebuilt from the data,
	// which verifies every record's checksum and finds records changed
	// behind the store's back. Default 24h; 0 never (the tree is built at
	// start).
	ScrubInterval time.Duration `koanf:"scrub_interval"`
}

// Conflicts configures the conflict log (versions collapsed away).
type Conflicts struct {
	// Retention is the most entries kept; older ones are pruned.
	// Default 100000.
	Retention int `koanf:"retention"`
	// MaxAge is how long an entry is kept. Default 168h.
	MaxAge time.Duration `koanf:"max_age"`
}

// Watch configures the change feed (GET /v1/watch) and the change log it
// reads.
type Watch struct {
	// Retention is how many changes the change log keeps; a client
	// resuming after an older position is told position_gone. Default
	// 1000000 (each entry is the key and the version's dot, tens of bytes).
	Retention int `koanf:"retention"`
	// Heartbeat is the spacing of the ": ping" comments an idle stream
	// sends. Default 5s.
	Heartbeat time.Duration `koanf:"heartbeat"`
	// MaxLag is how many changes a watcher that had caught up may fall
	// behind the newest before it is disconnected as a slow consumer
	// (event: error, code slow_consumer). Default 10000.
	MaxLag int `koanf:"max_lag"`
	// WriteTimeout bounds one write of events to a watcher; a watcher that
	// reads nothing for this long is disconnected. Default 30s.
	WriteTimeout time.Duration `koanf:"write_timeout"`
}

// Sessions configures reads that carry a session token.
type Sessions struct {
	// DefaultWait is how long such a read waits for this region to catch up
	// when the request has no X-Geo-Wait header. Default 2s.
	DefaultWait time.Duration `koanf:"default_wait"`
	// MaxWait caps X-Geo-Wait. Default 30s.
	MaxWait time.Duration `koanf:"max_wait"`
}

// Security configures the keys that authenticate the causal-context and
// session tokens the API hands out.
type Security struct {
	// TokenKeysFile names a file of token keys: one key of 64 hexadecimal
	// characters per line, the first signing new tokens, every one
	// verifying (rotation: put the new key first, remove the old one once
	// the tokens it signed no longer matter). Every region of a deployment
	// reads the same keys. The file is re-read when it changes. Empty: a
	// built-in key, so anyone who reads geogate's source can mint tokens
	// (a warning is logged at start); `geogate init` writes a file.
	TokenKeysFile string `koanf:"token_keys_file"`
}

// Storage configures the guard that keeps the region's disk from filling
// up (Badger, whose files are memory-mapped, would die of SIGBUS).
type Storage struct {
	// MinFreeBytes is the free space below which the region refuses local
	// writes (507 insufficient_storage) and pauses applying replicated
	// events, serving reads meanwhile; it takes writes again by itself
	// once a tenth more than this is free. Accepts a size like "512MiB".
	// Default 512MiB: room for Badger to flush a memtable and compact
	// level 0 with its default options. 0 turns the guard off.
	MinFreeBytes ByteSize `koanf:"min_free_bytes"`
}

// Log configures the process's slog logger.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `koanf:"level"`
	// Format is text (default) or json.
	Format string `koanf:"format"`
}

// SlogLevel returns Level as a slog.Level (info for an unknown level,
// which Validate refuses).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// NewLogger returns a logger writing to w in Format at Level.
func (l Log) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// DefaultRules returns the rule list used when the configuration has none:
// last-writer-wins for every key.
func DefaultRules() []rules.Spec {
	return []rules.Spec{{Name: "default", Match: "true", Strategy: "lww"}}
}

// Order returns the regions in their configured order: topology.order when
// set, else the order the file wrote the regions mapping in, with regions
// added by environment or flags after them in name order; for a Config built
// in code, name order. This is the circular ring, the display order, and its
// first element is the default merge resolver. The result is a new slice.
func (c *Config) Order() []string {
	if len(c.Topology.Order) > 0 {
		return slices.Clone(c.Topology.Order)
	}
	return c.writtenOrder()
}

// SetRegionOrder records order as the order the regions mapping was
// written in, as loading a file that lists the regions in that order does:
// Order follows it (names not in Regions are skipped, regions it leaves out
// come after, by name) unless topology.order is set. For configs built in
// code, so that they order their regions as a file would.
func (c *Config) SetRegionOrder(order []string) { c.fileOrder = slices.Clone(order) }

// writtenOrder is Order without topology.order: the regions as the file
// wrote them, then the others by name.
func (c *Config) writtenOrder() []string {
	out := make([]string, 0, len(c.Regions))
	seen := make(map[string]bool, len(c.Regions))
	for _, name := range c.fileOrder {
		if _, ok := c.Regions[name]; ok && !seen[name] {
			out = append(out, name)
			seen[name] = true
		}
	}
	var rest []string
	for name := range c.Regions {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// Peers returns every region but this one, in Order.
func (c *Config) Peers() []string {
	return slices.DeleteFunc(c.Order(), func(name string) bool { return name == c.Region })
}

// TopologySpec returns the topology section as the topology package takes
// it. The order is a copy.
func (c *Config) TopologySpec() topology.Spec {
	return topology.Spec{Kind: topology.Kind(c.Topology.Kind), Hub: c.Topology.Hub, Order: slices.Clone(c.Topology.Order)}
}

// Plan builds the deployment's replication plan: topology.New over the
// regions in the order the file wrote them (see Order) and TopologySpec;
// its ring, when circular, is Order. It fails exactly when Validate reports
// a problem with the region names or the topology section, which Validate
// checks with topology.Validate on the same input, so it does not fail for
// a Config that Load returned.
func (c *Config) Plan() (*topology.Plan, error) {
	return topology.New(c.writtenOrder(), c.TopologySpec())
}

// RuleOptions returns the deployment facts the rules are compiled under:
// the regions in Order, the first of them the default merge resolver.
// Validate compiles Rules with these options and the gateway must use them
// too, so that the rules Validate accepted are the rules that run.
func (c *Config) RuleOptions() rules.Options {
	order := c.Order()
	opts := rules.Options{Regions: order}
	if len(order) > 0 {
		opts.DefaultResolver = order[0]
	}
	return opts
}

// Complete fills every setting that defaults from other settings and is
// still empty: node, data_dir, http.listen, nats.listen and
// nats.cluster_listen (from this node's
// entry in nodes when the region lists its nodes, else from this region's
// entry in regions), nats.url (when not embedded), nats.store_dir and
// rules; and for a region of several nodes nats.replicas when it is 1.
// It never overwrites another value, so it is idempotent. Values it cannot derive (no region, or a malformed URL) stay
// empty for Validate to report. Load calls it; call it on a Config built in
// code (start from Default) before Validate.
func (c *Config) Complete() {
	if c.Node == "" {
		c.Node = c.Region
	}
	self, ok := c.Regions[c.Region]
	httpURL, natsURL := self.HTTP, self.NATS
	if me, isNode := c.Nodes[c.Node]; isNode {
		httpURL, natsURL = me.HTTP, me.NATS
	} else if len(c.Nodes) > 0 {
		ok = false
	}
	if c.DataDir == "" && validRegionName(c.Node) {
		c.DataDir = "./data/" + c.Node
	}
	if ok && c.HTTP.Listen == "" {
		c.HTTP.Listen = hostPort(httpURL, map[string]string{"http": "80", "https": "443"})
	}
	if ok && c.NATS.Embedded && c.NATS.Listen == "" {
		c.NATS.Listen = hostPort(natsURL, map[string]string{"nats": "4222", "tls": "4222"})
	}
	if me, isNode := c.Nodes[c.Node]; isNode && c.Clustered() && c.NATS.Embedded && c.NATS.ClusterListen == "" {
		c.NATS.ClusterListen = hostPort(me.Cluster, map[string]string{"nats": "6222", "tls": "6222"})
	}
	if n := len(c.Nodes); n > 1 && c.NATS.Replicas == 1 {
		c.NATS.Replicas = min(n, MaxNATSReplicas)
	}
	if ok && !c.NATS.Embedded && c.NATS.URL == "" {
		c.NATS.URL = self.NATS
	}
	if c.NATS.Embedded && c.NATS.StoreDir == "" && c.DataDir != "" {
		c.NATS.StoreDir = filepath.Join(c.DataDir, "nats")
	}
	if len(c.Rules) == 0 {
		c.Rules = DefaultRules()
	}
}

// Clustered reports whether this region runs several nodes (Nodes lists
// two or more): a leader and followers on a region log.
func (c *Config) Clustered() bool { return len(c.Nodes) > 1 }

// NodeNames returns the region's node names in order: Nodes' keys sorted,
// or just Node for a region of one node.
func (c *Config) NodeNames() []string {
	if len(c.Nodes) == 0 {
		return []string{c.Node}
	}
	return slices.Sorted(maps.Keys(c.Nodes))
}

// hostPort returns the host:port of a URL, the port defaulted by scheme, or
// "" when the URL does not parse or has no host.
func hostPort(raw string, defaultPorts map[string]string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = defaultPorts[u.Scheme]
	}
	if port == "" {
		return ""
	}
	return net.JoinHostPort(u.Hostname(), port)
}
