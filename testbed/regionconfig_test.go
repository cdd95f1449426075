package testbed

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/topology"
)

// roundTrip writes c as process mode does (Config.MarshalYAML), loads the
// file with config.Load and fails the test unless every key came back (the
// loaded config writes the same file) and the regions are in wantOrder.
func roundTrip(t *testing.T, c *config.Config, wantOrder []string) *config.Config {
	t.Helper()
	written, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), c.Region+".yaml")
	if err := os.WriteFile(path, written, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatalf("config.Load refuses the generated file: %v\n%s", err, written)
	}
	again, err := yaml.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(written) {
		t.Errorf("the loaded config differs from the one written:\nwrote:\n%s\nloaded:\n%s", written, again)
	}
	if !slices.Equal(got.Order(), wantOrder) {
		t.Errorf("loaded Order() = %v, want %v", got.Order(), wantOrder)
	}
	return got
}

// scenarioAddrs gives every node distinct fake addresses, and node of
// region the address of a distinct fake proxy for each server of each of
// its inbound links.
func scenarioAddrs(sc *Scenario, plan *topology.Plan, region, node string) regionAddrs {
	a := regionAddrs{HTTP: map[string]string{}, PeerNATS: map[string][]string{}}
	for i, r := range sc.Regions {
		for k, n := range sc.NodeNames(r) {
			na := nodeAddrs{HTTP: fmt.Sprintf("127.0.0.1:%d", 7001+10*i+k), NATS: fmt.Sprintf("127.0.0.1:%d", 8001+10*i+k),
				Cluster: fmt.Sprintf("127.0.0.1:%d", 6001+10*i+k)}
			if k == 0 {
				a.HTTP[r] = na.HTTP
			}
			a.PeerNATS[r] = append(a.PeerNATS[r], na.NATS)
			if n == node {
				a.NATSListen, a.HTTPListen = na.NATS, na.HTTP
			}
			if r == region && sc.NodesIn(r) > 1 {
				if a.Nodes == nil {
					a.Nodes = map[string]nodeAddrs{}
				}
				a.Nodes[n] = na
			}
		}
	}
	for i, peer := range sc.Regions {
		if peer != region && plan.HasLink(peer, region) {
			for k := range a.PeerNATS[peer] {
				a.PeerNATS[peer][k] = fmt.Sprintf("127.0.0.1:%d", 9001+10*i+k)
			}
		}
	}
	return a
}

