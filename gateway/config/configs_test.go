package config

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestShippedConfigs loads every region config in configs/ (the files named
// after a region: local, us-east, eu-west, ap-south) with no environment and
// no flags, and checks the 3-region files describe one deployment.
func TestShippedConfigs(t *testing.T) {
	dir := filepath.Join("..", "..", "configs")
	ports := map[string][2]int{
		"local": {7100, 7200}, "us-east": {7101, 7201}, "eu-west": {7102, 7202}, "ap-south": {7103, 7203},
	}
	deployment := []string{"us-east", "eu-west", "ap-south"}
	loaded := map[string]*Config{}
	for _, name := range slices.Sorted(maps.Keys(ports)) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".yaml")
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("shipped config missing: %v", err)
			}
			c, err := Load(path, nil, nil)
			if err != nil {
				t.Fatalf("Load(%s): %v", path, err)
			}
			p := ports[name]
			checks := []struct{ what, got, want string }{
				{"region", c.Region, name},
				{"data_dir", c.DataDir, "./data/" + name},
				{"http.listen", c.HTTP.Listen, fmt.Sprintf("127.0.0.1:%d", p[0])},
				{"nats.listen", c.NATS.Listen, fmt.Sprintf("127.0.0.1:%d", p[1])},
				{"own http URL", c.Regions[name].HTTP, fmt.Sprintf("http://127.0.0.1:%d", p[0])},
				{"own nats URL", c.Regions[name].NATS, fmt.Sprintf("nats://127.0.0.1:%d", p[1])},
				{"nats.embedded", fmt.Sprint(c.NATS.Embedded), "true"},
				{"topology.kind", c.Topology.Kind, TopologyAllToAll},
			}
			for _, ck := range checks {
				if ck.got != ck.want {
					t.Errorf("%s = %q, want %q", ck.what, ck.got, ck.want)
				}
			}
			if name != "local" {
				if got := c.Order(); !slices.Equal(got, deployment) {
					t.Errorf("Order() = %v, want %v", got, deployment)
				}
			}
			loaded[name] = c
		})
	}
	for _, name := range deployment[1:] {
		a, b := loaded[deployment[0]], loaded[name]
		if a == nil || b == nil {
			continue
		}
		if !maps.Equal(a.Regions, b.Regions) || a.Topology.Hub != b.Topology.Hub ||
			!slices.Equal(a.Order(), b.Order()) || fmt.Sprint(a.Rules) != fmt.Sprint(b.Rules) {
			t.Errorf("%s.yaml and %s.yaml describe different deployments", deployment[0], name)
		}
	}

	// Each shipped file still loads when the operator switches topology.
	for _, kind := range []string{TopologyStar, TopologyCircular} {
		path := filepath.Join(dir, "eu-west.yaml")
		if _, err := Load(path, []string{"GEOGATE_TOPOLOGY__KIND=" + kind}, nil); err != nil {
			t.Errorf("eu-west.yaml with topology %s: %v", kind, err)
		}
	}

	// Every other YAML file there that looks like a region config loads.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".yaml")
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") || ports[name] != [2]int{} {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "\nregion:") && !strings.HasPrefix(string(b), "region:") {
			continue // a rule set or scenario, not a region config
		}
		if _, err := Load(filepath.Join(dir, e.Name()), nil, nil); err != nil {
			t.Errorf("configs/%s: %v", e.Name(), err)
		}
	}
}
