package bench

import (
	"context"
	"maps"
	"os"
	"testing"

	"github.com/geogate/geogate/rules"
)

// TestRuleOverheadSmoke runs the rule-overhead measurement at a tiny size:
// it must produce both write rates, both CPU costs per write, the four
// direct costs and the ratio (the handler runs check that each set
// governs the keys with the rule meant). GEOGATE_BENCH=1 runs it at full size and prints the figures.
func TestRuleOverheadSmoke(t *testing.T) {
	o := Options{Dir: t.TempDir(), Writes: 100}
	if os.Getenv("GEOGATE_BENCH") != "" {
		o = Options{Dir: t.TempDir(), Progress: os.Stdout}
	}
	rep := &Report{}
	if err := RuleOverhead(context.Background(), o, rep); err != nil {
		t.Fatal(err)
	}
	units := map[string]int{}
	for _, f := range rep.Figures {
		if !(f.Value > 0) {
			t.Fatalf("figure %q is %v", f.Name, f.Value)
		}
		units[f.Unit]++
	}
	want := map[string]int{"writes/s": 2, "ns/op": 4, "us/write": 2}
	if _, ok := newProcessCPU().seconds(); !ok {
		delete(want, "us/write") // no process CPU time here: wall-clock ratio
	}
	if !maps.Equal(units, want) || len(rep.Ratios) != 1 {
		t.Fatalf("figures by unit %v (want %v), %d ratios: %+v", units, want, len(rep.Ratios), rep)
	}
	r := rep.Ratios[0]
	if !(r.Value > 0) || r.Target != ">= 0.91" || r.Met != (r.Value >= 0.91) {
		t.Fatalf("ratio %+v, want a positive ratio against >= 0.91", r)
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

// BenchmarkRuleEvaluation is the direct cost of RuleOverhead as a Go
// benchmark: Set.Match, and Set.Match plus Rule.Resolve on three
// concurrent versions, under the default set and overheadRules.
func BenchmarkRuleEvaluation(b *testing.B) {
	opts := rules.Options{Regions: []string{overheadRegion}}
	const key = "stock/r0-1"
	vs := overheadFrontier()
	for _, c := range []struct {
		name  string
		specs []rules.Spec
	}{{"default", []rules.Spec{{Name: "default", Match: "true", Strategy: "lww"}}}, {"overhead", overheadRules()}} {
		set, err := rules.Compile(c.specs, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/match", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := set.Match(key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/match+resolve", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, err := set.Match(key)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.Resolve(key, overheadRegion, vs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
