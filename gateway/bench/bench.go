// Package bench measures geogate against raw baselines in one run, so the
// figures are ratios that hold on a noisy shared machine: store and HTTP
// writes against raw Badger transactions, replication against raw
// JetStream publish-then-consume, lag at a steady rate, and catch-up after a
// paused link. `geogate bench` runs it; so does TestBenchSmoke, briefly.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/store"
)

// Options sizes a run.
type Options struct {
	// Dir holds the run's data (a temporary directory).
	Dir string
	// Writes is the number of writes in the write benchmarks (default 3000).
	Writes int
	// Events is the number of events in the replication throughput run
	// (default 20000).
	Events int
	// Backlog is the size of the catch-up backlog (default 100000).
	Backlog int
	// Rate and Lag shape the steady-rate lag run: writes per second, for
	// how long (default 1000/s for 5s).
	Rate int
	Lag  time.Duration
	// Clients is the number of concurrent HTTP clients (default 16).
	Clients int
	// SnapshotRecords is the size of the snapshot transferred between two
	// regions (default 200000).
	SnapshotRecords int
	// Only, if non-empty, selects the parts to run: writes, rules,
	// replication, security, nodes (regions of several nodes), lifecycle.
	Only   []string
	Logger *slog.Logger
	// Progress receives one line per finished measurement.
	Progress io.Writer
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Writes, 3000)
	def(&o.Events, 20000)
	def(&o.Backlog, 100000)
	def(&o.Rate, 1000)
	if o.Lag <= 0 {
		o.Lag = 5 * time.Second
	}
	def(&o.Clients, 16)
	def(&o.SnapshotRecords, 200000)
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Figure is one measured rate.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Ratio compares two figures of the same run against a target.
type Ratio struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
}

// Report is a run's figures and the ratios derived from them.
type Report struct {
	Figures []Figure `json:"figures"`
	Ratios  []Ratio  `json:"ratios"`
}

func (r *Report) add(o *Options, name string, v float64, unit string) float64 {
	r.Figures = append(r.Figures, Figure{name, v, unit})
	fmt.Fprintf(o.Progress, "%-52s %12.1f %s\n", name, v, unit)
	return v
}

func (r *Report) ratio(o *Options, name string, v float64, target string, met bool) {
	r.Ratios = append(r.Ratios, Ratio{name, v, target, met})
	mark := "met"
	if !met {
		mark = "MISSED"
	}
	fmt.Fprintf(o.Progress, "ratio %-46s %8.2f  (target %s: %s)\n", name, v, target, mark)
}

// Parts are the measurements Options.Only may select, in the order Run
// runs them.
var Parts = []string{"writes", "rules", "replication", "security", "nodes", "lifecycle"}

// Run performs the selected measurements. A part Only names that is not
// one of Parts is an error, before anything runs.
func Run(ctx context.Context, o Options) (*Report, error) {
	for _, p := range o.Only {
		if !slices.Contains(Parts, p) {
			return nil, fmt.Errorf("no benchmark part %q: the parts are %s", p, strings.Join(Parts, ", "))
		}
	}
	o.defaults()
	rep := &Report{}
	want := func(part string) bool { return len(o.Only) == 0 || slices.Contains(o.Only, part) }
	if want("writes") {
		if err := writes(ctx, &o, rep); err != nil {
			return rep, fmt.Errorf("writes: %w", err)
		}
	}
	if want("rules") {
		if err := RuleOverhead(ctx, o, rep); err != nil {
			return rep, fmt.Errorf("rules: %w", err)
		}
	}
	if want("replication") {
		if err := replication(ctx, &o, rep); err != nil {
			return rep, fmt.Errorf("replication: %w", err)
		}
	}
	if want("security") {
		if err := security(ctx, &o, rep); err != nil {
			return rep, fmt.Errorf("security: %w", err)
		}
	}
	if want("nodes") {
		if err := nodes(ctx, &o, rep); err != nil {
			return rep, fmt.Errorf("nodes: %w", err)
		}
	}
	if want("lifecycle") {
		if err := lifecycle(ctx, &o, rep); err != nil {
			return rep, fmt.Errorf("lifecycle: %w", err)
		}
	}
	return rep, nil
}

// openRaw opens a raw Badger with exactly the options the store uses.
func openRaw(dir string, sync bool) (*badger.DB, error) {
	return badger.Open(store.BadgerOptions(store.Options{Dir: dir, Sync: sync, SmallFootprint: false}))
}

