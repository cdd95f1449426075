package store

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The baseline is raw Badger opened with the store's own options
// (badgerOptions), one Set per db.Update transaction, in Badger's own
// timestamp mode as an application would use it; the store adds the record
// encoding, the outbox entry, counters and the writer role, and runs Badger
// in managed mode (snapshots.go).

// benchDoc is the document every benchmark writes: about 100 bytes.
var benchDoc = []byte(`{"user":"u-000042","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"note":"benchmark document"}`)

// benchValue is benchDoc parsed once, as the HTTP edge does per request.
var benchValue = MustParseDoc(string(benchDoc))

func syncName(on bool) string {
	if on {
		return "sync=on"
	}
	return "sync=off"
}

// openRawBadger opens raw Badger with the store's options in Badger's own
// timestamp mode, as an application would.
func openRawBadger(tb testing.TB, sync bool) *badger.DB { return openRaw(tb, sync, badger.Open) }

// openRaw opens raw Badger with the store's options (Sync as given) in a
// new temporary directory, with open (badger.Open or badger.OpenManaged).
func openRaw(tb testing.TB, sync bool, open func(badger.Options) (*badger.DB, error)) *badger.DB {
	tb.Helper()
	opts := testOptions(tb.TempDir(), "bench")
	opts.Sync = sync
	db, err := open(badgerOptions(opts, hooks{}))
	if err != nil {
		tb.Fatalf("open badger: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

func openBenchStore(tb testing.TB, sync bool) *Store {
	tb.Helper()
	return openTest(tb, "bench", "", func(o *testOpts) {
		o.Sync = sync
		o.Clock = realClock()
	})
}

func rawWrite(db *badger.DB, i int) error {
	key := fmt.Appendf(recordKey("bench/"), "%d", i)
	return db.Update(func(txn *badger.Txn) error { return txn.Set(key, benchDoc) })
}

func storeWrite(s *Store, i int) error {
	_, err := s.Write(context.Background(), Mutation{Key: fmt.Sprintf("bench/%d", i), Value: benchValue})
	return err
}

func BenchmarkRawBadgerTxn(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(syncName(sync), func(b *testing.B) {
			db := openRawBadger(b, sync)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := rawWrite(db, i); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkStoreWrite(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(syncName(sync), func(b *testing.B) {
			s := openBenchStore(b, sync)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := storeWrite(s, i); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// parallelism16 is the SetParallelism factor that runs about 16 goroutines.
func parallelism16() int { return max(1, (16+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0)) }

func BenchmarkStoreWriteParallel(b *testing.B) {
	b.Run(syncName(true), func(b *testing.B) {
		s := openBenchStore(b, true)
		var next atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(parallelism16())
		cpu0 := processCPU()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := storeWrite(s, int(next.Add(1))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		st := s.Stats()
		b.ReportMetric(float64(st.Writes)/float64(max(st.Commits, 1)), "writes/commit")
		// CPU time of the whole process (Badger's goroutines and the
		// kernel's side of the flushes included) per write.
		b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	})
}

// writeRate runs n writes from the given number of goroutines and returns
// writes per second.
func writeRate(tb testing.TB, n, writers int, write func(i int) error) float64 {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > n {
					return
				}
				if err := write(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		tb.Fatalf("write: %v", err)
	}
	return float64(n) / elapsed.Seconds()
}

// storeWriteShape returns the record and outbox values one store write of
// benchDoc puts in Badger, for the store-shaped raw baseline.
func storeWriteShape(tb testing.TB) (record, outbox []byte) {
	tb.Helper()
	s := openBenchStore(tb, false)
	if err := storeWrite(s, 0); err != nil {
		tb.Fatalf("write: %v", err)
	}
	out := mustOutbox(tb, s, 0)
	return AppendRecord(nil, mustGet(tb, s, "bench/0")), encodeOutbox(out[0])
}

// rawShapedWrite is the i-th (from 0) Badger transaction doing what a store
// write of a new key does to Badger, without the store's logic: put the
// record and the outbox entry, at the store's sizes, committed at the next
// timestamp of a managed-mode DB. (The store skips the record lookup for a
// new key: its key filter knows the key is new.)
func rawShapedWrite(db *badger.DB, i int, record, outbox []byte) error {
	key := fmt.Appendf(recordKey("bench/"), "%d", i)
	txn := db.NewTransactionAt(uint64(i)+1, true)
	defer txn.Discard()
	if err := txn.Set(key, record); err != nil {
		return err
	}
	if err := txn.Set(seqKey(prefixOutbox, uint64(i)+1), outbox); err != nil {
		return err
	}
	return txn.CommitAt(uint64(i)+2, nil)
}

// TestWriteThroughputRatios measures, in one run, raw Badger transactions
// against store writes and checks the targets: with sync off the
// store reaches at least half of raw Badger's rate; with sync on, 16
// concurrent store writers reach at least twice raw Badger's rate of one
// synced transaction per write. Every configuration makes its writes in
// chunks, the chunks of all configurations interleaved, and its figure is
// the median chunk rate: load from other processes on the machine then
// slows both sides of a ratio alike. A third baseline, a raw transaction
// shaped like a store write (a record and an outbox entry at the store's
// sizes, in managed mode like the store's), shows what the data layout alone
// costs.
// Run: GEOGATE_BENCH=1 go test ./store -run Ratios -v
func TestWriteThroughputRatios(t *testing.T) {
	if os.Getenv("GEOGATE_BENCH") == "" {
		t.Skip("set GEOGATE_BENCH=1 to measure write throughput ratios")
	}
	// Synced writes are slow (one fsync each for raw Badger): 3000 of them;
	// unsynced ones are fast enough to measure over more.
	const nSync, nNoSync, chunks = 3000, 24000, 6
	type config struct {
		name    string
		n       int
		writers int
		write   func(i int) error
		store   *Store
		rates   []float64
	}
	raw := func(sync bool) func(int) error {
		db := openRawBadger(t, sync)
		return func(i int) error { return rawWrite(db, i) }
	}
	st := func(sync bool) (*Store, func(int) error) {
		s := openBenchStore(t, sync)
		return s, func(i int) error { return storeWrite(s, i) }
	}
	shaped := func() func(int) error {
		rec, outbox := storeWriteShape(t)
		db := openRaw(t, false, badger.OpenManaged) // as the store opens it
		return func(i int) error { return rawShapedWrite(db, i, rec, outbox) }
	}
	configs := []*config{
		{name: "raw badger txn, sync=off,  1 writer ", n: nNoSync, writers: 1, write: raw(false)},
		{name: "raw store-shaped txn, sync=off      ", n: nNoSync, writers: 1, write: shaped()},
		{name: "raw badger txn, sync=on,   1 writer ", n: nSync, writers: 1, write: raw(true)},
		{name: "store write,    sync=off,  1 writer ", n: nNoSync, writers: 1},
		{name: "store write,    sync=on,   1 writer ", n: nSync, writers: 1},
		{name: "store write,    sync=on,  16 writers", n: nSync, writers: 16},
		{name: "store write,    sync=off, 16 writers", n: nNoSync, writers: 16},
	}
	for i, sync := range []bool{false, true, true, false} {
		configs[3+i].store, configs[3+i].write = st(sync)
	}
	for c := range chunks {
		for _, cfg := range configs {
			base := c * (cfg.n / chunks)
			cfg.rates = append(cfg.rates, writeRate(t, cfg.n/chunks, cfg.writers, func(i int) error { return cfg.write(base + i) }))
		}
	}
	median := func(cfg *config) float64 {
		r := slices.Sorted(slices.Values(cfg.rates))
		return (r[(len(r)-1)/2] + r[len(r)/2]) / 2
	}
	for _, cfg := range configs {
		extra := ""
		if cfg.store != nil {
			s := cfg.store.Stats()
			extra = fmt.Sprintf(" (%.1f writes/commit)", float64(s.Writes)/float64(s.Commits))
		}
		chunkRates := make([]int, len(cfg.rates))
		for i, r := range cfg.rates {
			chunkRates[i] = int(r)
		}
		t.Logf("%s: %7.0f writes/s%s; chunks %v", cfg.name, median(cfg), extra, chunkRates)
	}
	rawOff, rawShaped, rawOn := median(configs[0]), median(configs[1]), median(configs[2])
	storeOff1, storeOn1, storeOn16, storeOff16 := median(configs[3]), median(configs[4]), median(configs[5]), median(configs[6])
	offRatio, onRatio := storeOff1/rawOff, storeOn16/rawOn
	t.Logf("raw store-shaped/raw (sync off): %.2f (the layout's ceiling for the next ratio)", rawShaped/rawOff)
	t.Logf("store/raw store-shaped (sync off): %.2f", storeOff1/rawShaped)
	t.Logf("store/raw (sync off, 1 writer): %.2f (target >= 0.50)", offRatio)
	t.Logf("store/raw (sync on, 1 writer): %.2f", storeOn1/rawOn)
	t.Logf("store 16 writers / raw 1 writer (sync on): %.1f (target >= 2.0)", onRatio)
	t.Logf("store 16 writers / raw 1 writer (sync off): %.2f", storeOff16/rawOff)
	if offRatio < 0.5 {
		t.Errorf("sync off: store reaches %.2f of raw Badger, target 0.50", offRatio)
	}
	if onRatio < 2 {
		t.Errorf("sync on: 16 store writers reach %.1fx raw Badger, target 2x", onRatio)
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
