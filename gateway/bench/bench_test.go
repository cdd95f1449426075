package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestBenchSmoke runs every measurement at a tiny size, so `geogate bench`
// keeps working; the figures of a real run come from `geogate bench`.
// GEOGATE_BENCH=1 runs the full-size benchmark here instead.
func TestBenchSmoke(t *testing.T) {
	// The rules part has its own smoke test (TestRuleOverheadSmoke).
	o := Options{Dir: t.TempDir(), Writes: 150, Events: 500, Backlog: 1000, Rate: 200, Lag: time.Second, Clients: 4,
		Only: []string{"writes", "replication"}}
	figures, ratios := 9, 5
	if os.Getenv("GEOGATE_BENCH") != "" {
		o = Options{Dir: t.TempDir(), Progress: os.Stdout}
		figures, ratios = 34, 13
	}
	smoke(t, o, figures, ratios)
}

// TestNodesBenchSmoke runs the regions-of-several-nodes part at a tiny
// size: every figure is measured (rates and p99s above zero).
func TestNodesBenchSmoke(t *testing.T) {
	o := Options{Dir: t.TempDir(), Writes: 100, Clients: 4, Only: []string{"nodes"}}
	smoke(t, o, 6, 2)
}

// TestLifecycleBenchSmoke runs the lifecycle part at a tiny size.
func TestLifecycleBenchSmoke(t *testing.T) {
	o := Options{Dir: t.TempDir(), Writes: 100, Clients: 4, SnapshotRecords: 2000, Only: []string{"lifecycle"}}
	smoke(t, o, 3, 2)
}

// TestSecurityBenchSmoke runs the secured pair at a tiny size.
func TestSecurityBenchSmoke(t *testing.T) {
	o := Options{Dir: t.TempDir(), Writes: 100, Events: 500, Rate: 200, Lag: time.Second, Clients: 4, Only: []string{"security"}}
	smoke(t, o, 8, 3)
}

// smoke runs o and checks the report has figures figures, every one
// measured (above zero), and ratios ratios, which it logs.
func smoke(t *testing.T, o Options, figures, ratios int) {
	t.Helper()
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Figures) != figures || len(rep.Ratios) != ratios {
		t.Fatalf("report has %d figures and %d ratios: %+v", len(rep.Figures), len(rep.Ratios), rep)
	}
	for _, f := range rep.Figures {
		if !(f.Value > 0) {
			t.Fatalf("figure %q is %v", f.Name, f.Value)
		}
	}
	for _, r := range rep.Ratios {
		t.Logf("%s = %.2f (target %s, met %v)", r.Name, r.Value, r.Target, r.Met)
	}
}
