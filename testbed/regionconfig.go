package testbed

import (
	"fmt"
	"slices"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
)

// regionAddrs are the addresses one region's config names, as that region
// sees them.
type regionAddrs struct {
	// HTTP is every region's client API host:port.
	HTTP map[string]string
	// PeerNATS is the NATS host:port this region dials for each region:
	// the WAN proxy of the link peer -> region when there is one, else the
	// region's own NATS listener.
	PeerNATS map[string]string
	// NATSListen is this region's own NATS listener.
	NATSListen string
}

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
			sec.Secure(c, c.Region)
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
// scenario asks for security, as `geogate init` would; nil otherwise.
func securityMaterial(sc *Scenario, dir string) (*deploy.Material, error) {
	if !sc.Security {
		return nil, nil
	}
	m, err := deploy.WriteMaterial(dir, sc.Regions, deploy.MaterialOptions{})
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

// regionConfig builds the complete configuration process mode runs region
// with: clusterSpec's (ClusterSpec.RegionConfig: the scenario's topology,
// rules and durability.sync, data under dataDir/<region>) with the
// addresses in addrs and log level info. RegionConfig runs Complete and
// Validate, so a scenario that no region can run with fails here, naming
// the region and the key (config.FieldError), before any process starts.
// The config's regions are in scenario order, which its YAML
// (Config.MarshalYAML) keeps and the file's reader takes as the order (the
// default merge resolver; a circular ring without topology.order gets the
// scenario order written as topology.order).
func regionConfig(sc *Scenario, region string, addrs regionAddrs, dataDir string, sec *deploy.Material) (*config.Config, error) {
	i := slices.Index(sc.Regions, region)
	if i < 0 {
		return nil, fmt.Errorf("config of region %s: not a region of the scenario", region)
	}
	spec := clusterSpec(sc, dataDir, sec)
	secure := spec.Tune
	httpScheme, natsScheme := schemes(sec)
	spec.Tune = func(c *config.Config) {
		for _, r := range sc.Regions {
			c.Regions[r] = config.Endpoints{HTTP: httpScheme + "://" + addrs.HTTP[r], NATS: natsScheme + "://" + addrs.PeerNATS[r]}
		}
		c.HTTP.Listen = addrs.HTTP[region]
		c.NATS.Listen = addrs.NATSListen // embedded, the default
		c.Log.Level = "info"
		if secure != nil {
			secure(c)
		}
	}
	c, err := spec.RegionConfig(i)
	if err != nil {
		return nil, fmt.Errorf("config of region %s: %w", region, err)
	}
	return c, nil
}
