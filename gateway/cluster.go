package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	neturl "net/url"
	"path/filepath"

	"github.com/geogate/geogate/gateway/config"
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
}

type stopped struct {
	index int
	cfg   *config.Config
	opts  Options
}

// RegionConfig builds the complete, validated config of one region of spec.
// Its regions are in spec.Regions order (Config.Order, unless the topology
// sets one), as in a config file that lists them so: the first is the
// default merge resolver.
func (spec ClusterSpec) RegionConfig(i int) (*config.Config, error) {
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
	}
	c.Topology = spec.Topology
	if len(c.Topology.Order) == 0 && c.Topology.Kind == "circular" {
		c.Topology.Order = spec.Regions
	}
	c.DataDir = filepath.Join(spec.DataDir, c.Region)
	c.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", port(spec.HTTPBase, i))
	c.NATS.Listen = fmt.Sprintf("127.0.0.1:%d", port(spec.NATSBase, i))
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
	for i, r := range spec.Regions {
		cfg, err := spec.RegionConfig(i)
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
			return nil, fmt.Errorf("region %s: %w", r, err)
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := n.Start(ctx, c.Peers()); err != nil {
			c.Close()
			return nil, fmt.Errorf("region %s: %w", n.cfg.Region, err)
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
	for _, n := range c.nodes {
		if n != nil {
			c.addrs[n.cfg.Region] = Peer{HTTP: n.HTTPURL(), NATS: n.NATSURL()}
		}
	}
	return maps.Clone(c.addrs)
}

// Nodes returns the regions in order; a stopped region is nil.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns a region by name, or nil.
func (c *Cluster) Node(region string) *Node {
	for _, n := range c.nodes {
		if n != nil && n.cfg.Region == region {
			return n
		}
	}
	return nil
}

// Stop closes one region (a clean shutdown); StartRegion brings it back on
// the same data directory and ports.
func (c *Cluster) Stop(region string) error {
	c.Peers() // remember its address for its return
	for i, n := range c.nodes {
		if n == nil || n.cfg.Region != region {
			continue
		}
		cfg := *n.cfg
		cfg.HTTP.Listen = n.listener.Addr().String()
		cfg.NATS.Listen = hostOf(n.NATSURL())
		c.stopped = append(c.stopped, stopped{index: i, cfg: &cfg, opts: n.opts})
		c.nodes[i] = nil
		return n.Close()
	}
	return fmt.Errorf("no running region %q", region)
}

// StartRegion starts a region stopped with Stop.
func (c *Cluster) StartRegion(ctx context.Context, region string) error {
	for j, s := range c.stopped {
		if s.cfg.Region != region {
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
	return fmt.Errorf("no stopped region %q", region)
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