// TestRegionConfigRoundTrip builds every region's process-mode config for
// each shipped scenario (and two inline ones: a circular ring without
// topology.order, and rules whose strings need quoting), writes it as YAML
// and loads it back with config.Load: every key must come back equal, the
// region order must be the scenario's (or the ring's), and each peer's
// NATS must be the proxy of the link into the region.
func TestRegionConfigRoundTrip(t *testing.T) {
	type scenario struct {
		name string
		sc   *Scenario
	}
	var cases []scenario
	for _, file := range scenarioFiles(t) {
		sc, err := Load(file, false)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, scenario{strings.TrimSuffix(filepath.Base(file), ".yaml"), sc})
	}
	for name, src := range map[string]string{
		"inline-ring-no-order": `
mode: process
regions: [us-east, eu-west, ap-south]
topology: {kind: circular}
rules:
  - {name: "carts: #1", match: 'key startsWith "cart/" && key != ''x''', strategy: siblings}
  - {name: profiles, match: "key startsWith \"user/\"\n  || key == \"null\"", strategy: home_region, home: '"eu-west"', home_mode: redirect, fallback: lww}
  - name: merge
    match: 'key matches "^m/"'
    strategy: custom
    merge: '{"merged": true}'
    resolver: ap-south
  - {name: "true", match: 'true', strategy: lww}
sync: true
workload: {rate: 1, keys: 1}
duration: 1s
`,
	} {
		sc, err := Parse([]byte(src), false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cases = append(cases, scenario{name, sc})
	}

	var withRules, circular int
	for _, tc := range cases {
		sc := tc.sc
		if len(sc.Rules) > 0 {
			withRules++
		}
		if sc.Topology.Kind == topology.Circular {
			circular++
		}
		t.Run(tc.name, func(t *testing.T) {
			plan, err := topology.New(sc.Regions, sc.Topology)
			if err != nil {
				t.Fatal(err)
			}
			wantOrder := sc.Regions
			if len(sc.Topology.Order) > 0 {
				wantOrder = sc.Topology.Order
			}
			wantRules := sc.Rules
			if len(wantRules) == 0 {
				wantRules = config.DefaultRules()
			}
			sec, err := securityMaterial(sc, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range sc.Regions {
				for _, node := range sc.NodeNames(r) {
					checkNodeConfig(t, sc, plan, r, node, sec, wantOrder, wantRules)
				}
			}
		})
	}
	if withRules == 0 || circular == 0 {
		t.Errorf("the round trip covered %d scenarios with rules and %d circular ones; want both", withRules, circular)
	}
}

// TestInvalidRegionConfigFailsBeforeStart runs process-mode scenarios that
// the scenario checks accept but no region's config can hold: Run must fail
// naming the region and the key, without writing a config file or running
// the binary (a script that would leave a marker file).
func TestInvalidRegionConfigFailsBeforeStart(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	bin := filepath.Join(dir, "geogate")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\ntouch '"+marker+"'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const head = "mode: process\nregions: [us-east, eu-west]\nworkload: {rate: 1, keys: 1}\nduration: 1s\nrules:\n"
	for _, tc := range []struct {
		name, rules, key string
	}{
		{"resolver not a region", "  - {name: m, match: 'true', strategy: custom, merge: 'siblings[0]', resolver: mars}\n", "rules[0].resolver"},
		{"home region without home", "  - {name: h, match: 'true', strategy: home_region}\n", "rules[0].home"},
		{"bad home mode", "  - {name: d, match: 'true', strategy: lww}\n  - {name: h, match: 'true', strategy: home_region, home: '\"us-east\"', home_mode: bounce}\n", "rules[1].home_mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := Parse([]byte(head+tc.rules), false)
			if err != nil {
				t.Fatalf("the scenario itself must be valid: %v", err)
			}
			data := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err = Run(ctx, sc, RunOptions{Binary: bin, DataDir: data, KeepData: true})
			if _, serr := os.Stat(marker); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("the binary ran (marker: %v)", serr)
			}
			if entries, _ := os.ReadDir(data); len(entries) > 0 {
				t.Errorf("data dir not empty after the refusal: %v", entries)
			}
			var fe *config.FieldError
			switch {
			case err == nil:
				t.Fatal("Run accepted the scenario")
			case !errors.As(err, &fe) || fe.Key != tc.key:
				t.Fatalf("err = %v; want a config.FieldError for %s", err, tc.key)
			case !strings.Contains(err.Error(), "region us-east") || !strings.Contains(err.Error(), tc.key):
				t.Fatalf("err = %q; want it to name region us-east and key %s", err, tc.key)
			}
		})
	}
}

// TestChildEnvDropsGeogateVariables checks a region process does not
// inherit GEOGATE_* variables (they would override its config file) and
// keeps everything else, in order, without touching the caller's slice.
func TestChildEnvDropsGeogateVariables(t *testing.T) {
	environ := []string{"PATH=/bin", config.EnvPrefix + "HTTP__LISTEN=0.0.0.0:1", "HOME=/root", config.EnvConfigFile + "=/x.yaml", "GEOGATEX=kept"}
	before := slices.Clone(environ)
	got := childEnv(environ)
	if want := []string{"PATH=/bin", "HOME=/root", "GEOGATEX=kept"}; !slices.Equal(got, want) {
		t.Errorf("childEnv = %v, want %v", got, want)
	}
	if !slices.Equal(environ, before) {
		t.Errorf("childEnv changed its argument: %v", environ)
	}
}

