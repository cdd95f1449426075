package testbed

import (
	"github.com/geogate/geogate/testbed/diskfault"

	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// scenarioDir holds the shipped scenarios.
const scenarioDir = "../configs/scenarios"

// shipped are the scenarios the README lists; the test fails if one is
// missing or another appears without being added here.
var shipped = []string{"clock-skew-lww", "disk-full", "disk-lost-restore", "home-region-failover", "kill9-under-load", "region-leader-kill", "region-rejoin-after-retention", "region-split-brain", "ring-partition", "silent-divergence", "star-hub-outage", "wan-3-regions-secure", "wan-3-regions"}

func scenarioFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(scenarioDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".yaml"))
	}
	if !slices.Equal(names, shipped) {
		t.Fatalf("scenarios in %s = %v, want %v", scenarioDir, names, shipped)
	}
	return files
}

// TestShippedScenarios runs the short form of every shipped scenario and
// fails on any checker failure. It takes a minute or two, so -short skips
// it. GEOGATE_TESTBED_LONG=1 runs the full forms instead (many minutes);
// GEOGATE_TESTBED_OUT=DIR keeps each report in DIR/<scenario>.
func TestShippedScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every shipped scenario (a minute or two); skipped with -short")
	}
	long := os.Getenv("GEOGATE_TESTBED_LONG") == "1"
	// The process-mode scenarios share one build of the binary.
	binDir := t.TempDir()
	binary := sync.OnceValues(func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		return BuildBinary(ctx, binDir)
	})
	for _, file := range scenarioFiles(t) {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			sc, err := Load(file, !long)
			if err != nil {
				t.Fatal(err)
			}
			if len(sc.DiskFullRegions()) > 0 {
				if err := diskfault.Supported(t.TempDir()); err != nil {
					t.Skipf("skipped: %v", err)
				}
			}
			opts := RunOptions{OutDir: t.TempDir()}
			if dir := os.Getenv("GEOGATE_TESTBED_OUT"); dir != "" {
				opts.OutDir = filepath.Join(dir, name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), sc.Duration+sc.Quiescence+5*time.Minute)
			defer cancel()
			if sc.Mode == Process {
				if opts.Binary, err = binary(); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := Run(ctx, sc, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s in %s; %d ops, %d acked; report in %s", name, verdict(rep.Pass), rep.Elapsed.Round(time.Millisecond),
				rep.Workload.Ops, rep.Workload.Acked, opts.OutDir)
			for _, c := range rep.Checks {
				t.Logf("  %-12s %s  %s", c.Name, verdict(c.Pass), c.Summary)
				if !c.Pass {
					t.Errorf("check %s failed: %s", c.Name, c.Summary)
					for _, d := range c.Details {
						t.Errorf("    %s", d)
					}
				}
			}
			for _, f := range rep.Faults {
				if f.Err != "" {
					t.Errorf("fault %s %s at %s failed: %s", f.Action, f.Fault, f.At, f.Err)
				}
			}
		})
	}
}

// sabotage breaks the guarantees from outside the gateway: region a takes
// writes while isolated, then loses its disk (killed, data wiped,
// restarted), so the writes it acknowledged before are gone everywhere;
// session reads at b of a's writes cannot see them while a is isolated.
const sabotage = `
name: sabotage
regions: [a, b]
workload: {rate: 60, keys: 50, regions: [a], session_ratio: 0.5, session_wait: 200ms}
faults:
  - {at: 0s, for: 3s, isolate: a}
  - {at: 2s, for: 500ms, kill: a, wipe: true}
duration: 4s
quiescence: 8s
seed: 7
checks:
  sessions: {max_violations: 0}
`

// TestCheckersCatchRealFaults checks that a real run reports real damage:
// the lost-write and session checks must fail on the sabotage scenario.
func TestCheckersCatchRealFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two regions for about 10s; skipped with -short")
	}
	sc, err := Parse([]byte(sabotage), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, sc, RunOptions{OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]CheckResult{}
	for _, c := range rep.Checks {
		verdicts[c.Name] = c
		t.Logf("%-12s %s  %s", c.Name, verdict(c.Pass), c.Summary)
	}
	if rep.Pass {
		t.Fatal("the sabotaged run passed")
	}
	if c := verdicts["lost_writes"]; c.Pass || rep.LostWrites.Lost == 0 {
		t.Errorf("lost_writes = %s (%d lost); want the writes a acknowledged before losing its disk reported lost", verdict(c.Pass), rep.LostWrites.Lost)
	}
	if c := verdicts["sessions"]; c.Pass {
		t.Errorf("sessions passed (%s); want stale reads at b while a was isolated", c.Summary)
	}
	for _, f := range rep.Faults {
		if f.Err != "" {
			t.Errorf("fault %s %s failed: %s", f.Action, f.Fault, f.Err)
		}
	}
}
