package testbed

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/geogate/geogate/topology"
)

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
	dep, err := startInProcess(ctx, sc, t.TempDir(), net, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dep.close()
	api, err := newAPIClient(dep.urls(), nil, 5*time.Second, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer api.close()
	plan, err := topology.New(sc.Regions, sc.Topology)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{sc: sc, log: log}
	if err := r.waitReady(ctx, api, plan); err != nil {
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
	if _, _, err := api.put(ctx, "b", "k", []byte(`{"w":"1"}`)); err != nil {
		t.Fatal(err)
	}
	meta, err := api.meta(ctx, "b", "k")
	if err != nil || len(meta.Versions) != 1 {
		t.Fatalf("meta = %+v (%v)", meta, err)
	}
	if w := time.UnixMilli(meta.Versions[0].HLC.Wall); w.Before(before.Add(skew - time.Minute)) {
		t.Fatalf("write at b has HLC %s; want about %s ahead of %s", w, skew, before)
	}

	if err := dep.kill(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if api.healthy(ctx, "a") {
		t.Fatal("a still serves after kill")
	}
	if err := dep.restart(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !api.healthy(ctx, "a") {
		t.Fatal("a does not serve after restart")
	}
	states, err := dep.finalStates(ctx)
	if err != nil || len(states) != 2 {
		t.Fatalf("final states: %v (%d)", err, len(states))
	}
}