// checkNodeConfig builds node's config as process mode does, round-trips
// it through its YAML and checks what the process is told.
func checkNodeConfig(t *testing.T, sc *Scenario, plan *topology.Plan, r, node string, sec *deploy.Material, wantOrder []string, wantRules []rules.Spec) {
	t.Helper()
	httpScheme, natsScheme := schemes(sec)
	addrs := scenarioAddrs(sc, plan, r, node)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, node)
	c, err := nodeConfig(sc, r, node, addrs, dir, sec)
	if err != nil {
		t.Fatal(err)
	}
	got := roundTrip(t, c, wantOrder)
	// The in-process mode runs c itself: both modes must order
	// the regions alike (the default merge resolver is the first).
	if !slices.Equal(c.Order(), got.Order()) {
		t.Errorf("%s: in process the regions are in order %v, in process mode %v", node, c.Order(), got.Order())
	}
	// What the process is told, beyond "equal to what we built".
	switch {
	case got.Region != r || got.Node != node || got.DataDir != dataDir || got.NATS.StoreDir != filepath.Join(dataDir, "nats"):
		t.Errorf("%s: region %q node %q data_dir %q store_dir %q", node, got.Region, got.Node, got.DataDir, got.NATS.StoreDir)
	case got.HTTP.Listen != addrs.HTTPListen || got.NATS.Listen != addrs.NATSListen || !got.NATS.Embedded || got.NATS.URL != "":
		t.Errorf("%s: http %+v nats %+v", node, got.HTTP, got.NATS)
	case got.Durability.Sync != sc.Sync || got.Log.Level != "info":
		t.Errorf("%s: durability.sync %v log.level %q", node, got.Durability.Sync, got.Log.Level)
	case got.Topology.Kind != string(sc.Topology.Kind) || got.Topology.Hub != sc.Topology.Hub:
		t.Errorf("%s: topology %+v, scenario %+v", node, got.Topology, sc.Topology)
	case !reflect.DeepEqual(got.Rules, wantRules):
		t.Errorf("%s: rules %+v, want %+v", node, got.Rules, wantRules)
	case sc.Security != (got.HTTP.TLS.CertFile != "" && got.Auth.Enabled && got.NATS.TLS.CAFile != "" && got.NATS.NKeySeedFile != "" && got.NATSAuth()):
		t.Errorf("%s: security %v, config http %+v auth %+v nats %+v", node, sc.Security, got.HTTP.TLS, got.Auth, got.NATS)
	}
	// A node of a region of several: its region's nodes, its cluster
	// listener and the log's replicas, as init writes them.
	if n := sc.NodesIn(r); n > 1 {
		if !got.Clustered() || !slices.Equal(got.NodeNames(), sc.NodeNames(r)) || got.NATS.ClusterListen != addrs.Nodes[node].Cluster ||
			got.NATS.Replicas != min(n, config.MaxNATSReplicas) {
			t.Errorf("%s: nodes %v cluster_listen %q replicas %d", node, got.NodeNames(), got.NATS.ClusterListen, got.NATS.Replicas)
		}
		for name, a := range addrs.Nodes {
			want := config.NodeEndpoints{HTTP: httpScheme + "://" + a.HTTP, NATS: natsScheme + "://" + a.NATS, Cluster: natsScheme + "://" + a.Cluster}
			if got.Nodes[name] != want {
				t.Errorf("%s: nodes.%s = %+v, want %+v", node, name, got.Nodes[name], want)
			}
		}
	} else if got.Clustered() {
		t.Errorf("%s: a region of one node has nodes %v", node, got.NodeNames())
	}
	for _, peer := range sc.Regions {
		var nats []string
		for _, a := range addrs.PeerNATS[peer] {
			nats = append(nats, natsScheme+"://"+a)
		}
		want := config.Endpoints{HTTP: httpScheme + "://" + addrs.HTTP[peer], NATS: strings.Join(nats, ",")}
		if sec != nil {
			want.NKey = sec.NKeys[peer]
		}
		if got.Regions[peer] != want {
			t.Errorf("%s: regions.%s = %+v, want %+v", node, peer, got.Regions[peer], want)
		}
		if peer != r && plan.HasLink(peer, r) && !strings.Contains(got.Regions[peer].NATS, fmt.Sprintf(":%d", 9001+10*slices.Index(sc.Regions, peer))) {
			t.Errorf("%s: regions.%s.nats = %q, want the proxies of link %s->%s", node, peer, got.Regions[peer].NATS, peer, r)
		}
	}
}