// rawBadger measures n writes of one Set per db.Update transaction,
// sequentially, with keys from `from` on.
func rawBadger(db *badger.DB, from, n int) (float64, error) {
	val := []byte(`{"name":"benchmark","n":123456,"tags":["a","b"]}`)
	start := time.Now()
	for i := from; i < from+n; i++ {
		if err := db.Update(func(txn *badger.Txn) error {
			return txn.Set(fmt.Appendf(nil, "d/key-%d", i), val)
		}); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func openStore(dir string, sync bool) (*store.Store, error) {
	return store.Open(store.Options{Dir: dir, Region: "bench", Sync: sync,
		Clock:  conflict.NewClock(conflict.WallClock, 0),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// parallel runs fn(1..n) from `workers` goroutines, each taking the next
// index, and returns the rate of calls per second; it stops at the first
// error and returns it.
func parallel(n, workers int, fn func(i int) error) (float64, error) {
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for failed.Load() == nil {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if err := fn(int(i)); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return 0, *err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// storeWrites measures store.Write of n fresh keys from `writers`
// goroutines. The document is parsed once (store.ParseDoc is the edge's
// work: the HTTP handler parses each body once).
func storeWrites(ctx context.Context, s *store.Store, n, writers int, prefix string) (float64, error) {
	value := store.MustParseDoc(`{"name":"benchmark","n":123456,"tags":["a","b"]}`)
	return parallel(n, writers, func(i int) error {
		_, err := s.Write(ctx, store.Mutation{Key: fmt.Sprintf("%s-%d", prefix, i), Value: value, Supersede: true})
		return err
	})
}

// benchRounds is how many times a measurement alternates its baseline with what
// it is compared to; the medians are reported, which keeps a noisy shared
// machine's hiccups out of the ratios.
const benchRounds = 5

func writes(ctx context.Context, o *Options, rep *Report) error {
	n := o.Writes
	// Unsynced: the store against raw Badger, nothing else running.
	rawOffDB, err := openRaw(filepath.Join(o.Dir, "raw-nosync"), false)
	if err != nil {
		return err
	}
	defer rawOffDB.Close()
	s, err := openStore(filepath.Join(o.Dir, "store-nosync"), false)
	if err != nil {
		return err
	}
	defer s.Close()
	// Many short rounds: unsynced writes are fast, and a shared machine's
	// load changes over seconds; pairing close rounds cancels most of it.
	offRounds := 3 * benchRounds
	rawOff, storeOff, offRatio, err := alternate(offRounds,
		func(round int) (float64, error) { return rawBadger(rawOffDB, round*3*n, 3*n) },
		func(round int) (float64, error) { return storeWrites(ctx, s, 3*n, 1, fmt.Sprintf("r%d", round)) })
	if err != nil {
		return err
	}
	// Synced: HTTP PUTs from concurrent clients against raw Badger.
	rawOnDB, err := openRaw(filepath.Join(o.Dir, "raw-sync"), true)
	if err != nil {
		return err
	}
	defer rawOnDB.Close()
	c, err := gateway.StartCluster(ctx, gateway.ClusterSpec{
		Regions: []string{"solo"}, Topology: config.Topology{Kind: "all-to-all"}, DataDir: filepath.Join(o.Dir, "http"), Sync: true,
		Options: func(string) gateway.Options { return gateway.Options{Logger: o.Logger} },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	rawOn, httpOn, onRatio, err := alternate(benchRounds,
		func(round int) (float64, error) { return rawBadger(rawOnDB, round*n, n) },
		func(round int) (float64, error) {
			return httpPuts(ctx, c.Node("solo").HTTPURL(), fmt.Sprintf("r%d", round), 3*n, o.Clients)
		})
	if err != nil {
		return err
	}
	rep.add(o, "raw badger, sync on, 1 txn per write", rawOn, "writes/s")
	rep.add(o, "raw badger, sync off, 1 txn per write", rawOff, "writes/s")
	rep.add(o, "store.Write, sync off, 1 writer", storeOff, "writes/s")
	rep.add(o, fmt.Sprintf("HTTP PUT, sync on, %d keep-alive clients", o.Clients), httpOn, "writes/s")
	rep.ratio(o, "store (sync off) / raw badger (sync off)", offRatio, ">= 0.5", offRatio >= 0.5)
	rep.ratio(o, fmt.Sprintf("HTTP PUT x%d (sync on) / raw badger (sync on)", o.Clients), onRatio, ">= 2", onRatio >= 2)
	return nil
}

// alternate runs a baseline and what it is compared with in turn, rounds
// times, and returns the median rate of each and the median of the
// per-round ratios (subject over baseline): each ratio pairs two runs made
// seconds apart, so a change in the machine's load affects both.
func alternate(rounds int, base, subject func(round int) (float64, error)) (baseRate, subjectRate, ratio float64, err error) {
	var bs, ss, rs []float64
	for round := range rounds {
		b, err := base(round)
		if err != nil {
			return 0, 0, 0, err
		}
		v, err := subject(round)
		if err != nil {
			return 0, 0, 0, err
		}
		bs, ss, rs = append(bs, b), append(ss, v), append(rs, v/b)
	}
	return median(bs), median(ss), median(rs), nil
}
