package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/topology"
	"pgregory.net/rapid"
)

// deployment returns a complete Config of the regions, written in that
// order, this region being the first.
func deployment(regions ...string) *Config {
	c := Default()
	c.Region = regions[0]
	c.Regions = map[string]Endpoints{}
	for i, r := range regions {
		c.Regions[r] = Endpoints{HTTP: fmt.Sprintf("http://127.0.0.1:%d", 7100+i), NATS: fmt.Sprintf("nats://127.0.0.1:%d", 7200+i)}
	}
	c.fileOrder = regions
	c.Complete()
	return c
}

// refusedKeys returns the keys of Validate's problems that match keep.
func refusedKeys(c *Config, keep func(key string) bool) []string {
	fields, _ := problems(c.Validate())
	return slices.DeleteFunc(fields, func(k string) bool { return !keep(k) })
}

// checkErr is what the gateway refuses a rule list for: the errors of
// rules.Check, joined (nil when there are none).
func checkErr(specs []rules.Spec, opts rules.Options) error {
	var errs []error
	for _, d := range rules.Errors(rules.Check(specs, opts)) {
		errs = append(errs, errors.New(d.String()))
	}
	return errors.Join(errs...)
}

func isRuleKey(k string) bool { return k == "rules" || strings.HasPrefix(k, "rules[") }

func isTopologyKey(k string) bool {
	if strings.HasPrefix(k, "topology.") || k == "regions" {
		return true
	}
	name, ok := strings.CutPrefix(k, "regions.")
	return ok && !strings.Contains(name, ".") // regions.<name>, not its endpoints
}

// TestValidateAgreesWithRules: for every rule, Validate refuses it exactly
// when rules.Check (what `geogate rules lint` and the gateway run) finds an
// error, under the key of the field Check names. The first cases are the
// ones where the two can part most easily: field combinations Compile
// refuses (which Validate must refuse too, or gateway.New fails at start),
// and blank or space-padded values Compile accepts (which Validate must
// accept).
func TestValidateAgreesWithRules(t *testing.T) {
	tests := []struct {
		name string
		spec rules.Spec
		key  string // the key Validate must report; "" means both accept
	}{
		// Disagreement: on_read where Compile refuses it.
		{"on_read on lww", rules.Spec{Name: "r", Match: "true", Strategy: "lww", OnRead: "siblings[0]"}, "rules[0].on_read"},
		{"on_read with select", rules.Spec{Name: "r", Match: "true", Strategy: "custom", Select: "1", OnRead: "siblings[0]"}, "rules[0].on_read"},
		{"on_read on home_region without fallback siblings", rules.Spec{Name: "r", Match: "true", Strategy: "home_region", Home: `"a"`, OnRead: "siblings[0]"}, "rules[0].on_read"},
		// Disagreement: home and resolver on custom rules.
		{"custom home without merge", rules.Spec{Name: "r", Match: "true", Strategy: "custom", Select: "1", Home: `"a"`}, "rules[0].home"},
		{"custom home and resolver", rules.Spec{Name: "r", Match: "true", Strategy: "custom", Merge: "siblings[0]", Home: `"a"`, Resolver: "b"}, "rules[0].resolver"},
		// Disagreement: blank and space-padded values (Compile now refuses).
		{"blank home", rules.Spec{Name: "r", Match: "true", Strategy: "home_region", Home: "  "}, "rules[0].home"},
		{"blank select", rules.Spec{Name: "r", Match: "true", Strategy: "custom", Select: " "}, "rules[0].strategy"},
		{"space-padded name", rules.Spec{Name: "r ", Match: "true", Strategy: "lww"}, "rules[0].name"},
		// Expressions: Validate used not to compile them.
		{"match not a bool", rules.Spec{Name: "r", Match: "1", Strategy: "lww"}, "rules[0].match"},
		{"home literal not a region", rules.Spec{Name: "r", Match: "true", Strategy: "home_region", Home: `value.region ?? "mars"`}, "rules[0].home"},
		{"unknown variable", rules.Spec{Name: "r", Match: "true", Strategy: "siblings", OnRead: "sibling"}, "rules[0].on_read"},
		// Table cases both always judged alike.
		{"lww", rules.Spec{Name: "r", Match: "true", Strategy: "lww"}, ""},
		{"siblings with on_read", rules.Spec{Name: "r", Match: `key startsWith "cart/"`, Strategy: "siblings", OnRead: `{"items": union(map(siblings, #.items))}`}, ""},
		{"home_region", rules.Spec{Name: "r", Match: "true", Strategy: "home_region", Home: `value.region ?? "b"`, HomeMode: "redirect", Fallback: "siblings", OnRead: `{"tags": union(map(siblings, #.tags))}`}, ""},
		{"custom merge with resolver", rules.Spec{Name: "r", Match: "true", Strategy: "custom", Merge: `{"tags": union(map(siblings, #.tags))}`, Resolver: "c"}, ""},
		// Lint errors refuse a config too.
		{"order-dependent merge", rules.Spec{Name: "r", Match: "true", Strategy: "custom", Merge: "merge(siblings)", Resolver: "c"}, "rules[0].merge"},
		{"order-dependent on_read", rules.Spec{Name: "r", Match: "true", Strategy: "siblings", OnRead: "siblings[0]"}, "rules[0].on_read"},
		{"unknown strategy", rules.Spec{Name: "r", Match: "true", Strategy: "newest"}, "rules[0].strategy"},
		{"resolver not a region", rules.Spec{Name: "r", Match: "true", Strategy: "custom", Merge: "merge(siblings)", Resolver: "mars"}, "rules[0].resolver"},
		{"no name", rules.Spec{Match: "true", Strategy: "lww"}, "rules[0].name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := deployment("a", "b", "c")
			c.Rules = []rules.Spec{tt.spec}
			got := refusedKeys(c, isRuleKey)
			compileErr := checkErr(c.Rules, c.RuleOptions())
			if (len(got) > 0) != (compileErr != nil) {
				t.Fatalf("Validate refused %q, rules.Compile: %v", got, compileErr)
			}
			if tt.key == "" {
				if len(got) > 0 {
					t.Fatalf("both refused a valid rule: %v", compileErr)
				}
				return
			}
			if !slices.Contains(got, tt.key) {
				t.Errorf("Validate refused %q, want key %s (Compile: %v)", got, tt.key, compileErr)
			}
		})
	}
}