// TestNodeConfigMatchesDeployment: the configs process mode gives the
// nodes of a secured scenario of regions of three nodes agree with what
// `geogate init --nodes 3` writes for the same regions (deploy.Write) in
// everything but addresses, paths and what the scenario sets on purpose
// (its sync and log level): the testbed tests what operators deploy.
func TestNodeConfigMatchesDeployment(t *testing.T) {
	sc, err := Parse([]byte(`
mode: process
regions: [us-east, eu-west]
nodes: 3
security: true
topology: {kind: all-to-all}
sync: true
workload: {rate: 1, keys: 1}
duration: 1s
`), false)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := topology.New(sc.Regions, sc.Topology)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := securityMaterial(sc, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	deployDir := filepath.Join(t.TempDir(), "deploy")
	written, err := deploy.Write(deployDir, deploy.Spec{Regions: sc.Regions, Nodes: 3, Topology: config.Topology{Kind: "all-to-all"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 6 {
		t.Fatalf("deploy.Write wrote %d nodes, want 6", len(written))
	}
	// What must agree, as a comparable summary of a config.
	type summary struct {
		Region, Node                   string
		Nodes, Regions                 []string
		Replicas                       int
		Election                       config.Election
		RegionLog                      config.RegionLog
		NATSSync                       string
		DurabilitySync                 bool
		Topology                       string
		HTTPTLS, NATSTLS, Tokens, NKey bool
		TokenKeys, Clustered           bool
	}
	sum := func(c *config.Config) summary {
		s := summary{Region: c.Region, Node: c.Node, Replicas: c.NATS.Replicas, Election: c.Election, RegionLog: c.RegionLog,
			NATSSync: c.NATS.Sync, DurabilitySync: c.Durability.Sync, Topology: c.Topology.Kind,
			HTTPTLS: c.HTTP.TLS.CertFile != "", NATSTLS: c.NATS.TLS.CertFile != "", Tokens: c.Auth.TokensFile != "",
			NKey: c.NATS.NKeySeedFile != "", TokenKeys: c.Security.TokenKeysFile != "", Clustered: c.NATS.ClusterListen != ""}
		s.Nodes = slices.Sorted(maps.Keys(c.Nodes))
		s.Regions = slices.Sorted(maps.Keys(c.Regions))
		return s
	}
	for _, w := range written {
		want, err := config.Load(w.Config, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", w.Name, err)
		}
		addrs := scenarioAddrs(sc, plan, w.Region, w.Name)
		c, err := nodeConfig(sc, w.Region, w.Name, addrs, t.TempDir(), sec)
		if err != nil {
			t.Fatal(err)
		}
		got := roundTrip(t, c, sc.Regions)
		g, d := sum(got), sum(want)
		if !reflect.DeepEqual(g, d) {
			t.Errorf("%s: the testbed's config differs from geogate init's:\n testbed %+v\n init    %+v", w.Name, g, d)
		}
		// The comparison is of something: a secured node of three.
		if d.Node != w.Name || len(d.Nodes) != 3 || d.Replicas != 3 || !d.HTTPTLS || !d.NATSTLS || !d.Tokens || !d.NKey || !d.TokenKeys ||
			!d.Clustered || d.Election.LeaseTTL == 0 {
			t.Errorf("%s: init's config is not that of a secured node of three: %+v", w.Name, d)
		}
	}
}
