package testbed

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/topology"
)

// TestRegionConfigLoads checks that the config process mode writes is one
// `geogate serve` accepts, with the peers' NATS at the link proxies.
func TestRegionConfigLoads(t *testing.T) {
	sc, err := Parse([]byte(`
regions: [us-east, eu-west, ap-south]
topology: {kind: circular, order: [us-east, ap-south, eu-west]}
rules:
  - {name: carts, match: 'key startsWith "cart/"', strategy: siblings}
  - {name: default, match: 'true', strategy: lww}
sync: true
workload: {rate: 1, keys: 1}
duration: 1s
`), false)
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := map[string]string{"us-east": "127.0.0.1:7001", "eu-west": "127.0.0.1:7002", "ap-south": "127.0.0.1:7003"}
	peerNATS := map[string]string{"us-east": "127.0.0.1:8001", "eu-west": "127.0.0.1:9999", "ap-south": "127.0.0.1:8003"}
	dir := t.TempDir()
	b, err := regionConfig(sc, "ap-south", httpAddr, peerNATS, "127.0.0.1:8003", filepath.Join(dir, "ap-south"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ap-south.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatalf("geogate refuses the generated config: %v\n%s", err, b)
	}
	switch {
	case cfg.Region != "ap-south" || cfg.HTTP.Listen != "127.0.0.1:7003" || cfg.NATS.Listen != "127.0.0.1:8003" || !cfg.NATS.Embedded:
		t.Errorf("region/listeners wrong: %+v %+v %+v", cfg.Region, cfg.HTTP, cfg.NATS)
	case cfg.Regions["eu-west"].NATS != "nats://127.0.0.1:9999":
		t.Errorf("eu-west's NATS = %q, want the proxy address", cfg.Regions["eu-west"].NATS)
	case !slices.Equal(cfg.Order(), []string{"us-east", "ap-south", "eu-west"}):
		t.Errorf("order = %v", cfg.Order())
	case len(cfg.Rules) != 2 || cfg.Rules[0].Name != "carts" || !cfg.Durability.Sync:
		t.Errorf("rules %+v sync %v", cfg.Rules, cfg.Durability.Sync)
	}
}

// TestInProcessFaults checks the in-process deployment's fault hooks
// against real regions: a skewed clock reaches the HLC of a write, and a
// killed region stops serving until restarted on its data.
func TestInProcessFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two regions; skipped with -short")
	}
	sc, err := Parse([]byte("regions: [a, b]\nworkload: {rate: 1, keys: 1}\nduration: 1s\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	net := newNetwork(sc.Links, 1, log)
	defer net.close()
	dep, err := startInProcess(ctx, sc, t.TempDir(), net, log)
	if err != nil {
		t.Fatal(err)
	}
	defer dep.close()
	client := newAPIClient(dep.urls(), 5*time.Second, 2)
	defer client.close()
	plan, err := topology.New(sc.Regions, sc.Topology)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{sc: sc, log: log}
	if err := r.waitReady(ctx, client, plan); err != nil {
		t.Fatal(err)
	}
	// Both links dialled through the network's proxies.
	if got := net.names(); !slices.Equal(got, []string{"a->b", "b->a"}) {
		t.Fatalf("links through the WAN = %v", got)
	}

	const skew = time.Hour
	if err := dep.setSkew("b", skew); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if _, err := client.put(ctx, "b", "k", []byte(`{"w":"1"}`)); err != nil {
		t.Fatal(err)
	}
	_, _, body, err := client.do(ctx, "GET", "b", "/v1/kv/k?meta=true", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Versions []struct {
			HLC struct {
				W int64 `json:"w"`
			} `json:"hlc"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(body, &meta); err != nil || len(meta.Versions) != 1 {
		t.Fatalf("meta = %s (%v)", body, err)
	}
	if w := time.UnixMilli(meta.Versions[0].HLC.W); w.Before(before.Add(skew - time.Minute)) {
		t.Fatalf("write at b has HLC %s; want about %s ahead of %s", w, skew, before)
	}

	if err := dep.kill(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if client.healthy(ctx, "a") {
		t.Fatal("a still serves after kill")
	}
	if err := dep.restart(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !client.healthy(ctx, "a") {
		t.Fatal("a does not serve after restart")
	}
	states, err := dep.finalStates(ctx)
	if err != nil || len(states) != 2 {
		t.Fatalf("final states: %v (%d)", err, len(states))
	}
}
