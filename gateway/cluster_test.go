package gateway

import (
	"slices"
	"testing"

	"github.com/geogate/geogate/gateway/config"
)

// TestRegionConfigOrder checks that every region of a ClusterSpec orders
// the regions as the spec lists them, in every topology (topology.order
// aside), as a config file listing them so would: the first listed is the
// default merge resolver, whatever the names' byte order.
func TestRegionConfigOrder(t *testing.T) {
	regions := []string{"us-east", "eu-west", "ap-south"}
	for _, topo := range []config.Topology{
		{Kind: config.TopologyAllToAll},
		{Kind: config.TopologyStar, Hub: "eu-west"},
		{Kind: config.TopologyCircular},
		{Kind: config.TopologyCircular, Order: []string{"ap-south", "us-east", "eu-west"}},
	} {
		want := regions
		if len(topo.Order) > 0 {
			want = topo.Order
		}
		spec := ClusterSpec{Regions: regions, Topology: topo, DataDir: t.TempDir(), HTTPBase: 7001, NATSBase: 8001}
		for i := range regions {
			c, err := spec.RegionConfig(i)
			if err != nil {
				t.Fatalf("%+v region %d: %v", topo, i, err)
			}
			if got := c.Order(); !slices.Equal(got, want) {
				t.Errorf("%+v region %s: Order() = %v, want %v", topo, c.Region, got, want)
			}
			if got := c.RuleOptions().DefaultResolver; got != want[0] {
				t.Errorf("%+v region %s: default resolver %s, want %s", topo, c.Region, got, want[0])
			}
		}
	}
}
