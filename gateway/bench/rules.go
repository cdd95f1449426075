package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/rules"
)

// rulePairs is how many pairs of write runs (one per rule set, in
// alternating order) RuleOverhead times.
const rulePairs = 6

// ruleWriters is the number of goroutines writing through the handler.
const ruleWriters = 4

// overheadRegion is the region of the rule-overhead clusters.
const overheadRegion = "solo"

// overheadRules is the non-trivial rule set of RuleOverhead: six rules
// matched by prefixes, suffixes, a list and anchored regular expressions
// (one with an on_read), then the custom select rule that governs the
// benchmark's stock/ keys, then a catch-all.
func overheadRules() []rules.Spec {
	return []rules.Spec{
		{Name: "user-profiles", Match: `key startsWith "user/"`, Strategy: "lww"},
		{Name: "carts", Match: `key startsWith "cart/"`, Strategy: "siblings",
			OnRead: `{"items": union(map(siblings, #.items))}`},
		{Name: "sessions", Match: `key matches "^session/[0-9a-f]{16}$"`, Strategy: "lww"},
		{Name: "order-lines", Match: `key startsWith "order/" && key endsWith "/lines"`, Strategy: "siblings"},
		{Name: "audit", Match: `key matches "^audit/[0-9]{4}-[0-9]{2}/"`, Strategy: "siblings"},
		{Name: "flags", Match: `key in ["flags/global", "flags/beta"] || key startsWith "flags/team/"`, Strategy: "lww"},
		{Name: "stock", Match: `key matches "^stock/[a-z0-9-]+$"`, Strategy: "custom", Select: "version.value.updated_at"},
		{Name: "default", Match: "true", Strategy: "lww"},
	}
}

