package config

import (
	"github.com/geogate/geogate/internal/schema"
)

// MarshalYAML writes c as the file Load reads back into an equal Config:
// every key under its name (schema.Encode with the koanf tags), zero values
// included, so that the file does not depend on Load's defaults (c should
// be complete, since Load runs Complete, which fills in what c leaves
// empty). The regions mapping is written in the order Order follows when
// topology.order is not set (SetRegionOrder, or the file c was loaded
// from), so the loaded Config orders its regions as c does.
func (c *Config) MarshalYAML() (any, error) {
	return schema.Encode(c, keyTag, map[string][]string{"regions": c.writtenOrder()})
}
