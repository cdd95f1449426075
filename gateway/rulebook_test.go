package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/store"
)

// metricLine returns the value of the first /metrics line starting with
// prefix, or "" when there is none.
func metricLine(t *testing.T, n *Node, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(string(do(t, "GET", n.HTTPURL()+"/metrics", nil).body), "\n") {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(l, prefix))
		}
	}
	return ""
}

// TestFailingRuleKeepsEveryWrite runs on real regions what the property
// test of the rules package checks on pure code: a key whose rule's match
// fails at run time keeps every version (a read answers 300, a write
// without a context does not replace the others, no later lww rule
// collapses them), is counted by rule and field, is listed among the keys
// holding siblings, and explain names the failing expression.
func TestFailingRuleKeepsEveryWrite(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	specs := []rules.Spec{
		// int(key[2:]) fails for n/ keys that are not numbers.
		{Name: "numbered", Match: `key startsWith "n/" && int(key[2:]) > 100`, Strategy: "siblings"},
		{Name: "carts", Match: `key startsWith "cart/"`, Strategy: "siblings"},
		lwwDefault(),
	}
	c := startCluster(t, []string{"r1", "r2"}, "all-to-all", specs, func(s *ClusterSpec) {
		s.Options = func(string) Options { return Options{Logger: logger} }
	})
	r1, r2 := c.Node("r1"), c.Node("r2")

	// Two regions write n/x concurrently, then r1 writes it again without
	// a context: under the lww default (where a failing match used to
	// fall through) that write would replace everything r1 had seen.
	pauseAll(t, c)
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/n/x", []byte(`{"from":"r1"}`))
	do(t, "PUT", r2.HTTPURL()+"/v1/kv/n/x", []byte(`{"from":"r2"}`))
	resumeAll(t, c)
	waitConverged(t, c, 10*time.Second)
	if a := do(t, "PUT", r1.HTTPURL()+"/v1/kv/n/x", []byte(`{"from":"r1 again"}`)); a.status != 200 {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	waitConverged(t, c, 10*time.Second)
	for _, n := range c.Nodes() {
		a := do(t, "GET", n.HTTPURL()+"/v1/kv/n/x", nil)
		if a.status != 300 || a.header.Get(HeaderRule) != "numbered" {
			t.Fatalf("%s: GET n/x = %d (rule %s) %s; want 300 under rule numbered", n.Config().Region, a.status, a.header.Get(HeaderRule), a.body)
		}
		sib := a.json(t)["siblings"].([]any)
		if len(sib) != 3 {
			t.Fatalf("%s: %d siblings %v; want all 3 writes", n.Config().Region, len(sib), sib)
		}
		if cs, _ := n.Store().Conflicts("n/x", 10); len(cs) != 0 {
			t.Fatalf("%s: a held key wrote conflict-log entries (something was collapsed): %+v", n.Config().Region, cs)
		}
	}
	// A key the rule matches normally, and one of another rule, are not held.
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/n/200", []byte(`1`))
	if a := do(t, "GET", r1.HTTPURL()+"/v1/kv/n/200", nil); a.status != 200 || a.header.Get(HeaderRule) != "numbered" {
		t.Fatalf("n/200: %d %s", a.status, a.header.Get(HeaderRule))
	}

	// Counted by rule and field, logged once per kind (not per request).
	count := metricLine(t, r1, `geogate_rule_errors_total{field="match",rule="numbered"} `)
	if count == "" || count == "0" {
		t.Fatalf("rule error not counted by rule and field: %q\n%s", count, do(t, "GET", r1.HTTPURL()+"/metrics", nil).body)
	}
	for range 5 {
		do(t, "GET", r1.HTTPURL()+"/v1/kv/n/x", nil)
	}
	if logged := strings.Count(logs.String(), "rule expression failed"); logged < 1 || logged > 2 {
		// r1 logs the kind once (its first read or write); a second line
		// can only come from r2, which shares the logger.
		t.Fatalf("failure logged %d times, want once per region:\n%s", logged, logs)
	}
	if !strings.Contains(logs.String(), "rule=numbered field=match") || !strings.Contains(logs.String(), "held under this rule") {
		t.Fatalf("log does not name the rule, the field and what happened:\n%s", logs)
	}

	// Listed among the keys holding siblings, with the failure.
	do(t, "PUT", r1.HTTPURL()+"/v1/kv/cart/1", []byte(`{"items":["a"]}`))
	ans := do(t, "GET", r1.HTTPURL()+"/v1/kv?conflicted=true", nil).json(t)
	keys := fmt.Sprint(ans["keys"])
	if keys != "[n/x]" {
		t.Fatalf("conflicted keys %s, want [n/x]: %v", keys, ans)
	}
	entry := ans["conflicted"].([]any)[0].(map[string]any)
	if entry["rule"] != "numbered" || entry["versions"] != 3.0 || !strings.Contains(fmt.Sprint(entry["error"]), "match") {
		t.Fatalf("conflicted entry %v", entry)
	}
	if got := metricLine(t, r1, `geogate_conflicted_keys{rule="numbered"} `); got != "1" {
		t.Fatalf("geogate_conflicted_keys{rule=numbered} = %q, want 1", got)
	}
	if got := metricLine(t, r1, `geogate_conflicted_keys{rule="carts"} `); got != "0" {
		t.Fatalf("geogate_conflicted_keys{rule=carts} = %q, want 0", got)
	}

	// Explain names the rule, the failing expression and the read.
	ex := do(t, "GET", r1.HTTPURL()+"/v1/admin/rules/explain?key=n/x", nil).json(t)
	if ex["rule"] != "numbered" || ex["strategy"] != "siblings" || !strings.Contains(fmt.Sprint(ex["held"]), "match") ||
		ex["supersedes_without_context"] != false || ex["read"].(map[string]any)["status"] != 300.0 || len(ex["tried"].([]any)) != 1 {
		t.Fatalf("explain n/x: %v", ex)
	}
	ex = do(t, "GET", r1.HTTPURL()+"/v1/admin/rules/explain?key=other", nil).json(t)
	if tried := ex["tried"].([]any); ex["rule"] != "default" || len(tried) != 3 || tried[0].(map[string]any)["result"] != "no match" {
		t.Fatalf("explain other: %v", ex)
	}
	if a := do(t, "GET", r1.HTTPURL()+"/v1/admin/rules/explain", nil); a.status != 400 {
		t.Fatalf("explain without key: %d", a.status)
	}
}

// TestRulesStatusAndMetrics: /v1/status shows the set in effect, and a
// reload changes it, its hash and the reload metrics.
func TestRulesStatusAndMetrics(t *testing.T) {
	initial, err := rules.ParseRules([]byte(ruleFile("stock-v1", "")), "initial")
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, []string{"us-east"}, "all-to-all", initial)
	n := c.Node("us-east")
	st := do(t, "GET", n.HTTPURL()+"/v1/status", nil).json(t)["rules"].(map[string]any)
	hash := st["hash"].(string)
	if len(hash) != 16 || st["count"] != 2.0 || st["source"] != "config" || st["loaded_at"] == "" {
		t.Fatalf("status rules %v", st)
	}
	if got := metricLine(t, n, "geogate_rules_last_reload_successful "); got != "1" {
		t.Fatalf("last reload successful %q", got)
	}
	if got := metricLine(t, n, fmt.Sprintf(`geogate_rules_info{count="2",hash=%q,source="config"} `, hash)); got != "1" {
		t.Fatalf("info metric %q", got)
	}
	path := filepath.Join(t.TempDir(), "us-east.yaml")
	if err := os.WriteFile(path, []byte(ruleFile("stock-v2", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, changed, err := n.reloadRules(path); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	st = do(t, "GET", n.HTTPURL()+"/v1/status", nil).json(t)["rules"].(map[string]any)
	if st["hash"] == hash || st["source"] != path {
		t.Fatalf("after a reload: %v (hash before %s)", st, hash)
	}
	if metricLine(t, n, "geogate_rules_last_reload_success_timestamp_seconds ") == "" {
		t.Fatal("no reload timestamp")
	}
}

// TestReloadRunsLintChecks: a rule file lint rejects (a catch-all first, an
// order-dependent merge, a missing rules: key) is refused on reload: the
// current set stays, the failure is counted and shown in the metrics.
func TestReloadRunsLintChecks(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	initial, err := rules.ParseRules([]byte(ruleFile("stock-v1", "")), "initial")
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, []string{"us-east"}, "all-to-all", initial, func(s *ClusterSpec) {
		s.Options = func(string) Options { return Options{Logger: logger} }
	})
	n := c.Node("us-east")
	path := filepath.Join(t.TempDir(), "us-east.yaml")
	bad := map[string]string{
		"catch-all first":       strings.Replace(ruleFile("stock-v2", ""), "  - name: stock-v2\n", "  - {name: all, match: 'true', strategy: lww}\n  - name: stock-v2\n", 1),
		"order-dependent merge": ruleFile("stock-v2", "  - {name: m, match: 'key startsWith \"m/\"', strategy: custom, merge: 'merge(siblings)'}\n"),
		"renamed rules key":     strings.Replace(ruleFile("stock-v2", ""), "rules:", "rule:", 1),
	}
	want := map[string]string{"catch-all first": "can never match", "order-dependent merge": "depends on the order", "renamed rules key": `did you mean \"rules\"`}
	for name, content := range bad {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := n.reloadRules(path)
		if err == nil || !strings.Contains(err.Error(), path+":") || !strings.Contains(fmt.Sprintf("%q", err.Error()), want[name]) {
			t.Fatalf("%s: reload error %v; want a located %q", name, err, want[name])
		}
		if r, _ := n.rules().Match("stock/1"); r.Name() != "stock-v1" {
			t.Fatalf("%s: rules changed to %s", name, r.Name())
		}
	}

	// Through the watcher: counted, the gauge drops to 0, and a changed
	// setting other than rules is logged as needing a restart.
	if err := os.WriteFile(path, []byte(ruleFile("stock-v1", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.WatchRules(ctx, path, 10*time.Millisecond)
	}()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 5*time.Second, "the reload counter", func() bool { return reloadCount(t, n, "error") == 0 })
	replaceFile(t, path, strings.Replace(bad["catch-all first"], "region: us-east", "region: us-east\nhttp: {listen: 127.0.0.1:9999}", 1))
	eventually(t, 5*time.Second, "the refused reload to be counted", func() bool { return reloadCount(t, n, "error") == 1 })
	if got := metricLine(t, n, "geogate_rules_last_reload_successful "); got != "0" {
		t.Fatalf("last reload successful = %q after a refused file", got)
	}
	if !strings.Contains(logs.String(), "take effect only after a restart") || !strings.Contains(logs.String(), "keys=http.listen") {
		t.Fatalf("changed key not logged as needing a restart:\n%s", logs)
	}
	replaceFile(t, path, ruleFile("stock-v3", ""))
	eventually(t, 5*time.Second, "rule stock-v3", func() bool { r, _ := n.rules().Match("stock/1"); return r.Name() == "stock-v3" })
	// The gauge is set just after the rules take effect (setRules).
	eventually(t, 5*time.Second, "last reload successful = 1 after a good file", func() bool {
		return metricLine(t, n, "geogate_rules_last_reload_successful ") == "1"
	})
}

// TestNewRefusesLintErrors: a config built in code (not validated) whose
// rules lint rejects does not start, and nothing is written to its data
// directory.
func TestNewRefusesLintErrors(t *testing.T) {
	spec := ClusterSpec{Regions: []string{"r1"}, DataDir: t.TempDir()}
	spec.Topology.Kind = "all-to-all"
	cfg, err := spec.RegionConfig(0)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = []rules.Spec{{Name: "all", Match: "true", Strategy: "lww"}, {Name: "carts", Match: `key startsWith "cart/"`, Strategy: "siblings"}}
	var logs bytes.Buffer
	n, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil {
		n.Close()
		t.Fatal("New accepted a catch-all rule before another")
	}
	if !strings.Contains(err.Error(), "can never match") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Fatalf("a refused start touched the data directory: %v", err)
	}
}

// TestRuleFailureLogIsRateLimited: a kind of rule failure is logged at
// once, then at most once per failureLogEvery with the number of failures
// not logged meanwhile; another kind has its own allowance; every failure
// is counted.
func TestRuleFailureLogIsRateLimited(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := startCluster(t, []string{"r1"}, "all-to-all", nil, func(s *ClusterSpec) {
		s.Options = func(string) Options { return Options{Logger: logger} }
	})
	n := c.Node("r1")
	b := n.book
	now := time.Unix(1_000_000, 0)
	b.now = func() time.Time { return now }
	fail := func(rule, key string) {
		b.failed(key, &rules.EvalError{Rule: rule, Field: "match", Key: key, Err: errors.New("boom")})
	}
	logged := func() []string {
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "rule expression failed") {
				out = append(out, l)
			}
		}
		return out
	}
	fail("r", "k1")
	now = now.Add(time.Second)
	fail("r", "k2")
	fail("r", "k3")
	if got := logged(); len(got) != 1 || !strings.Contains(got[0], "key=k1") {
		t.Fatalf("after three failures within a second, logged %q; want only the first", got)
	}
	now = now.Add(failureLogEvery)
	fail("r", "k4")
	got := logged()
	if len(got) != 2 || !strings.Contains(got[1], "key=k4") || !strings.Contains(got[1], "suppressed_since_last_log=2") {
		t.Fatalf("a minute later, logged %q; want k4's line saying 2 were suppressed", got)
	}
	fail("other", "k5")
	if got := logged(); len(got) != 3 || !strings.Contains(got[2], "rule=other") {
		t.Fatalf("another rule's failure: logged %q; want it at once", got)
	}
	if v := metricLine(t, n, `geogate_rule_errors_total{field="match",rule="r"} `); v != "4" {
		t.Fatalf("geogate_rule_errors_total{rule=r} = %q, want 4: every failure counted, logged or not", v)
	}
}

