package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geogate/geogate/rules"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// reloadCount reads geogate_rule_reloads_total{result} from the node's
// registry (-1 when the series does not exist).
func reloadCount(t *testing.T, n *Node, result string) float64 {
	t.Helper()
	families, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "geogate_rule_reloads_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// replaceFile writes content next to path and renames it over path, as
// configuration management tools do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// ruleFile renders a region config whose rules send stock/ keys to a rule
// named stockRule.
func ruleFile(stockRule, extra string) string {
	return fmt.Sprintf(`region: us-east
regions:
  us-east: {http: "http://127.0.0.1:7101", nats: "nats://127.0.0.1:4222"}
rules:
  - name: %s
    match: 'key startsWith "stock/"'
    strategy: custom
    select: 'version.value.updated_at'
%s  - name: default
    match: 'true'
    strategy: lww
`, stockRule, extra)
}

func TestWatchRulesReload(t *testing.T) {
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

	url := n.HTTPURL() + "/v1/kv/stock/1"
	if a := do(t, "PUT", url, []byte(`{"qty": 3, "updated_at": 10}`)); a.status != 200 {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	rule := func() string {
		a := do(t, "GET", url+"?meta=true", nil)
		if a.status != 200 {
			t.Fatalf("GET meta: %d %s", a.status, a.body)
		}
		name, _ := a.json(t)["rule"].(string)
		if h := a.header.Get(HeaderRule); h != name {
			t.Fatalf("%s header %q, meta rule %q", HeaderRule, h, name)
		}
		return name
	}
	if got := rule(); got != "stock-v1" {
		t.Fatalf("rule before any reload: %q", got)
	}
	eventually(t, 5*time.Second, "the reload counter to be registered", func() bool { return reloadCount(t, n, "ok") == 0 })

	// A new rule set, replaced by rename: in effect after a poll.
	replaceFile(t, path, ruleFile("stock-v2", "  - name: carts\n    match: 'key startsWith \"cart/\"'\n    strategy: siblings\n"))
	eventually(t, 5*time.Second, "rule stock-v2 to govern stock/1", func() bool { return rule() == "stock-v2" })
	if ok, bad := reloadCount(t, n, "ok"), reloadCount(t, n, "error"); ok != 1 || bad != 0 {
		t.Fatalf("after a good reload: ok=%v error=%v, want 1 and 0", ok, bad)
	}
	if !strings.Contains(logs.String(), "msg=\"rules reloaded\"") || !strings.Contains(logs.String(), "rules=3") {
		t.Fatalf("no \"rules reloaded\" log with the count:\n%s", logs)
	}

	// A broken file (an unknown function): the old rules stay, the failure
	// is counted once and logged with its location. (Replaced by rename:
	// a file written in place can be caught half-written and stable for a
	// 10 ms poll on a loaded machine, which is a second failure.)
	broken := strings.Replace(ruleFile("stock-v3", ""), "version.value.updated_at", "newest(version.value.updated_at)", 1)
	replaceFile(t, path, broken)
	eventually(t, 5*time.Second, "the failed reload to be counted", func() bool { return reloadCount(t, n, "error") == 1 })
	if got := rule(); got != "stock-v2" {
		t.Fatalf("after a failed reload the rule is %q, want stock-v2 kept", got)
	}
	errLog := logs.String()
	if !strings.Contains(errLog, "level=ERROR") || !strings.Contains(errLog, "rules reload failed") ||
		!strings.Contains(errLog, path+":8:14: error: rule \\\"stock-v3\\\": select: ") {
		t.Fatalf("no located error log for the broken file:\n%s", errLog)
	}

	// The next good file reloads; the broken content was not retried on
	// every poll in between (the error count is still 1).
	replaceFile(t, path, ruleFile("stock-v4", ""))
	eventually(t, 5*time.Second, "rule stock-v4 to govern stock/1", func() bool { return rule() == "stock-v4" })
	if ok, bad := reloadCount(t, n, "ok"), reloadCount(t, n, "error"); ok != 2 || bad != 1 {
		t.Fatalf("after recovering: ok=%v error=%v, want 2 and 1", ok, bad)
	}

	// Touching the file without changing its rules reloads nothing.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the unchanged file to be noticed", func() bool {
		return strings.Contains(logs.String(), "rule file changed but its rules did not")
	})
	if ok := reloadCount(t, n, "ok"); ok != 2 {
		t.Fatalf("an unchanged rule list counted as a reload: ok=%v", ok)
	}

	// A file that disappears keeps the rules and counts one error.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the missing file to be counted", func() bool { return reloadCount(t, n, "error") == 2 })
	if got := rule(); got != "stock-v4" {
		t.Fatalf("after the file vanished the rule is %q", got)
	}
}

func TestWatchRulesStops(t *testing.T) {
	c := startCluster(t, []string{"us-east"}, "all-to-all", nil)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(ruleFile("stock", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Node("us-east").WatchRules(ctx, path, 0) // default interval
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchRules did not return after its context was cancelled")
	}
}

// TestReloadRefusesEmptyFile: an empty file (a write in progress, or a
// mistake) never reloads as "no rules, so the default".
func TestReloadRefusesEmptyFile(t *testing.T) {
	initial, err := rules.ParseRules([]byte(ruleFile("stock-v1", "")), "initial")
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, []string{"us-east"}, "all-to-all", initial)
	n := c.Node("us-east")
	path := filepath.Join(t.TempDir(), "us-east.yaml")
	if err := os.WriteFile(path, []byte("\n  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.reloadRules(path); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
	if r, _ := n.rules().Match("stock/1"); r == nil || r.Name() != "stock-v1" {
		t.Fatalf("rules changed after an empty file")
	}
}
