package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	neturl "net/url"
	"path/filepath"
	"strings"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/ports"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/store"
)

// ClusterSpec describes several regions run in one process on loopback:
// the demo, the testbed and integration tests.
type ClusterSpec struct {
	// Regions are the region names, in order (the circular default order).
	Regions []string
	// Topology selects the links (kind, hub, order).
	Topology config.Topology
	// DataDir holds one directory per region.
	DataDir string
	// Rules apply to every region (default: one lww rule).
	Rules []rules.Spec
	// HTTPBase and NATSBase, when non-zero, put region i on ports base+i;
	// zero picks free ports.
	HTTPBase, NATSBase int
	// Nodes is the number of nodes of every region (default 1), and
	// NodesOf of the regions it names. A region of several has nodes
	// <region>-1 ... <region>-N, each on free ports taken up front (every
	// node's config names the others), each with a data directory of its
	// own.
	Nodes   int
	NodesOf map[string]int
	// Sync sets durability.sync for every region (fsync before ack).
	Sync bool
	// Tune, if set, adjusts each region's config before it starts.
	Tune func(c *config.Config) `json:"-"`
	// Options returns each region's node options (clock, dialer, logger).
	Options func(region string) Options `json:"-"`
	// TokenKeys authenticate the tokens of every region whose config
	// names no security.token_keys_file; StartCluster draws a fresh key
	// when it is nil (Options.TokenKeys, if set, wins).
	TokenKeys *TokenKeys `json:"-"`
}

// Cluster is a set of regions started together in one process.
type Cluster struct {
	nodes   []*Node // nil while stopped
	stopped []stopped
	spec    ClusterSpec
	// addrs remembers every region's address, stopped ones included.
	addrs map[string]Peer
	// ports are, for each region of several nodes, every node's ports
	// (their addresses are fixed from the start); nil for a region of one.
	ports [][]nodePorts
	// regionIdx is the region (index in spec.Regions) of each node.
	regionIdx []int
}

type stopped struct {
	index int
	cfg   *config.Config
	opts  Options
}

// RegionConfig builds the complete, validated config of one region of spec
// (its first node's, when regions have several).
func (spec ClusterSpec) RegionConfig(i int) (*config.Config, error) {
	return spec.NodeConfig(i, 0, nil)
}

// nodesOf returns the number of nodes of region.
func (spec ClusterSpec) nodesOf(region string) int {
	if n, ok := spec.NodesOf[region]; ok {
		return max(n, 1)
	}
	return max(spec.Nodes, 1)
}

// nodePorts are a node's ports in a cluster of regions of several nodes.
type nodePorts struct{ http, nats, cluster int }

