package bench

import (
	"context"
	"os"
	"testing"

	"github.com/geogate/geogate/rules"
)

// TestRuleOverheadSmoke runs the rule-overhead measurement at a tiny size:
// it must produce both write rates, the four direct costs and the ratio
// (the handler runs check that each set governs the keys with the rule
// meant). GEOGATE_BENCH=1 runs it at full size and prints the figures.
func TestRuleOverheadSmoke(t *testing.T) {
	o := Options{Dir: t.TempDir(), Writes: 100}
	if os.Getenv("GEOGATE_BENCH") != "" {
		o = Options{Dir: t.TempDir(), Progress: os.Stdout}
	}
	rep := &Report{}
	if err := RuleOverhead(context.Background(), o, rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Figures) != 6 || len(rep.Ratios) != 1 {
		t.Fatalf("report has %d figures and %d ratios: %+v", len(rep.Figures), len(rep.Ratios), rep)
	}
	units := map[string]int{}
	for _, f := range rep.Figures {
		if !(f.Value > 0) {
			t.Fatalf("figure %q is %v", f.Name, f.Value)
		}
		units[f.Unit]++
	}
	if units["writes/s"] != 2 || units["ns/op"] != 4 {
		t.Fatalf("figures by unit: %v", units)
	}
	r := rep.Ratios[0]
	if !(r.Value > 0) || r.Target != ">= 0.91" || r.Met != (r.Value >= 0.91) {
		t.Fatalf("ratio %+v, want a positive median ratio against >= 0.91", r)
	}
	t.Logf("%s = %.2f (target %s, met %v)", r.Name, r.Value, r.Target, r.Met)
}

// TestOverheadRulesShape checks the benchmark's rule set is what it claims:
// it compiles, six rules come before the custom select rule that governs
// stock/ keys, one of them has an on_read, and each earlier rule governs
// keys of its own.
func TestOverheadRulesShape(t *testing.T) {
	specs := overheadRules()
	set, err := rules.Compile(specs, rules.Options{Regions: []string{overheadRegion}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := set.Match("stock/r0-1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Index() != 6 || r.Strategy() != rules.StrategyCustom || r.Spec().Select == "" {
		t.Fatalf("stock/ key: rule %+v; want the 7th rule, custom with select", r.Spec())
	}
	onRead := false
	for _, s := range specs[:6] {
		onRead = onRead || s.OnRead != ""
	}
	if !onRead {
		t.Error("no rule before the select rule has an on_read")
	}
	for key, want := range map[string]string{
		"user/1": "user-profiles", "cart/1": "carts", "session/0123456789abcdef": "sessions",
		"order/9/lines": "order-lines", "audit/2026-11/x": "audit", "flags/beta": "flags", "flags/team/a": "flags",
		"stock/A": "default", "session/xyz": "default",
	} {
		if r, err := set.Match(key); err != nil || r.Name() != want {
			t.Errorf("key %q: rule %v (err %v), want %s", key, r, err, want)
		}
	}
}