// TestValidateAgreesWithTopology: Validate refuses the region names and the
// topology section exactly when Plan (what gateway.New builds) fails. The
// first case is an order that leaves a region out, which topology.New sees
// only if it is given the region list and the order apart.
func TestValidateAgreesWithTopology(t *testing.T) {
	tests := []struct {
		name    string
		regions []string
		topo    Topology
		key     string // "" means both accept
	}{
		{"order leaves a region out", []string{"a", "b", "c"}, Topology{Kind: TopologyCircular, Order: []string{"b", "a"}}, "topology.order"},
		{"order repeats a region", []string{"a", "b"}, Topology{Kind: TopologyCircular, Order: []string{"a", "b", "a"}}, "topology.order"},
		{"order names a stranger", []string{"a", "b"}, Topology{Kind: TopologyAllToAll, Order: []string{"a", "b", "x"}}, "topology.order"},
		{"star without hub", []string{"a", "b"}, Topology{Kind: TopologyStar}, "topology.hub"},
		{"stray hub not a region", []string{"a", "b"}, Topology{Kind: TopologyAllToAll, Hub: "x"}, "topology.hub"},
		{"kind in capitals", []string{"a", "b"}, Topology{Kind: "Star", Hub: "a"}, "topology.kind"},
		{"no kind", []string{"a"}, Topology{}, "topology.kind"},
		{"reserved region name", []string{"a", "hb"}, Topology{Kind: TopologyAllToAll}, "regions.hb"},
		{"region name too long", []string{"a", strings.Repeat("z", MaxRegionNameLen+1)}, Topology{Kind: TopologyAllToAll}, "regions." + strings.Repeat("z", MaxRegionNameLen+1)},
		{"circular with order", []string{"a", "b", "c"}, Topology{Kind: TopologyCircular, Order: []string{"c", "a", "b"}}, ""},
		{"star", []string{"a", "b", "c"}, Topology{Kind: TopologyStar, Hub: "b"}, ""},
		{"all-to-all with stray valid hub and order", []string{"a", "b"}, Topology{Kind: TopologyAllToAll, Hub: "a", Order: []string{"b", "a"}}, ""},
		{"longest name", []string{"a", strings.Repeat("z", MaxRegionNameLen)}, Topology{Kind: TopologyAllToAll}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := deployment(tt.regions...)
			c.Topology = tt.topo
			got := refusedKeys(c, isTopologyKey)
			_, planErr := c.Plan()
			if (len(got) > 0) != (planErr != nil) {
				t.Fatalf("Validate refused %q, Plan: %v", got, planErr)
			}
			if tt.key == "" {
				if len(got) > 0 {
					t.Fatalf("both refused a valid topology: %v", planErr)
				}
				return
			}
			if !slices.Contains(got, tt.key) {
				t.Errorf("Validate refused %q, want key %s (Plan: %v)", got, tt.key, planErr)
			}
			if !errors.Is(planErr, topology.ErrInvalidSpec) {
				t.Errorf("Plan error %v is not a topology spec error", planErr)
			}
		})
	}
}