// NodeConfig builds the complete, validated config of node k of region i
// of spec. ports gives, for each region of several nodes, every node's
// ports (nil for a region of one).
func (spec ClusterSpec) NodeConfig(i, k int, ports [][]nodePorts) (*config.Config, error) {
	c := config.Default()
	c.Region = spec.Regions[i]
	c.Regions = map[string]config.Endpoints{}
	c.SetRegionOrder(spec.Regions)
	for j, r := range spec.Regions {
		// With free ports the real addresses are known only once bound;
		// Start gets them from the cluster, so these are placeholders.
		c.Regions[r] = config.Endpoints{
			HTTP: fmt.Sprintf("http://127.0.0.1:%d", max(port(spec.HTTPBase, j), 1+j)),
			NATS: fmt.Sprintf("nats://127.0.0.1:%d", max(port(spec.NATSBase, j), 1001+j)),
		}
		if ports != nil && ports[j] != nil {
			var urls []string
			for _, p := range ports[j] {
				urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p.nats))
			}
			c.Regions[r] = config.Endpoints{HTTP: fmt.Sprintf("http://127.0.0.1:%d", ports[j][0].http), NATS: strings.Join(urls, ",")}
		}
	}
	c.Topology = spec.Topology
	if len(c.Topology.Order) == 0 && c.Topology.Kind == "circular" {
		c.Topology.Order = spec.Regions
	}
	c.DataDir = filepath.Join(spec.DataDir, c.Region)
	c.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", port(spec.HTTPBase, i))
	c.NATS.Listen = fmt.Sprintf("127.0.0.1:%d", port(spec.NATSBase, i))
	if ports != nil && ports[i] != nil {
		c.Node = NodeName(c.Region, k)
		c.Nodes = map[string]config.NodeEndpoints{}
		for m, p := range ports[i] {
			c.Nodes[NodeName(c.Region, m)] = config.NodeEndpoints{HTTP: fmt.Sprintf("http://127.0.0.1:%d", p.http),
				NATS: fmt.Sprintf("nats://127.0.0.1:%d", p.nats), Cluster: fmt.Sprintf("nats://127.0.0.1:%d", p.cluster)}
		}
		p := ports[i][k]
		c.DataDir = filepath.Join(spec.DataDir, c.Node)
		c.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", p.http)
		c.NATS.Listen = fmt.Sprintf("127.0.0.1:%d", p.nats)
	}
	c.Durability.Sync = spec.Sync
	// Clusters run Badger small (Options.SmallFootprint), so the free
	// space its flushes and compactions need is smaller too.
	c.Storage.MinFreeBytes = store.SmallFootprintMinFreeBytes
	c.Rules = spec.Rules
	if spec.Tune != nil {
		spec.Tune(c)
	}
	c.Complete()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// NodeName is the name of node k (from 0) of a region of several nodes:
// <region>-<k+1>.
func NodeName(region string, k int) string { return fmt.Sprintf("%s-%d", region, k+1) }

// freePorts takes n free loopback ports (held until all are taken, then
// released: another process may take one before the node binds it, which
// a test then retries).
func freePorts(n int) ([]int, error) {
	ps, release, err := ports.Hold(n)
	if err == nil {
		release()
	}
	return ps, err
}

func hostOf(url string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		return ""
	}
	return u.Host
}

func port(base, i int) int {
	if base == 0 {
		return 0
	}
	return base + i
}

// StartCluster creates every region (stores, embedded NATS servers, HTTP
// listeners), then starts them all with each other's actual addresses.
func StartCluster(ctx context.Context, spec ClusterSpec) (*Cluster, error) {
	if spec.TokenKeys == nil {
		key := make([]byte, tokenKeyBytes)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("draw token key: %w", err)
		}
		spec.TokenKeys, _ = NewTokenKeys(key) //nolint:errcheck // 32 bytes
	}
	c := &Cluster{spec: spec}
	c.ports = make([][]nodePorts, len(spec.Regions))
	for i, r := range spec.Regions {
		if spec.nodesOf(r) == 1 {
			continue
		}
		free, err := freePorts(3 * spec.nodesOf(r))
		if err != nil {
			return nil, err
		}
		for range spec.nodesOf(r) {
			c.ports[i] = append(c.ports[i], nodePorts{free[0], free[1], free[2]})
			free = free[3:]
		}
	}
	for i, r := range spec.Regions {
		for k := range spec.nodesOf(r) {
			cfg, err := spec.NodeConfig(i, k, c.ports)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("region %s: %w", r, err)
			}
			var opts Options
			if spec.Options != nil {
				opts = spec.Options(r)
			}
			opts.SmallFootprint = true
			if opts.TokenKeys == nil && cfg.Security.TokenKeysFile == "" {
				opts.TokenKeys = spec.TokenKeys
			}
			n, err := New(cfg, opts)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("node %s: %w", cfg.Node, err)
			}
			c.nodes = append(c.nodes, n)
			c.regionIdx = append(c.regionIdx, i)
		}
	}
	for _, n := range c.nodes {
		if err := n.Start(ctx, c.Peers()); err != nil {
			c.Close()
			return nil, fmt.Errorf("node %s: %w", n.cfg.Node, err)
		}
	}
	return c, nil
}

