package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/store"
)

// deployment is a running set of regions the testbed drives: in this
// process or as child processes.
type deployment interface {
	// urls returns each node's HTTP API base URL (a region of one node is
	// a node named after it); they do not change across kills and
	// restarts.
	urls() map[string]string
	// kill stops a node hard; restart starts it again on the same data
	// directory and addresses.
	kill(ctx context.Context, region string) error
	restart(ctx context.Context, region string) error
	// wipe deletes a killed region's data directory.
	wipe(region string) error
	// tamper damages a killed region's stored records (store.Tamper).
	tamper(region string, keys int, seed uint64) (store.TamperReport, error)
	// restore fills a killed, wiped region's data directory from a
	// snapshot file, as `geogate restore` does.
	restore(ctx context.Context, region, file string) error
	// freeze stops a node's process (SIGSTOP) until thaw resumes it
	// (process mode only).
	freeze(node string) error
	thaw(node string) error
	// setSkew moves a region's physical clock by d from the wall clock.
	setSkew(region string, d time.Duration) error
	// finalStates reads every region's data after quiescence; the regions
	// may be stopped by it.
	finalStates(ctx context.Context) ([]RegionState, error)
	// close stops every region. Idempotent.
	close() error
}

// conflictLogLimit is how many conflict-log entries a region's final state
// reads (the store keeps 100000 by default).
const conflictLogLimit = 1 << 20

// inProcess runs the regions with gateway.StartCluster in this process.
// Every region's physical clock is the wall clock plus an atomic offset
// (clock skew faults), and every inbound link dials through the network.
//
// A kill here is a clean close of the node (Node.Close: in-flight requests
// finish, the store flushes: Cluster.Stop), and the restart is
// Cluster.StartRegion on the same
// data and ports: it exercises downtime and recovery, not crash recovery.
// Use process mode for SIGKILL.
type inProcess struct {
	cluster *gateway.Cluster
	skews   map[string]*atomic.Int64
	regions []string
	base    map[string]string
	// dataDirs remembers the data directory of each region killed.
	dataDirs map[string]string
}

var _ deployment = (*inProcess)(nil)

func startInProcess(ctx context.Context, sc *Scenario, dataDir string, net *network, log *slog.Logger, sec *deploy.Material) (*inProcess, error) {
	d := &inProcess{skews: map[string]*atomic.Int64{}, regions: sc.Regions}
	for _, r := range sc.Regions {
		d.skews[r] = &atomic.Int64{}
	}
	spec := clusterSpec(sc, dataDir, sec)
	spec.Options = func(region string) gateway.Options {
		skew := d.skews[region]
		return gateway.Options{
			Logger: log, // the node adds its region
			Clock:  func() time.Time { return time.Now().Add(time.Duration(skew.Load()) * time.Millisecond) },
			Dialer: func(peer string) nats.CustomDialer { return net.dialer(peer, region) },
		}
	}
	c, err := gateway.StartCluster(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	d.cluster = c
	d.dataDirs = map[string]string{}
	d.base = map[string]string{}
	for _, n := range c.Nodes() {
		d.base[n.Config().Region] = n.HTTPURL()
	}
	return d, nil
}

func (d *inProcess) urls() map[string]string { return maps.Clone(d.base) }

func (d *inProcess) kill(_ context.Context, region string) error {
	n := d.cluster.Node(region)
	if n == nil {
		return fmt.Errorf("no running region %q", region)
	}
	d.dataDirs[region] = n.Config().DataDir
	return d.cluster.Stop(region)
}

// wipe deletes a stopped region's data (kill first).
func (d *inProcess) wipe(region string) error {
	dir, ok := d.dataDirs[region]
	if !ok || d.cluster.Node(region) != nil {
		return fmt.Errorf("wipe %s: kill the region first", region)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("wipe %s: %w", region, err)
	}
	return nil
}

func (d *inProcess) tamper(region string, keys int, seed uint64) (store.TamperReport, error) {
	dir, ok := d.dataDirs[region]
	if !ok || d.cluster.Node(region) != nil {
		return store.TamperReport{}, fmt.Errorf("tamper %s: kill the region first", region)
	}
	return store.Tamper(filepath.Join(dir, "store"), keys, seed)
}

// restore runs store.Restore, the code of `geogate restore`, on the
// region's store directory.
func (d *inProcess) restore(ctx context.Context, region, file string) error {
	dir, ok := d.dataDirs[region]
	if !ok || d.cluster.Node(region) != nil {
		return fmt.Errorf("restore %s: kill the region first", region)
	}
	_, err := store.Restore(ctx, store.Options{Dir: filepath.Join(dir, "store"), Region: region, SmallFootprint: true,
		Clock: conflict.NewClock(func() time.Time { return time.Now().Add(time.Duration(d.skews[region].Load()) * time.Millisecond) }, 0)}, file)
	return err
}

func (d *inProcess) restart(ctx context.Context, region string) error {
	return d.cluster.StartRegion(ctx, region)
}

func (d *inProcess) freeze(string) error {
	return errors.New("freezing a region needs its own process: run the scenario in mode process")
}

func (d *inProcess) thaw(string) error { return d.freeze("") }

func (d *inProcess) setSkew(region string, by time.Duration) error {
	s, ok := d.skews[region]
	if !ok {
		return fmt.Errorf("no region %q", region)
	}
	s.Store(by.Milliseconds())
	return nil
}

func (d *inProcess) finalStates(context.Context) ([]RegionState, error) {
	var out []RegionState
	for _, r := range d.regions {
		n := d.cluster.Node(r)
		if n == nil {
			return nil, fmt.Errorf("no region %q", r)
		}
		st, err := readState(r, n.Store())
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// readState reads a store's digest, records and conflict log.
func readState(region string, s *store.Store) (RegionState, error) {
	st := RegionState{Region: region, Records: map[string]conflict.Record{}}
	var err error
	if st.Digest, _, err = s.Digest(); err != nil {
		return st, fmt.Errorf("digest %s: %w", region, err)
	}
	if err := s.Scan(func(key string, rec conflict.Record) bool { st.Records[key] = rec; return true }); err != nil {
		return st, fmt.Errorf("scan %s: %w", region, err)
	}
	if st.Conflicts, err = s.Conflicts("", conflictLogLimit); err != nil {
		return st, fmt.Errorf("conflict log %s: %w", region, err)
	}
	return st, nil
}

func (d *inProcess) close() error {
	if d.cluster == nil {
		return nil
	}
	return d.cluster.Close()
}
