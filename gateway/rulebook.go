package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/rules"
)

// rulebook is a node's bookkeeping around its rule set: which set is in
// effect (for /v1/status and /metrics), the rate-limited log of rule
// failures, and the index of keys holding siblings.
type rulebook struct {
	n *Node

	// mu guards active and failures; nothing else is locked with it.
	mu       sync.Mutex
	active   RulesStatus
	failures map[string]*failureLog
	// gen counts installed sets; the conflicted index caches rule names
	// per generation.
	gen atomic.Uint64

	conflicted *conflictIndex

	reloadOK, reloadAt prometheus.Gauge
	// now is the failure log's clock (time.Now; tests replace it).
	now func() time.Time
}

// RulesStatus describes the rule set in effect, as /v1/status shows it.
type RulesStatus struct {
	// Hash identifies the rule list (SHA-256 of the specs, 16 hex
	// digits): equal in two regions iff they run the same rules.
	Hash  string `json:"hash"`
	Count int    `json:"count"`
	// Source is where the set came from: the file it was loaded from, or
	// "config" (a config built in code) or "default" (no rules: every key
	// lww).
	Source   string    `json:"source"`
	LoadedAt time.Time `json:"loaded_at"`
}

// failureLog rate-limits the log of one kind of rule failure.
type failureLog struct {
	limit      *rate.Limiter
	suppressed int
}

// Rule failures are logged once per rule and kind (rules.EvalError.Kind),
// then at most once per failureLogEvery with the number suppressed; at
// most maxFailureKinds kinds are told apart (the rest share one limiter).
const (
	failureLogEvery = time.Minute
	maxFailureKinds = 1024
)

var descRulesInfo = prometheus.NewDesc("geogate_rules_info",
	"The rule set in effect: always 1, labelled with its hash, its number of rules and its source.", []string{"hash", "count", "source"}, nil)
var descConflictedKeys = prometheus.NewDesc("geogate_conflicted_keys",
	"Keys whose frontier holds more than one version (siblings), by the rule governing them.", []string{"rule"}, nil)

func newRulebook(n *Node, set *rules.Set, source string) *rulebook {
	b := &rulebook{n: n, failures: map[string]*failureLog{}, conflicted: newConflictIndex(), now: time.Now}
	b.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "geogate_rules_last_reload_successful",
		Help: "1 when the last attempt to load the rules (at start or a hot reload) put them in effect, 0 when it failed and the previous rules were kept."})
	b.reloadAt = prometheus.NewGauge(prometheus.GaugeOpts{Name: "geogate_rules_last_reload_success_timestamp_seconds",
		Help: "Unix time the rule set in effect was loaded."})
	n.metrics.reg.MustRegister(b.reloadOK, b.reloadAt, rulebookCollector{b})
	b.installed(set, source)
	return b
}

// installed records set as the one in effect.
func (b *rulebook) installed(set *rules.Set, source string) {
	specs := currentSpecs(set)
	now := time.Now()
	b.mu.Lock()
	b.active = RulesStatus{Hash: rulesHash(specs), Count: len(specs), Source: source, LoadedAt: now.UTC()}
	b.mu.Unlock()
	b.gen.Add(1)
	b.reloadOK.Set(1)
	b.reloadAt.Set(float64(now.UnixNano()) / 1e9)
}

// reloadFailed records a reload that kept the current rules.
func (b *rulebook) reloadFailed() { b.reloadOK.Set(0) }

// status returns the set in effect.
func (b *rulebook) status() RulesStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.active
}

// failed counts and logs a rule expression that failed at run time for
// key. The caller kept every version (the rules package guarantees it:
// nothing collapsed, merged or superseded without a context); this says
// so. A failure not from a rule expression is counted under rule "" .
func (b *rulebook) failed(key string, err error) {
	var ee *rules.EvalError
	rule, field, kind := "", "", err.Error()
	if errors.As(err, &ee) {
		rule, field, kind = ee.Rule, ee.Field, ee.Kind()
	}
	b.n.metrics.ruleErrors.WithLabelValues(rule, field).Inc()
	id := rule + "\x00" + kind
	b.mu.Lock()
	fl, ok := b.failures[id]
	if !ok {
		if len(b.failures) >= maxFailureKinds {
			id = "\x00other"
			fl = b.failures[id]
		}
		if fl == nil {
			fl = &failureLog{limit: rate.NewLimiter(rate.Every(failureLogEvery), 1)}
			b.failures[id] = fl
		}
	}
	if !fl.limit.AllowN(b.now(), 1) {
		fl.suppressed++
		b.mu.Unlock()
		return
	}
	suppressed := fl.suppressed
	fl.suppressed = 0
	b.mu.Unlock()
	b.n.log.Warn("rule expression failed; "+consequence(field), "rule", rule, "field", field, "key", key, "err", err,
		"suppressed_since_last_log", suppressed)
}

