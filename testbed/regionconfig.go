package testbed

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

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
	if sec != nil || len(sc.Settings) > 0 {
		spec.Tune = func(c *config.Config) {
			if sec != nil {
				sec.Secure(c, c.Region)
			}
			_ = applySettings(c, sc.Settings) // Validate checked them
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
// configYAML writes the regions in scenario order, which the file's reader
// takes as the order (the default merge resolver; a circular ring without
// topology.order gets the scenario order written as topology.order).
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

// configYAML renders c as the YAML file `geogate serve --config` reads:
// every key of c under its koanf name, so that config.Load of the file
// returns a Config equal to c (c must be complete: Load runs Complete, which
// would fill what c leaves empty). The regions mapping is written in
// regionOrder, which is then the loaded Config's Order when topology.order
// is not set.
func configYAML(c *config.Config, regionOrder []string) ([]byte, error) {
	enc := koanfEncoder{order: map[string][]string{"regions": regionOrder}}
	doc, err := enc.node(reflect.ValueOf(c).Elem(), "")
	if err != nil {
		return nil, fmt.Errorf("render config of %s: %w", c.Region, err)
	}
	var buf bytes.Buffer
	y := yaml.NewEncoder(&buf)
	y.SetIndent(2)
	if err := y.Encode(doc); err != nil {
		return nil, fmt.Errorf("render config of %s: %w", c.Region, err)
	}
	if err := y.Close(); err != nil {
		return nil, fmt.Errorf("render config of %s: %w", c.Region, err)
	}
	return buf.Bytes(), nil
}

// koanfEncoder turns a configuration struct into a YAML node tree keyed by
// its koanf tags, the keys config.Load reads. It writes every field, zero
// values included, so the file does not depend on the loader's defaults:
// only a nil slice, map or pointer is left out (no key; every such default
// is nil). Scalars are encoded by yaml.v3, which quotes whatever would
// otherwise read back as another type; durations are written as
// time.Duration strings and encoding.TextMarshaler values (config.ByteSize)
// as their text, the forms the loader parses.
type koanfEncoder struct {
	// order gives, by key path, the order to write a mapping's keys in;
	// keys not listed follow in name order.
	order map[string][]string
}

var (
	durationType      = reflect.TypeFor[time.Duration]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// node encodes v, found at key path (for errors and key order). It returns
// nil for a nil slice, map or pointer.
func (e koanfEncoder) node(v reflect.Value, path string) (*yaml.Node, error) {
	switch {
	case v.Type() == durationType:
		return scalar(time.Duration(v.Int()).String(), path)
	case v.Type().Implements(textMarshalerType):
		if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
			return nil, nil
		}
		text, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return scalar(string(text), path)
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil, nil
		}
		return e.node(v.Elem(), path)
	case reflect.Struct:
		return e.structNode(v, path)
	case reflect.Map:
		return e.mapNode(v, path)
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil, nil
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for i := range v.Len() {
			item, err := e.node(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if item == nil {
				return nil, fmt.Errorf("%s[%d]: a list item cannot be nil", path, i)
			}
			seq.Content = append(seq.Content, item)
		}
		return seq, nil
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return scalar(v.Interface(), path)
	}
	return nil, fmt.Errorf("%s: cannot write a %s as a config value", path, v.Type())
}

// structNode writes a struct's exported fields in declaration order, each
// under its koanf tag. An exported field without a koanf tag is an error:
// the loader would not read it back under a predictable key.
func (e koanfEncoder) structNode(v reflect.Value, path string) (*yaml.Node, error) {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		if key == "-" {
			continue
		}
		if key == "" || f.Anonymous {
			return nil, fmt.Errorf("%s: field %s.%s has no koanf key", orRoot(path), t, f.Name)
		}
		val, err := e.node(v.Field(i), keyPath(path, key))
		if err != nil {
			return nil, err
		}
		if val != nil {
			m.Content = append(m.Content, keyNode(key), val)
		}
	}
	return m, nil
}

// mapNode writes a string-keyed map, keys in e.order[path] first, then the
// rest by name.
func (e koanfEncoder) mapNode(v reflect.Value, path string) (*yaml.Node, error) {
	if v.IsNil() {
		return nil, nil
	}
	if v.Type().Key().Kind() != reflect.String {
		return nil, fmt.Errorf("%s: map keys must be strings, not %s", orRoot(path), v.Type().Key())
	}
	var keys []string
	for _, k := range v.MapKeys() {
		keys = append(keys, k.String())
	}
	slices.Sort(keys)
	rank := func(k string) int {
		if i := slices.Index(e.order[path], k); i >= 0 {
			return i
		}
		return len(e.order[path])
	}
	slices.SortStableFunc(keys, func(a, b string) int { return rank(a) - rank(b) })
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, k := range keys {
		val, err := e.node(v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key())), keyPath(path, k))
		if err != nil {
			return nil, err
		}
		if val == nil {
			return nil, fmt.Errorf("%s: a map value cannot be nil", keyPath(path, k))
		}
		m.Content = append(m.Content, keyNode(k), val)
	}
	return m, nil
}

// scalar encodes a Go scalar with yaml.v3, which picks a style (quoted when
// needed) that reads back as the same value and type.
func scalar(v any, path string) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &n, nil
}

// keyNode is a mapping key, quoted by yaml.v3 if it would not read back as
// this string.
func keyNode(k string) *yaml.Node {
	n, _ := scalar(k, k) // encoding a string cannot fail
	return n
}

func keyPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "config"
	}
	return path
}
