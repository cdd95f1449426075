package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/geogate/geogate/client"
)

// workload drives the HTTP API of a run's regions at the scenario's rate
// and records every acknowledged write, every session read and the
// outcome of every other request. Safe for concurrent use.
type workload struct {
	spec Workload
	// all are every region of the run: session reads go to one of them
	// other than the writer's.
	all   []string
	api   *apiClient
	seed  uint64
	start time.Time
	pad   string

	nextID atomic.Uint64
	ops    atomic.Uint64
	writes atomic.Uint64
	acked  atomic.Uint64
	errs   atomic.Uint64

	mu           sync.Mutex
	ackedWrites  []AckedWrite
	sessionReads []SessionRead
	writeErrors  map[string]int
	errorSample  map[string]string
	reads        map[string]int
	conflictOps  uint64
	dotsUnknown  uint64
}

func newWorkload(spec Workload, all []string, api *apiClient, seed uint64, start time.Time) *workload {
	return &workload{
		spec: spec, all: all, api: api, seed: seed, start: start,
		pad:         strings.Repeat("x", max(spec.ValueBytes-48, 0)),
		writeErrors: map[string]int{}, errorSample: map[string]string{}, reads: map[string]int{},
	}
}

// run issues operations until ctx ends, then waits for those in flight.
// Operations are paced by a token bucket at spec.Rate with at most
// spec.Concurrency in flight; a slow region therefore slows the offered
// load (closed loop) rather than queueing without bound.
func (w *workload) run(ctx context.Context) {
	lim := rate.NewLimiter(rate.Limit(w.spec.Rate), 1)
	var wg sync.WaitGroup
	for i := range w.spec.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(w.seed, uint64(i)+1))
			keys := newKeyPicker(w.spec, rng)
			for lim.Wait(ctx) == nil {
				w.op(ctx, rng, keys)
			}
		}()
	}
	wg.Wait()
}

// keyPicker draws key indices under the scenario's distribution.
type keyPicker struct {
	n    int
	rng  *rand.Rand
	zipf *rand.Zipf
}

func newKeyPicker(w Workload, rng *rand.Rand) keyPicker {
	k := keyPicker{n: w.Keys, rng: rng}
	if w.Distribution == "zipf" {
		k.zipf = rand.NewZipf(rng, w.ZipfS, 1, uint64(w.Keys-1))
	}
	return k
}

func (k keyPicker) next() int {
	if k.zipf != nil {
		return int(k.zipf.Uint64())
	}
	return k.rng.IntN(k.n)
}

func (w *workload) op(ctx context.Context, rng *rand.Rand, keys keyPicker) {
	w.ops.Add(1)
	regions := w.spec.Regions
	region := regions[rng.IntN(len(regions))]
	roll := rng.Float64()
	switch {
	case roll < w.spec.ReadRatio:
		w.read(ctx, region, w.key(keys.next()))
	case rng.Float64() < w.spec.ConflictRatio:
		w.conflictWrite(ctx, rng)
	default:
		key := w.key(keys.next())
		ans, ok := w.write(ctx, region, key, false)
		if ok && rng.Float64() < w.spec.SessionRatio {
			others := slices.DeleteFunc(slices.Clone(w.all), func(r string) bool { return r == region })
			if len(others) == 0 {
				return
			}
			w.sessionRead(ctx, region, others[rng.IntN(len(others))], key, ans.Session)
		}
	}
}

func (w *workload) key(i int) string { return w.spec.KeyPrefix + strconv.Itoa(i) }

// conflictWrite writes one hot key at several regions at once, without a
// context: concurrent versions the rules must resolve.
func (w *workload) conflictWrite(ctx context.Context, rng *rand.Rand) {
	key := fmt.Sprintf("%shot/%d", w.spec.KeyPrefix, rng.IntN(w.spec.HotKeys))
	regions := slices.Clone(w.spec.Regions)
	rng.Shuffle(len(regions), func(i, j int) { regions[i], regions[j] = regions[j], regions[i] })
	regions = regions[:w.spec.ConflictRegions]
	w.mu.Lock()
	w.conflictOps++
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range regions {
		wg.Add(1)
		go func() { defer wg.Done(); w.write(ctx, r, key, true) }()
	}
	wg.Wait()
}

// document builds a written value: the unique id, where and when it was
// written, padding and the scenario's extra fields.
func (w *workload) document(id, region string) []byte {
	doc := map[string]any{}
	for k, v := range w.spec.Fields {
		doc[k] = v
	}
	doc["w"], doc["r"], doc["t"] = id, region, time.Now().UnixMilli()
	if w.pad != "" {
		doc["pad"] = w.pad
	}
	b, _ := json.Marshal(doc) // scenario fields came from YAML: always encodable
	return b
}