// Peers returns every region's actual address (a stopped region's last
// one, where it comes back).
func (c *Cluster) Peers() map[string]Peer {
	if c.addrs == nil {
		c.addrs = map[string]Peer{}
	}
	for i, n := range c.nodes {
		if n != nil && c.ports[c.regionIdx[i]] == nil {
			c.addrs[n.cfg.Region] = Peer{HTTP: n.HTTPURL(), NATS: n.NATSURL()}
		}
	}
	for i, r := range c.spec.Regions {
		if c.ports[i] != nil {
			var urls []string
			for _, p := range c.ports[i] {
				urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p.nats))
			}
			c.addrs[r] = Peer{HTTP: fmt.Sprintf("http://127.0.0.1:%d", c.ports[i][0].http), NATS: strings.Join(urls, ",")}
		}
	}
	return maps.Clone(c.addrs)
}

// Nodes returns every node, region by region; a stopped one is nil.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns a region's node by region name: the one that leads it now
// when it has several (else any that runs), or nil.
func (c *Cluster) Node(region string) *Node {
	var any *Node
	for _, n := range c.nodes {
		if n != nil && n.cfg.Region == region {
			if n.rn == nil || n.leading() {
				return n
			}
			if any == nil {
				any = n
			}
		}
	}
	return any
}

// RegionNodes returns a region's nodes in order; a stopped one is nil.
func (c *Cluster) RegionNodes(region string) []*Node {
	var out []*Node
	for i, n := range c.nodes {
		if c.regionOf(i) == region {
			out = append(out, n)
		}
	}
	return out
}

// regionOf is the region of c.nodes[i].
func (c *Cluster) regionOf(i int) string { return c.spec.Regions[c.regionIdx[i]] }

// NodeByName returns a running node by its name (a region's name for a
// region of one node), or nil.
func (c *Cluster) NodeByName(name string) *Node {
	for _, n := range c.nodes {
		if n != nil && n.cfg.Node == name {
			return n
		}
	}
	return nil
}

// Stop closes one region (a clean shutdown); StartRegion brings it back on
// the same data directory and ports. For a region of several nodes, name a
// node (StopNode).
func (c *Cluster) Stop(region string) error { return c.StopNode(region) }

// StopNode closes one node (a clean shutdown); StartNode brings it back on
// the same data directory and ports.
func (c *Cluster) StopNode(name string) error {
	c.Peers() // remember its address for its return
	for i, n := range c.nodes {
		if n == nil || n.cfg.Node != name {
			continue
		}
		cfg := *n.cfg
		cfg.HTTP.Listen = n.listener.Addr().String()
		cfg.NATS.Listen = hostOf(n.NATSURL())
		c.stopped = append(c.stopped, stopped{index: i, cfg: &cfg, opts: n.opts})
		c.nodes[i] = nil
		return n.Close()
	}
	return fmt.Errorf("no running node %q", name)
}

// StartRegion starts a region stopped with Stop.
func (c *Cluster) StartRegion(ctx context.Context, region string) error {
	return c.StartNode(ctx, region)
}

// StartNode starts a node stopped with StopNode.
func (c *Cluster) StartNode(ctx context.Context, name string) error {
	for j, s := range c.stopped {
		if s.cfg.Node != name {
			continue
		}
		n, err := New(s.cfg, s.opts)
		if err != nil {
			return err
		}
		c.nodes[s.index] = n
		c.stopped = append(c.stopped[:j], c.stopped[j+1:]...)
		return n.Start(ctx, c.Peers())
	}
	return fmt.Errorf("no stopped node %q", name)
}

// Restart stops a region and starts it again at once.
func (c *Cluster) Restart(ctx context.Context, region string) error {
	if err := c.Stop(region); err != nil {
		return err
	}
	return c.StartRegion(ctx, region)
}

// Close stops every region.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.nodes {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}