// consequence says what a failure of a field did to the key.
func consequence(field string) string {
	switch field {
	case "match":
		return "the key is held under this rule: every version kept as siblings, no later rule tried"
	case "home":
		return "no home region: the write is refused (400 bad_home), or no region merges the key"
	case "merge":
		return "no merge: the siblings are kept"
	default:
		return "the versions are shown as siblings, none collapsed"
	}
}

// conflictIndex is the set of keys whose frontier holds more than one
// version, maintained from the store's observer (every change that leaves
// siblings or had them, in commit order, shortly after its commit) and
// seeded by one scan of the store at start. Listing verifies each key
// against the store, so a stale entry is never shown.
type conflictIndex struct {
	// mu guards every field; it is taken on the store's observer
	// goroutine, so nothing that waits on the store's observations may
	// hold it.
	mu   sync.Mutex
	keys map[string]indexedRule
	// touched records the keys noted while the seeding scan runs, which
	// the scan's older snapshot must not overwrite; nil once seeded.
	touched map[string]bool
	ready   bool
}

// indexedRule caches the rule governing a conflicted key under one
// generation of the rule set.
type indexedRule struct {
	rule string
	gen  uint64
}

func newConflictIndex() *conflictIndex {
	return &conflictIndex{keys: map[string]indexedRule{}, touched: map[string]bool{}}
}

// note records the size of key's frontier after a change.
func (x *conflictIndex) note(key string, versions int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.touched != nil {
		x.touched[key] = true
	}
	if versions > 1 {
		if _, ok := x.keys[key]; !ok {
			x.keys[key] = indexedRule{}
		}
		return
	}
	delete(x.keys, key)
}

// seed adds a conflicted key found by the start-up scan, unless a change
// noted since the scan began knows better.
func (x *conflictIndex) seed(key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.touched != nil && !x.touched[key] {
		x.keys[key] = indexedRule{}
	}
}

// seeded marks the start-up scan complete.
func (x *conflictIndex) seeded() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.touched, x.ready = nil, true
}

// candidates returns up to limit indexed keys with prefix after `after`,
// in byte order, and whether the index is seeded (if not, the caller must
// scan the store).
func (x *conflictIndex) candidates(prefix, after string) ([]string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.ready {
		return nil, false
	}
	var out []string
	for k := range x.keys {
		if strings.HasPrefix(k, prefix) && k > after {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, true
}

// drop removes a key found not to be conflicted.
func (x *conflictIndex) drop(key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.keys, key)
}

// byRule counts the indexed keys by governing rule, naming rules with
// name (called outside mu, once per key and rule-set generation).
func (x *conflictIndex) byRule(gen uint64, name func(key string) string) map[string]int {
	x.mu.Lock()
	var stale []string
	counts := map[string]int{}
	for k, r := range x.keys {
		if r.gen != gen {
			stale = append(stale, k)
			continue
		}
		counts[r.rule]++
	}
	x.mu.Unlock()
	for _, k := range stale {
		rule := name(k)
		x.mu.Lock()
		if _, ok := x.keys[k]; ok {
			x.keys[k] = indexedRule{rule: rule, gen: gen}
			counts[rule]++
		}
		x.mu.Unlock()
	}
	return counts
}

// seedConflicted scans the store once for keys holding siblings. It runs
// in the background from New, stopping early when the node closes.
func (b *rulebook) seedConflicted() {
	err := b.n.store.Scan(func(key string, rec conflict.Record) bool {
		if len(rec.Versions) > 1 {
			b.conflicted.seed(key)
		}
		return !b.n.closing.Load()
	})
	if err != nil || b.n.closing.Load() {
		if err != nil {
			b.n.log.Error("scanning the store for keys holding siblings failed; /v1/kv?conflicted=true scans the store instead", "err", err)
		}
		return
	}
	b.conflicted.seeded()
}

// ruleName names the rule governing key under the set in effect.
func (b *rulebook) ruleName(key string) string {
	r, _ := b.n.rules().Match(key)
	if r == nil {
		return ""
	}
	return r.Name()
}

// rulebookCollector exports the info metric and the conflicted keys per
// rule at scrape time.
type rulebookCollector struct{ b *rulebook }

func (c rulebookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRulesInfo
	ch <- descConflictedKeys
}

func (c rulebookCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.status()
	ch <- prometheus.MustNewConstMetric(descRulesInfo, prometheus.GaugeValue, 1, st.Hash, fmt.Sprint(st.Count), st.Source)
	counts := c.b.conflicted.byRule(c.b.gen.Load(), c.b.ruleName)
	for _, r := range c.b.n.rules().Rules() {
		ch <- prometheus.MustNewConstMetric(descConflictedKeys, prometheus.GaugeValue, float64(counts[r.Name()]), r.Name())
		delete(counts, r.Name())
	}
	for rule, count := range counts { // keys no rule matches
		ch <- prometheus.MustNewConstMetric(descConflictedKeys, prometheus.GaugeValue, float64(count), rule)
	}
}