func (w *workload) write(ctx context.Context, region, key string, hot bool) (client.WriteResult, bool) {
	id := "w" + strconv.FormatUint(w.nextID.Add(1), 10)
	w.writes.Add(1)
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, w.spec.Timeout)
	ans, node, err := w.api.put(rctx, region, key, w.document(id, region))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return client.WriteResult{}, false // the run ended mid-request; not a gateway error
		}
		w.errs.Add(1)
		w.mu.Lock()
		why := reason(err)
		w.writeErrors[why]++
		if _, ok := w.errorSample[why]; !ok {
			w.errorSample[why] = err.Error()
		}
		w.mu.Unlock()
		return client.WriteResult{}, false
	}
	now := time.Now()
	a := AckedWrite{ID: id, Key: key, Region: region, Node: node, At: now.Sub(w.start), Latency: now.Sub(t0), Conflict: hot,
		HLC: ans.HLC, AckedUnixMs: now.UnixMilli()}
	dot, derr := writeDot(ans)
	if derr == nil {
		a.Dot = dot
	}
	w.acked.Add(1)
	w.mu.Lock()
	w.ackedWrites = append(w.ackedWrites, a)
	if derr != nil {
		w.dotsUnknown++
	}
	w.mu.Unlock()
	return ans, true
}

// probe writes key at node (of region) within timeout, not spread over
// the region's nodes, and records the write like any other when it is
// acknowledged (marked Probe). A failure is not counted: probes are sent
// while a region has no leader, to see when it has one again.
func (w *workload) probe(ctx context.Context, region, node, key string, timeout time.Duration) (AckedWrite, bool) {
	id := "w" + strconv.FormatUint(w.nextID.Add(1), 10)
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	ans, by, err := w.api.put(rctx, node, key, w.document(id, region))
	cancel()
	if err != nil {
		return AckedWrite{}, false
	}
	now := time.Now()
	a := AckedWrite{ID: id, Key: key, Region: region, Node: by, At: now.Sub(w.start), Latency: now.Sub(t0), Probe: true,
		HLC: ans.HLC, AckedUnixMs: now.UnixMilli()}
	if dot, err := writeDot(ans); err == nil {
		a.Dot = dot
	}
	w.mu.Lock()
	w.ackedWrites = append(w.ackedWrites, a)
	w.mu.Unlock()
	return a, true
}

func (w *workload) read(ctx context.Context, region, key string) {
	rctx, cancel := context.WithTimeout(ctx, w.spec.Timeout)
	status, err := w.api.get(rctx, region, key)
	cancel()
	what := strconv.Itoa(status)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		what = reason(err)
	}
	w.mu.Lock()
	w.reads[what]++
	w.mu.Unlock()
}

// sessionRead reads key at region with the write's session token. A 503
// (the region did not catch up within session_wait) or a 404 (the key is
// missing although the region claims to have caught up) is a violation.
func (w *workload) sessionRead(ctx context.Context, writeRegion, region, key, session string) {
	opts := []client.CallOption{client.Session(session), client.Wait(w.spec.SessionWait)}
	t0 := time.Now()
	rctx, cancel := context.WithTimeout(ctx, w.spec.Timeout+w.spec.SessionWait)
	status, err := w.api.get(rctx, region, key, opts...)
	cancel()
	if err != nil && ctx.Err() != nil {
		return // the run ended mid-request
	}
	now := time.Now()
	sr := SessionRead{Key: key, WriteRegion: writeRegion, ReadRegion: region, At: now.Sub(w.start), Latency: now.Sub(t0), Status: status}
	switch {
	case err != nil && status == http.StatusServiceUnavailable:
		sr.Violation = "stale"
	case err != nil:
		sr.Violation = reason(err)
	case status == http.StatusNotFound:
		sr.Violation = "missing"
	}
	w.mu.Lock()
	w.sessionReads = append(w.sessionReads, sr)
	w.mu.Unlock()
}

// progress returns the live counters: operations, acked writes, failed
// writes.
func (w *workload) progress() (ops, acked, errs uint64) {
	return w.ops.Load(), w.acked.Load(), w.errs.Load()
}

// results returns copies of what was recorded.
func (w *workload) results() ([]AckedWrite, []SessionRead, WorkloadStats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	acked := slices.Clone(w.ackedWrites)
	lat := make([]float64, len(acked))
	for i, a := range acked {
		lat[i] = float64(a.Latency) / float64(time.Millisecond)
	}
	stats := WorkloadStats{
		Ops: w.ops.Load(), Writes: w.writes.Load(), Acked: w.acked.Load(), ConflictWrites: w.conflictOps,
		WriteErrors: copyMap(w.writeErrors), WriteErrorSamples: maps.Clone(w.errorSample), Reads: copyMap(w.reads), SessionReads: uint64(len(w.sessionReads)),
		DotsUnknown: w.dotsUnknown, WriteLatency: percentiles(lat),
	}
	return acked, slices.Clone(w.sessionReads), stats
}

func copyMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