// anyObserver marks every change that leaves siblings as needing an
// observation, and is never started: the changes stay pending in the
// store, as a crash between a commit and its observation leaves them.
type anyObserver struct{}

func (anyObserver) Notable(c store.Change) bool                { return len(c.After.Versions) > 1 }
func (anyObserver) Observe(store.Change) []store.ConflictEntry { panic("never started") }

// TestRestartWithUnobservedChanges: a region whose store holds changes a
// crash left unobserved starts cleanly (the store observed them while the
// node was still being built, before the rule book existed, and crashed
// the process), and logs their conflicts under the region's rules.
func TestRestartWithUnobservedChanges(t *testing.T) {
	c := startCluster(t, []string{"solo"}, "all-to-all", []rules.Spec{{Name: "newest", Match: "true", Strategy: "lww"}})
	dir := c.Node("solo").cfg.DataDir
	if err := c.Stop("solo"); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(store.Options{Dir: filepath.Join(dir, "store"), Region: "solo", Sync: true,
		Clock: conflict.NewClock(conflict.WallClock, 0), Observer: anyObserver{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 { // no contexts: each write after the first adds a sibling
		if _, err := s.Write(context.Background(), store.Mutation{Key: "k", Value: store.MustParseDoc(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.PendingObservations(); n != 3 {
		t.Fatalf("%d pending observations, want 3", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if err := c.StartRegion(context.Background(), "solo"); err != nil {
		t.Fatal(err)
	}
	n := c.Node("solo")
	eventually(t, 20*time.Second, "the pending observations to be logged", func() bool { return n.Store().PendingObservations() == 0 })
	cs, err := n.Store().Conflicts("k", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 {
		t.Fatalf("%d conflict-log entries for k, want 3: %+v", len(cs), cs)
	}
	for _, e := range cs {
		if e.Rule != "newest" || len(e.Discarded) == 0 {
			t.Errorf("entry %d: rule %q with %d discarded, want rule newest discarding versions", e.Seq, e.Rule, len(e.Discarded))
		}
	}
}
