package rules

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/geogate/geogate/conflict"
)

// FuzzCompile compiles any expression in each field a rule has, and runs
// what compiles on a small frontier: Compile and the evaluations never
// panic, a failing evaluation is an *EvalError (the rule keeps the
// versions), and a read shows one of the three outcomes.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{`key startsWith "a"`, `true`, `version.value.n`, `merge(siblings)`, `{"items": union(map(siblings, #.items))}`,
		`siblings[9]`, `1/0`, `now()`, `key + 1`, `value.region ?? "r1"`, `maxBy(versions, "hlc")`, `let x = 1; x`} {
		f.Add(s, uint8(0))
	}
	versions := []conflict.Version{
		{Dot: conflict.Dot{Actor: "r1~a", Counter: 1}, Value: json.RawMessage(`{"n":1,"items":["a"]}`), Origin: "r1", HLC: conflict.HLC{Wall: 1}},
		{Dot: conflict.Dot{Actor: "r2~b", Counter: 2}, Value: json.RawMessage(`{"n":"x","items":null}`), Origin: "r2", HLC: conflict.HLC{Wall: 2}},
		{Dot: conflict.Dot{Actor: "r3~c", Counter: 3}, Deleted: true, Origin: "r3", HLC: conflict.HLC{Wall: 3}},
	}
	f.Fuzz(func(t *testing.T, expr string, field uint8) {
		spec := Spec{Name: "f", Match: "true", Strategy: string(StrategyCustom)}
		switch field % 5 {
		case 0:
			spec.Match, spec.Strategy = expr, string(StrategyLWW)
		case 1:
			spec.Select = expr
		case 2:
			spec.Merge = expr
		case 3:
			spec.OnRead = expr
		case 4:
			spec.Strategy, spec.Home = string(StrategyHomeRegion), expr
		}
		set, err := Compile([]Spec{spec}, Options{Regions: []string{"r1", "r2", "r3"}})
		if err != nil {
			return
		}
		r, err := set.Match("k")
		if r == nil {
			if !errors.Is(err, ErrNoRule) {
				t.Fatalf("no rule and no ErrNoRule: %v", err)
			}
			return
		}
		res, err := r.Resolve("k", "r1", versions)
		if err != nil {
			if _, ok := err.(*EvalError); !ok {
				t.Fatalf("Resolve failed with %T %v, want an *EvalError", err, err)
			}
		}
		switch res.Outcome {
		case OutcomeOne, OutcomeSiblings, OutcomeNone:
		default:
			t.Fatalf("Resolve gave outcome %v", res.Outcome)
		}
		r.MergeOnWrite("k", "r1", versions) //nolint:errcheck // must not panic
		r.Home("k", versions[0].Value)      //nolint:errcheck // must not panic
	})
}
