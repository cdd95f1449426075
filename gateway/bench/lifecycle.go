package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/wait"
)

// aeBenchInterval is the anti-entropy interval of the "with" deployment:
// sixty times the default, so that a round (a comparison of the digest
// trees with the peer, down to the buckets that differ, which under a
// steady write load is most of them) runs every second of the measurement.
const aeBenchInterval = time.Second

// lifecycle measures the region lifecycle's costs, in one run:
//
//   - anti-entropy's steady cost: HTTP PUT throughput at r1 of a 2-region
//     deployment comparing its records with r2 every aeBenchInterval,
//     against the same deployment with anti-entropy off, alternating for
//     benchRounds rounds (the median of the per-round ratios). The digest
//     tree the writer keeps is on in both (store.Open always keeps it; its
//     cost on the write path is what `GEOGATE_BENCH=1 go test ./store -run
//     Ratios` measures against raw Badger);
//   - snapshot transfer: o.SnapshotRecords records written at r1 while r2's
//     link from r1 is paused, then r2 re-seeds from r1 (a snapshot over
//     NATS on loopback, merged into r2's empty store): records per second
//     from the request to the merged snapshot's watermarks.
func lifecycle(ctx context.Context, o *Options, rep *Report) error {
	spec := func(name string, ae time.Duration) gateway.ClusterSpec {
		return gateway.ClusterSpec{
			Regions: []string{"r1", "r2"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: filepath.Join(o.Dir, name), Sync: true,
			Tune:    func(c *config.Config) { c.AntiEntropy.Interval = ae },
			Options: func(string) gateway.Options { return gateway.Options{Logger: o.Logger} },
		}
	}
	off, err := gateway.StartCluster(ctx, spec("ae-off", 0))
	if err != nil {
		return err
	}
	defer off.Close()
	on, err := gateway.StartCluster(ctx, spec("ae-on", aeBenchInterval))
	if err != nil {
		return err
	}
	defer on.Close()
	n := 3 * o.Writes
	offRate, onRate, aeRatio, err := alternate(benchRounds,
		func(round int) (float64, error) {
			return httpPuts(ctx, off.Node("r1").HTTPURL(), fmt.Sprintf("off%d", round), n, o.Clients)
		},
		func(round int) (float64, error) {
			return httpPuts(ctx, on.Node("r1").HTTPURL(), fmt.Sprintf("on%d", round), n, o.Clients)
		})
	if err != nil {
		return err
	}
	rounds := on.Node("r1").Status().Lifecycle.AntiEntropy.Rounds
	off.Close()
	on.Close()

	rate, err := snapshotTransfer(ctx, o)
	if err != nil {
		return err
	}
	rep.add(o, fmt.Sprintf("HTTP PUT x%d, anti-entropy off", o.Clients), offRate, "writes/s")
	rep.add(o, fmt.Sprintf("HTTP PUT x%d, anti-entropy every %s (%d rounds)", o.Clients, aeBenchInterval, rounds), onRate, "writes/s")
	rep.add(o, fmt.Sprintf("snapshot transfer r1 -> r2 (%d records, loopback)", o.SnapshotRecords), rate, "records/s")
	rep.ratio(o, "writes with anti-entropy / without", aeRatio, ">= 0.95", aeRatio >= 0.95)
	rep.ratio(o, "snapshot transfer / 50k records/s", rate/50000, ">= 1", rate >= 50000)
	return nil
}

// snapshotTransfer writes o.SnapshotRecords records at r1 while r2 does
// not pull them, then times r2's re-seed from r1.
func snapshotTransfer(ctx context.Context, o *Options) (float64, error) {
	c, err := gateway.StartCluster(ctx, gateway.ClusterSpec{
		Regions: []string{"r1", "r2"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: filepath.Join(o.Dir, "snapshot"), Sync: true,
		Tune: func(c *config.Config) {
			c.AntiEntropy.Interval = 0
			c.Replication.ReseedAfter = time.Hour // only the forced re-seed
			if c.Region == "r1" {
				c.Durability.Sync = false // loading, not measured
			}
		},
		Options: func(string) gateway.Options { return gateway.Options{Logger: o.Logger} },
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r1, r2 := c.Node("r1"), c.Node("r2")
	r2.PauseLink("r1")
	if _, err := storeWrites(ctx, r1.Store(), o.SnapshotRecords, 16, "snap"); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := r2.Reseed("r1"); err != nil {
		return 0, err
	}
	want := r1.Store().Seq()
	if err := wait.Until(ctx, 10*time.Minute, "the re-seed", func() bool { return r2.Store().Applied()[r1.Store().Actor()] >= want }); err != nil {
		return 0, err
	}
	secs := time.Since(start).Seconds()
	if _, ok, _ := r2.Store().Get(fmt.Sprintf("snap-%d", o.SnapshotRecords)); !ok {
		return 0, fmt.Errorf("r2 lacks the last record after the re-seed")
	}
	return float64(o.SnapshotRecords) / secs, nil
}