// RuleOverhead measures, in one run, what rule evaluation costs on the
// write path. Writes of fresh keys go through a region's HTTP handler in
// process (httptest; durability.sync off so fsync does not hide the cost;
// ruleWriters goroutines; 3*o.Writes keys per run) under (a) the default
// single lww rule and (b) overheadRules, whose seventh rule, a custom
// select, governs the keys written. The two sets take turns on one region
// (Node.SetRules before each run, rulePairs runs each, alternating which
// goes first), so nothing but the rules differs. It reports the median
// writes/s of each set, the mean process CPU time per write of each
// (publishing to JetStream included) and the ratio (b)/(a) of writes per
// CPU-second, with the target ">= 0.91" (at most 10% overhead): the median
// over the pairs of the ratio within each pair.
//
// CPU time rather than the wall-clock rate makes the ratio hold on a loaded
// machine, where two runs a second apart can differ by a third in rate.
// CPU time per write still varies between runs, because GC and Badger's
// background work land on whichever run is going: one run that catches a
// compaction would move a ratio of totals, but not the median of the
// pairs. Where the platform does not report process CPU time, the ratio is
// the median of the pairs' ratios of rates.
//
// It also reports the direct cost per call, in ns, of Set.Match and of
// Set.Match plus Rule.Resolve on a frontier of three concurrent versions,
// under both sets. A write to a fresh key evaluates the match expressions
// only; Resolve runs on the write path when a write leaves concurrent
// versions (the conflict observer), so its direct cost bounds that case.
//
// RuleOverhead is the "rules" part of Run.
func RuleOverhead(ctx context.Context, o Options, rep *Report) error {
	o.defaults()
	opts := rules.Options{Regions: []string{overheadRegion}}
	custom, err := rules.Compile(overheadRules(), opts)
	if err != nil {
		return fmt.Errorf("overhead rules: %w", err)
	}
	lww, err := rules.Compile(config.DefaultRules(), opts)
	if err != nil {
		return fmt.Errorf("default rules: %w", err)
	}
	if err := directCosts(&o, rep, lww, custom); err != nil {
		return err
	}

	// One region, its rule set swapped between runs (as a hot reload
	// does): both sets write into the same store, NATS server and
	// process, so nothing but the rules differs.
	c, err := gateway.StartCluster(ctx, gateway.ClusterSpec{
		Regions: []string{overheadRegion}, Topology: config.Topology{Kind: config.TopologyAllToAll},
		DataDir: filepath.Join(o.Dir, "rules"), Sync: false,
		// JetStream without fsync per message too, so the outbox drains
		// quickly after each run.
		Tune:    func(c *config.Config) { c.NATS.Sync = "1m" },
		Options: func(string) gateway.Options { return gateway.Options{Logger: o.Logger} },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	node := c.Node(overheadRegion)
	sets := []*overheadSet{
		{name: "default lww rule", rule: "default", set: lww},
		{name: "8 rules, 7th custom select", rule: "stock", set: custom},
	}
	cpu := newProcessCPU()
	n := 3 * o.Writes
	for pair := range rulePairs {
		// Alternate which set goes first. The region has published its
		// backlog before a run starts, and a run ends when it has
		// published the run's writes, so each run's CPU time is its
		// writes' whole cost.
		order := []*overheadSet{sets[0], sets[1]}
		if pair%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for k, set := range order {
			if err := drainOutboxes(ctx, node); err != nil {
				return err
			}
			node.SetRules(set.set)
			cpu0, _ := cpu.seconds()
			rate, err := handlerPuts(ctx, node.Handler(), n, ruleWriters, fmt.Sprintf("p%d-%d", pair, k), set.rule)
			if err != nil {
				return fmt.Errorf("%s: %w", set.name, err)
			}
			if err := drainOutboxes(ctx, node); err != nil {
				return err
			}
			cpu1, ok := cpu.seconds()
			set.rates = append(set.rates, rate)
			set.cpuPerWrite = append(set.cpuPerWrite, (cpu1-cpu0)/float64(n))
			set.cpuKnown = ok
		}
	}
	a, b := sets[0], sets[1]
	for _, set := range sets {
		rep.add(&o, fmt.Sprintf("handler PUT, sync off, x%d, %s", ruleWriters, set.name), median(set.rates), "writes/s")
	}
	if a.cpuKnown && b.cpuKnown && mean(a.cpuPerWrite) > 0 && mean(b.cpuPerWrite) > 0 {
		for _, set := range sets {
			rep.add(&o, "process CPU per write, "+set.name, mean(set.cpuPerWrite)*1e6, "us/write")
		}
	}
	// Per pair: writes per CPU-second of (b) over (a), the inverse ratio of
	// their CPU times per write. A run too short for the CPU clock's
	// resolution (10 ms) reads 0; its pair is left out.
	var cpuRatios, rateRatios []float64
	for i := range rulePairs {
		rateRatios = append(rateRatios, b.rates[i]/a.rates[i])
		if a.cpuKnown && b.cpuKnown && a.cpuPerWrite[i] > 0 && b.cpuPerWrite[i] > 0 {
			cpuRatios = append(cpuRatios, a.cpuPerWrite[i]/b.cpuPerWrite[i])
		}
	}
	if len(cpuRatios) > 0 {
		ratio := median(cpuRatios)
		rep.ratio(&o, "writes per CPU-second, 8 rules / default rule", ratio, ">= 0.91", ratio >= 0.91)
		return nil
	}
	// Without the process's CPU time (a platform Prometheus's process
	// collector does not cover, or runs too short to register), compare
	// the wall-clock rates.
	ratio := median(rateRatios)
	rep.ratio(&o, "PUT with 8 rules / PUT with default rule", ratio, ">= 0.91", ratio >= 0.91)
	return nil
}

// overheadSet is one rule set and its runs in RuleOverhead.
type overheadSet struct {
	name, rule string // the set's description and the rule the keys get
	set        *rules.Set
	// rates and cpuPerWrite are, for each pair in order, the run's
	// writes/s and process CPU seconds per write.
	rates, cpuPerWrite []float64
	cpuKnown           bool
}

// processCPU reads the CPU time (user and system) this process has used,
// from Prometheus's process collector (/proc on Linux, the OS's
// accounting elsewhere). Process CPU time is what a write costs, whatever
// else the machine runs; its resolution is a clock tick (10ms on Linux).
type processCPU struct{ reg *prometheus.Registry }

func newProcessCPU() processCPU {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return processCPU{reg}
}

// seconds returns the process's CPU time so far; false where the platform
// does not report it.
func (p processCPU) seconds() (float64, bool) {
	families, _ := p.reg.Gather() // an error may leave the families it could read
	for _, f := range families {
		if f.GetName() == "process_cpu_seconds_total" && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// median returns the median of xs (the mean of the middle two for an
// even count).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// mean returns the mean of xs (0 for none).
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// drainOutboxes waits until every node has published its outbox.
func drainOutboxes(ctx context.Context, nodes ...*gateway.Node) error {
	for _, n := range nodes {
		if err := wait.Until(ctx, time.Minute, "outbox of "+n.Config().Region+" drained", func() bool { return n.Store().OutboxLen() == 0 }); err != nil {
			return err
		}
	}
	return nil
}

// handlerPuts runs n PUTs of fresh keys stock/<tag>-<i> through h from
// `writers` goroutines and returns the rate. Every answer must be 200 and
// name the expected rule.
func handlerPuts(ctx context.Context, h http.Handler, n, writers int, tag, rule string) (float64, error) {
	body := []byte(`{"sku":"benchmark","qty":12,"updated_at":"2026-11-27T12:00:00Z","tags":["a","b"]}`)
	return parallel(n, writers, func(i int) error {
		key := fmt.Sprintf("stock/%s-%d", tag, i)
		req := httptest.NewRequestWithContext(ctx, http.MethodPut, "/v1/kv/"+key, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("PUT %s: %d %s", key, rec.Code, bytes.TrimSpace(rec.Body.Bytes()))
		}
		if i == 1 {
			return checkRule(ctx, h, key, rule)
		}
		return nil
	})
}

// checkRule verifies that the rule governing key is the one measured.
func checkRule(ctx context.Context, h http.Handler, key, want string) error {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/kv/"+key, nil))
	if got := rec.Header().Get(gateway.HeaderRule); got != want {
		return fmt.Errorf("GET %s: rule %q (status %d), want %q", key, got, rec.Code, want)
	}
	return nil
}

// overheadFrontier is three concurrent versions of a stock/ key.
func overheadFrontier() []conflict.Version {
	doc := func(qty int, at string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"sku":"benchmark","qty":%d,"updated_at":%q,"tags":["a","b"]}`, qty, at))
	}
	v := func(region string, wall int64, value json.RawMessage) conflict.Version {
		return conflict.Version{Dot: conflict.Dot{Actor: region + "~0001", Counter: 7}, Value: value,
			HLC: conflict.HLC{Wall: wall}, Origin: region}
	}
	return []conflict.Version{
		v("us-east", 1_700_000_000_300, doc(10, "2026-11-27T12:00:03Z")),
		v("eu-west", 1_700_000_000_200, doc(11, "2026-11-27T12:00:05Z")),
		v("ap-south", 1_700_000_000_100, doc(12, "2026-11-27T12:00:01Z")),
	}
}

// directCosts reports ns per call of Set.Match and of Set.Match +
// Rule.Resolve under both sets, and checks that each resolves as expected.
func directCosts(o *Options, rep *Report, lww, custom *rules.Set) error {
	const key = "stock/r0-1"
	vs := overheadFrontier()
	match := func(set *rules.Set, want string) func(int) error {
		return func(n int) error {
			for range n {
				r, err := set.Match(key)
				if err != nil {
					return err
				}
				if r.Name() != want {
					return fmt.Errorf("key %s: rule %q, want %q", key, r.Name(), want)
				}
			}
			return nil
		}
	}
	resolve := func(set *rules.Set, wantOrigin string) func(int) error {
		return func(n int) error {
			for range n {
				r, err := set.Match(key)
				if err != nil {
					return err
				}
				res, err := r.Resolve(key, overheadRegion, vs)
				if err != nil {
					return err
				}
				if res.Kept == nil || res.Kept.Origin != wantOrigin {
					return fmt.Errorf("rule %s kept %+v, want the version from %s", r.Name(), res.Kept, wantOrigin)
				}
			}
			return nil
		}
	}
	for _, m := range []struct {
		name string
		f    func(int) error
	}{
		{"Set.Match, default lww rule", match(lww, "default")},
		{"Set.Match, 8 rules, 7th matches", match(custom, "stock")},
		// lww keeps the greatest HLC, select the latest updated_at.
		{"Match+Resolve, 3 versions, default lww", resolve(lww, "us-east")},
		{"Match+Resolve, 3 versions, 7th rule custom select", resolve(custom, "eu-west")},
	} {
		ns, err := nsPerOp(200*time.Millisecond, m.f)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		rep.add(o, m.name, ns, "ns/op")
	}
	return nil
}

// nsPerOp times f(n), growing n as testing.B does until one call of f
// lasts at least target, and returns the time per iteration.
func nsPerOp(target time.Duration, f func(n int) error) (float64, error) {
	n := 1
	for {
		start := time.Now()
		if err := f(n); err != nil {
			return 0, err
		}
		el := time.Since(start)
		if el >= target || n >= 1e9 {
			return float64(el.Nanoseconds()) / float64(n), nil
		}
		// Aim 20% past the target, growing at least by one and at most
		// 100-fold per step.
		next := int(float64(n) * 1.2 * float64(target) / float64(max(el, time.Microsecond)))
		n = min(max(next, n+1), 100*n)
	}
}
