package testbed

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
)

// regionAddrs are the addresses one node's config names, as that node
// sees them (every address is host:port).
type regionAddrs struct {
	// HTTP is every region's client API (a region of several nodes: its
	// first node's).
	HTTP map[string]string
	// PeerNATS is, for each region, the NATS servers this node dials for
	// it (one per node of the region): the WAN proxies of the link
	// peer -> region when there is one, else the servers themselves.
	PeerNATS map[string][]string
	// NATSListen is this node's own NATS listener; HTTPListen its client
	// API listener (default HTTP of its region).
	NATSListen, HTTPListen string
	// Nodes are the nodes of this node's region when it has several.
	Nodes map[string]nodeAddrs
}

// nodeAddrs are where one node of a region of several is reached: its
// client API, its NATS server and its NATS cluster routes.
type nodeAddrs struct{ HTTP, NATS, Cluster string }

// clusterSpec is the deployment a scenario describes, the one source of
// every region's config in both modes: in process it is started as it is
// (gateway.StartCluster), in process mode regionConfig takes each region's
// config from it. Region i's data is under dataDir/<region>. With sec
// (a scenario with security: true), every region is secured with it; the
// scenario's settings apply to every region.
func clusterSpec(sc *Scenario, dataDir string, sec *deploy.Material) gateway.ClusterSpec {
	spec := gateway.ClusterSpec{
		Regions:  sc.Regions,
		Topology: config.Topology{Kind: string(sc.Topology.Kind), Hub: sc.Topology.Hub, Order: slices.Clone(sc.Topology.Order)},
		DataDir:  dataDir,
		Rules:    sc.Rules,
		Sync:     sc.Sync,
	}
	small := sc.DiskFullRegions()
	spec.Tune = func(c *config.Config) {
		if sec != nil {
			node := c.Node
			if node == "" {
				node = c.Region
			}
			sec.Secure(c, node)
		}
		_ = applySettings(c, sc.Settings) // Validate checked them
		if slices.Contains(small, c.Region) {
			c.Storage.MinFreeBytes = DiskFullMinFree
			c.Replication.StreamMaxBytes = DiskFullStreamBytes
		}
	}
	return spec
}

// securityMaterial generates the run's secret material under dir when the
// scenario asks for security, as `geogate init` would (a certificate per
// node, a NATS identity per region); nil otherwise.
func securityMaterial(sc *Scenario, dir string) (*deploy.Material, error) {
	if !sc.Security {
		return nil, nil
	}
	regionOf := map[string]string{}
	for _, n := range sc.AllNodes() {
		regionOf[n] = sc.RegionOfNode(n)
	}
	m, err := deploy.WriteMaterial(dir, sc.AllNodes(), deploy.MaterialOptions{Regions: regionOf})
	if err != nil {
		return nil, fmt.Errorf("security material: %w", err)
	}
	return m, nil
}

// schemes are the URL schemes of a run's HTTP API and NATS servers.
func schemes(sec *deploy.Material) (httpScheme, natsScheme string) {
	if sec != nil {
		return "https", "tls"
	}
	return "http", "nats"
}

// regionConfig builds the complete configuration process mode runs a
// region of one node with: nodeConfig of the node named after it.
func regionConfig(sc *Scenario, region string, addrs regionAddrs, dataDir string, sec *deploy.Material) (*config.Config, error) {
	return nodeConfig(sc, region, region, addrs, dataDir, sec)
}

// nodeConfig builds the complete configuration process mode runs node of
// region with: clusterSpec's (ClusterSpec.RegionConfig: the scenario's
// topology, rules and durability.sync) with the addresses in addrs, data
// under dataDir/<node> and log level info; for a region of several nodes
// also node and nodes (every node's HTTP, NATS and cluster URLs), from
// which Complete derives nats.cluster_listen and nats.replicas, as for
// the configs `geogate init --nodes` writes. RegionConfig runs Complete
// and Validate, so a scenario that no node can run with fails here, naming
// the region and the key (config.FieldError), before any process starts.
// The config's regions are in scenario order, which its YAML
// (Config.MarshalYAML) keeps and the file's reader takes as the order (the
// default merge resolver; a circular ring without topology.order gets the
// scenario order written as topology.order).
func nodeConfig(sc *Scenario, region, node string, addrs regionAddrs, dataDir string, sec *deploy.Material) (*config.Config, error) {
	i := slices.Index(sc.Regions, region)
	if i < 0 {
		return nil, fmt.Errorf("config of region %s: not a region of the scenario", region)
	}
	spec := clusterSpec(sc, dataDir, sec)
	secure := spec.Tune
	httpScheme, natsScheme := schemes(sec)
	spec.Tune = func(c *config.Config) {
		for _, r := range sc.Regions {
			var urls []string
			for _, a := range addrs.PeerNATS[r] {
				urls = append(urls, natsScheme+"://"+a)
			}
			c.Regions[r] = config.Endpoints{HTTP: httpScheme + "://" + addrs.HTTP[r], NATS: strings.Join(urls, ",")}
		}
		c.HTTP.Listen = addrs.HTTP[region]
		if addrs.HTTPListen != "" {
			c.HTTP.Listen = addrs.HTTPListen
		}
		c.NATS.Listen = addrs.NATSListen // embedded, the default
		if len(addrs.Nodes) > 1 {
			c.Node = node
			c.Nodes = map[string]config.NodeEndpoints{}
			for name, a := range addrs.Nodes {
				c.Nodes[name] = config.NodeEndpoints{HTTP: httpScheme + "://" + a.HTTP, NATS: natsScheme + "://" + a.NATS,
					Cluster: natsScheme + "://" + a.Cluster}
			}
			c.DataDir = filepath.Join(dataDir, node)
		}
		c.Log.Level = "info"
		if secure != nil {
			secure(c)
		}
	}
	c, err := spec.RegionConfig(i)
	if err != nil {
		if node != region {
			return nil, fmt.Errorf("config of node %s of region %s: %w", node, region, err)
		}
		return nil, fmt.Errorf("config of region %s: %w", region, err)
	}
	return c, nil
}
