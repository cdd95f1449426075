package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/rules"
)

// configDiff lists the keys whose values differ between want and got,
// comparing every exported field of Config (the unexported region order a
// file records is checked through Order by the callers).
func configDiff(want, got *Config) []string {
	var diffs []string
	w, g := reflect.ValueOf(want).Elem(), reflect.ValueOf(got).Elem()
	for i := range w.NumField() {
		f := w.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		if !reflect.DeepEqual(w.Field(i).Interface(), g.Field(i).Interface()) {
			diffs = append(diffs, fmt.Sprintf("%s: wrote %#v, loaded %#v", f.Tag.Get("koanf"), w.Field(i).Interface(), g.Field(i).Interface()))
		}
	}
	return diffs
}

// roundTrip writes c with MarshalYAML, loads the file with Load and fails
// the test unless every key came back and the regions are in wantOrder.
func roundTrip(t *testing.T, c *Config, wantOrder []string) {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "region.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, nil, nil)
	if err != nil {
		t.Fatalf("Load refuses the written file: %v\n%s", err, b)
	}
	for _, d := range configDiff(c, got) {
		t.Errorf("%s", d)
	}
	if !slices.Equal(got.Order(), wantOrder) {
		t.Errorf("loaded Order() = %v, want %v", got.Order(), wantOrder)
	}
	if t.Failed() {
		t.Logf("written file:\n%s", b)
	}
}

// TestMarshalYAMLEveryKey round-trips a Config whose every key differs from
// its default, with strings YAML would read as another type unless quoted
// (region names "123", "null" and "true", rule expressions with quotes,
// colons, '#' and newlines), and checks the regions mapping keeps the
// order SetRegionOrder gave.
func TestMarshalYAMLEveryKey(t *testing.T) {
	c := Default()
	c.Region = "null"
	c.Regions = map[string]Endpoints{
		"us-east": {HTTP: "http://127.0.0.1:7001", NATS: "nats://127.0.0.1:8001"},
		"123":     {HTTP: "https://gw.example:443/base", NATS: "tls://nats.example:4222"},
		"null":    {HTTP: "http://[::1]:7003", NATS: "nats://[::1]:8003"},
		"true":    {HTTP: "http://h:7004", NATS: "nats://h:8004"},
	}
	c.Topology = Topology{Kind: TopologyStar, Hub: "true"}
	c.DataDir = "/tmp/dir with: colon #hash 'q' \"dq\""
	// Field by field, so that keys added later keep their defaults.
	c.HTTP.Listen = "[::1]:0"
	c.HTTP.MaxValueBytes = 1000
	c.HTTP.ReadTimeout = 1500 * time.Millisecond
	c.HTTP.WriteTimeout = 0
	c.HTTP.IdleTimeout = time.Hour + time.Second
	c.NATS.Embedded = false
	c.NATS.URL = "nats://a:4222, tls://b:4223"
	c.NATS.Sync = NATSSyncAlways
	c.Durability.Sync = false
	c.Replication.MaxClockSkew = time.Minute
	c.Replication.Heartbeat = 250 * time.Millisecond
	c.Replication.StreamMaxAge = 48 * time.Hour
	c.Replication.StreamMaxBytes = 1536 << 10
	c.Replication.Batch = 7
	c.Replication.LogMode = LogModeStream
	c.Replication.MaxHold = 90 * time.Minute
	c.Conflicts.Retention = 3
	c.Conflicts.MaxAge = time.Nanosecond
	c.Sessions.DefaultWait = time.Millisecond
	c.Sessions.MaxWait = 2 * time.Millisecond
	c.Log.Level = "debug"
	c.Log.Format = "json"
	c.Rules = []rules.Spec{
		{Name: "yes", Match: "key == \"a: b #c\" &&\n  true", Strategy: "home_region", Home: `'123'`, HomeMode: "reject", Fallback: "siblings"},
		{Name: "- dash", Match: `  key startsWith "x: 'y'"`, Strategy: "custom", Merge: `{"a": 1}`, OnRead: `{"n": len(siblings)}`, Resolver: "123"},
		{Name: "~", Match: "true", Strategy: "custom", Select: "version.hlc * 1e3"},
	}
	order := []string{"true", "us-east", "null", "123"}
	c.SetRegionOrder(order)
	c.Complete()
	if err := c.Validate(); err != nil {
		t.Fatalf("the test's config is invalid: %v", err)
	}
	if len(c.Topology.Order) != 0 {
		t.Fatal("topology.order set: the region order would not be tested")
	}
	roundTrip(t, c, order)

	// topology.order, when set, is the order whatever the mapping's.
	c.Topology = Topology{Kind: TopologyCircular, Order: []string{"123", "us-east", "true", "null"}}
	roundTrip(t, c, c.Topology.Order)
}