// TestValidateAgreesProperty is the differential check on random
// deployments: Validate accepts the topology iff Plan succeeds, and the
// rules iff rules.Check finds no error, and a Config Validate accepts as a whole
// yields a plan whose ring is Order.
func TestValidateAgreesProperty(t *testing.T) {
	names := []string{"a", "b", "c", "hb", "Up", "x"}
	exprs := []string{"", " ", "true", "1", `"a"`, `"mars"`, "siblings[0]", "merge(siblings)", "version.hlc", "bogus"}
	rapid.Check(t, func(rt *rapid.T) {
		regions := rapid.SliceOfNDistinct(rapid.SampledFrom(names[:5]), 1, 4, rapid.ID[string]).Draw(rt, "regions")
		c := deployment(regions...)
		c.Topology = Topology{
			Kind:  rapid.SampledFrom([]string{"", TopologyAllToAll, TopologyStar, TopologyCircular, "mesh"}).Draw(rt, "kind"),
			Hub:   rapid.SampledFrom(append([]string{""}, names...)).Draw(rt, "hub"),
			Order: rapid.SliceOfN(rapid.SampledFrom(names), 0, 5).Draw(rt, "order"),
		}
		var specs []rules.Spec
		for i := range rapid.IntRange(1, 3).Draw(rt, "rules") {
			specs = append(specs, rules.Spec{
				Name:     rapid.SampledFrom([]string{"r", "s", " t", ""}).Draw(rt, fmt.Sprint("name", i)),
				Match:    rapid.SampledFrom(exprs).Draw(rt, fmt.Sprint("match", i)),
				Strategy: rapid.SampledFrom([]string{"lww", "siblings", "home_region", "custom", "x"}).Draw(rt, fmt.Sprint("strategy", i)),
				Home:     rapid.SampledFrom(exprs).Draw(rt, fmt.Sprint("home", i)),
				Select:   rapid.SampledFrom(exprs).Draw(rt, fmt.Sprint("select", i)),
				Merge:    rapid.SampledFrom(exprs).Draw(rt, fmt.Sprint("merge", i)),
				OnRead:   rapid.SampledFrom(exprs).Draw(rt, fmt.Sprint("on_read", i)),
				Fallback: rapid.SampledFrom([]string{"", "lww", "retry"}).Draw(rt, fmt.Sprint("fallback", i)),
				Resolver: rapid.SampledFrom(append([]string{""}, names...)).Draw(rt, fmt.Sprint("resolver", i)),
			})
		}
		c.Rules = specs

		topoRefused := refusedKeys(c, isTopologyKey)
		plan, planErr := c.Plan()
		if (len(topoRefused) > 0) != (planErr != nil) {
			rt.Fatalf("topology: Validate refused %q, Plan: %v", topoRefused, planErr)
		}
		if planErr == nil {
			// The gateway compiles under RuleOptions only with a sound
			// topology; otherwise Validate reports the topology first.
			ruleRefused := refusedKeys(c, isRuleKey)
			compileErr := checkErr(c.Rules, c.RuleOptions())
			if (len(ruleRefused) > 0) != (compileErr != nil) {
				rt.Fatalf("rules: Validate refused %q, Compile: %v", ruleRefused, compileErr)
			}
			if c.Topology.Kind == TopologyCircular && !slices.Equal(plan.Order(), c.Order()) {
				rt.Fatalf("plan ring %v, config Order %v", plan.Order(), c.Order())
			}
		}
	})
}
