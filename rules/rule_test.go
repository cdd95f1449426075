package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/expr-lang/expr/file"

	"github.com/geogate/geogate/conflict"
)

var testRegions = []string{"us-east", "eu-west", "ap-south"}

// designSpecs is the example rule list the README's Rules section opens
// with: one rule of each strategy and a catch-all.
func designSpecs() []Spec {
	return []Spec{
		{Name: "user-profiles", Match: `key startsWith "user/"`, Strategy: "home_region", Home: `value.region ?? "us-east"`, Fallback: "reject"},
		{Name: "carts", Match: `key startsWith "cart/"`, Strategy: "siblings", OnRead: `{"items": union(map(siblings, #.items))}`},
		{Name: "stock", Match: `key startsWith "stock/"`, Strategy: "custom", Select: `version.value.updated_at`},
		{Name: "default", Match: `true`, Strategy: "lww"},
	}
}

func mustCompile(t *testing.T, specs []Spec, opts Options) *Set {
	t.Helper()
	set, err := Compile(specs, opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return set
}

func TestMatchOrder(t *testing.T) {
	specs := append([]Spec{{Name: "vip-carts", Match: `key startsWith "cart/vip-"`, Strategy: "lww"}}, designSpecs()...)
	set := mustCompile(t, specs, Options{Regions: testRegions})
	tests := []struct{ key, want string }{
		{"user/1", "user-profiles"},
		{"cart/vip-7", "vip-carts"}, // the earlier rule wins over carts
		{"cart/7", "carts"},
		{"stock/a", "stock"},
		{"other", "default"},
		{"", "default"},
		{"users/1", "default"},
	}
	for _, tt := range tests {
		r, err := set.Match(tt.key)
		if err != nil {
			t.Fatalf("Match(%q): %v", tt.key, err)
		}
		if r.Name() != tt.want {
			t.Errorf("Match(%q) = %s, want %s", tt.key, r.Name(), tt.want)
		}
	}
	if got := len(set.Rules()); got != len(specs) {
		t.Errorf("Rules() has %d rules, want %d", got, len(specs))
	}
	for i, r := range set.Rules() {
		if r.Index() != i || r.Spec() != specs[i] {
			t.Errorf("rule %d: index %d spec %+v", i, r.Index(), r.Spec())
		}
	}
}

// A match that fails at run time stops the search: the key is held under
// the failing rule (siblings, nothing collapsed), never passed on to a
// later rule.
func TestMatchNoRuleAndRuntimeError(t *testing.T) {
	set := mustCompile(t, []Spec{
		{Name: "broken", Match: `int(key) > 3`, Strategy: "lww"}, // fails for non-numeric keys
		{Name: "a", Match: `key startsWith "a/"`, Strategy: "lww"},
	}, Options{})

	r, err := set.Match("a/1")
	if r == nil || r.Name() != "broken" {
		t.Fatalf("Match(a/1) rule = %v, want broken (held), not the later rule a", r)
	}
	if !errors.Is(err, ErrEval) {
		t.Fatalf("Match(a/1) error = %v, want the broken rule's ErrEval", err)
	}
	var ee *EvalError
	if !errors.As(err, &ee) || ee.Rule != "broken" || ee.Field != "match" || ee.Key != "a/1" {
		t.Fatalf("error %v does not name rule broken / match / key a/1", err)
	}
	if r.Held() == nil || r.Strategy() != StrategySiblings || r.SupersedesWithoutContext() || r.HasMerge() || r.HasHome() {
		t.Fatalf("held rule: held %v strategy %s supersedes %v", r.Held(), r.Strategy(), r.SupersedesWithoutContext())
	}
	if r.Spec().Strategy != "lww" || r.Index() != 0 {
		t.Fatalf("held rule lost its spec: %+v #%d", r.Spec(), r.Index())
	}
	vs := []conflict.Version{ver("us-east", 1, 9, `1`), ver("eu-west", 1, 1, `2`)}
	res, err := r.Resolve("a/1", "us-east", vs)
	if err != nil || res.Outcome != OutcomeSiblings || len(res.Siblings) != 2 || res.Kept != nil || len(res.Discarded) != 0 {
		t.Fatalf("held rule resolved %+v, %v; want both versions as siblings, nothing discarded", res, err)
	}

	r, err = set.Match("7")
	if r == nil || r.Name() != "broken" || err != nil || r.Held() != nil || r.Strategy() != StrategyLWW {
		t.Fatalf("Match(7) = %v, %v; want broken, nil", r, err)
	}

	r, err = set.Match("5/1")
	if r == nil || r.Held() == nil || !errors.Is(err, ErrEval) {
		t.Fatalf("Match(5/1) = %v, %v; want broken held", r, err)
	}
	set2 := mustCompile(t, []Spec{{Name: "a", Match: `key startsWith "a/"`, Strategy: "lww"}}, Options{})
	r, err = set2.Match("b/1")
	if r != nil || !errors.Is(err, ErrNoRule) {
		t.Fatalf("Match(b/1) = %v, %v; want nil, ErrNoRule", r, err)
	}
}

func TestEvalErrorKind(t *testing.T) {
	set := mustCompile(t, []Spec{
		{Name: "r", Match: `true`, Strategy: "siblings", OnRead: `siblings[len(siblings) + 2]`},
	}, Options{})
	r, _ := set.Match("k")
	kinds := map[string]bool{}
	for n := 2; n <= 4; n++ {
		var vs []conflict.Version
		for i := range n {
			vs = append(vs, ver(testRegions[i%3], uint64(i+1), int64(i), `{"a": 1}`))
		}
		_, err := r.Resolve(fmt.Sprintf("key/%d", n), "us-east", vs)
		var ee *EvalError
		if !errors.As(err, &ee) {
			t.Fatalf("no EvalError: %v", err)
		}
		kinds[ee.Kind()] = true
		if strings.Contains(ee.Kind(), "key/") || !strings.HasPrefix(ee.Kind(), "on_read: ") {
			t.Fatalf("kind %q", ee.Kind())
		}
	}
	if len(kinds) != 1 {
		t.Fatalf("one failing expression gave kinds %v; want one", kinds)
	}
}

func TestDefault(t *testing.T) {
	set := Default()
	r, err := set.Match("anything")
	if err != nil || r.Name() != "default" || r.Strategy() != StrategyLWW {
		t.Fatalf("Default().Match = %v, %v", r, err)
	}
}

func TestCompileErrors(t *testing.T) {
	base := Spec{Name: "r", Match: "true", Strategy: "lww"}
	with := func(f func(*Spec)) []Spec { s := base; f(&s); return []Spec{s} }
	tests := []struct {
		name  string
		specs []Spec
		field string
		msg   string
	}{
		{"empty list", nil, "", "empty"},
		{"no name", with(func(s *Spec) { s.Name = "" }), "name", "needs a name"},
		{"no match", with(func(s *Spec) { s.Match = "" }), "match", "needs a match"},
		{"match not bool", with(func(s *Spec) { s.Match = `key + "x"` }), "match", "bool"},
		{"unknown strategy", with(func(s *Spec) { s.Strategy = "newest" }), "strategy", "unknown strategy"},
		{"select on lww", with(func(s *Spec) { s.Select = "1" }), "select", "does not apply"},
		{"home_region without home", with(func(s *Spec) { s.Strategy = "home_region" }), "home", "needs a home"},
		{"bad home mode", with(func(s *Spec) { s.Strategy, s.Home, s.HomeMode = "home_region", `"us-east"`, "teleport" }), "home_mode", "unknown home_mode"},
		{"bad fallback", with(func(s *Spec) { s.Strategy, s.Home, s.Fallback = "home_region", `"us-east"`, "merge" }), "fallback", "unknown fallback"},
		{"home not a region", with(func(s *Spec) { s.Strategy, s.Home = "home_region", `value.region ?? "mars"` }), "home", `"mars" is not a region`},
		{"home not a string", with(func(s *Spec) { s.Strategy, s.Home = "home_region", `1 + 2` }), "home", "string"},
		{"on_read without siblings fallback", with(func(s *Spec) { s.Strategy, s.Home, s.OnRead = "home_region", `"us-east"`, "siblings" }), "on_read", "fallback: siblings"},
		{"custom with nothing", with(func(s *Spec) { s.Strategy = "custom" }), "strategy", "needs select, merge or on_read"},
		{"select and merge", with(func(s *Spec) { s.Strategy, s.Select, s.Merge = "custom", "1", "siblings" }), "merge", "exclude each other"},
		{"select not a score", with(func(s *Spec) { s.Strategy, s.Select = "custom", "[1, 2]" }), "select", "number, string or bool"},
		{"resolver not a region", with(func(s *Spec) { s.Strategy, s.Merge, s.Resolver = "custom", "merge(siblings)", "mars" }), "resolver", "not a region"},
		{"unknown variable", with(func(s *Spec) { s.Strategy, s.OnRead = "custom", "foo" }), "on_read", "unknown name foo"},
		{"region in select", with(func(s *Spec) { s.Strategy, s.Select = "custom", `region == "us-east" ? 1 : 0` }), "select", "unknown name region"},
		{"value in match", with(func(s *Spec) { s.Match = `value.x == 1` }), "match", "unknown name value"},
		{"now", with(func(s *Spec) { s.Strategy, s.Select = "custom", "now().Unix()" }), "select", "now() reads the clock"},
		{"now in match", with(func(s *Spec) { s.Match = `now().Year() > 2000` }), "match", "now()"},
		{"timezone", with(func(s *Spec) { s.Strategy, s.OnRead = "custom", `timezone("Europe/Paris")` }), "on_read", "timezone()"},
		{"Local", with(func(s *Spec) { s.Strategy, s.OnRead = "custom", `date("2024-01-01").Local().Hour()` }), "on_read", "Local()"},
		{"oversized", with(func(s *Spec) { s.Match = strings.Repeat("1 + ", 1500) + "1 > 0" }), "match", "exceeds maximum allowed nodes"},
		{"syntax", with(func(s *Spec) { s.Match = `key startsWith` }), "match", "unexpected token"},
		{"duplicate name", []Spec{base, base}, "name", "already used"},
		{"name with spaces", with(func(s *Spec) { s.Name = " r" }), "name", "leading or trailing spaces"},
		{"blank home", with(func(s *Spec) { s.Strategy, s.Home = "home_region", "  " }), "home", "needs a home"},
		{"blank select", with(func(s *Spec) { s.Strategy, s.Select = "custom", " \n" }), "strategy", "needs select, merge or on_read"},
		{"on_read on lww", with(func(s *Spec) { s.OnRead = "siblings" }), "on_read", "does not apply to strategy lww"},
		{"on_read with select", with(func(s *Spec) { s.Strategy, s.Select, s.OnRead = "custom", "1", "siblings" }), "on_read", "no effect with select"},
		{"custom home without merge", with(func(s *Spec) { s.Strategy, s.Select, s.Home = "custom", "1", `"us-east"` }), "home", "there is no merge"},
		{"home and resolver", with(func(s *Spec) {
			s.Strategy, s.Merge, s.Home, s.Resolver = "custom", "merge(siblings)", `"us-east"`, "eu-west"
		}), "resolver", "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.specs, Options{Regions: testRegions})
			if err == nil {
				t.Fatal("Compile succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not contain %q", err, tt.msg)
			}
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CompileError", err)
			}
			if ce.Field != tt.field {
				t.Fatalf("error names field %q, want %q (%v)", ce.Field, tt.field, err)
			}
		})
	}
}

func TestCompileErrorLocation(t *testing.T) {
	_, err := Compile([]Spec{{Name: "carts", Match: "true", Strategy: "siblings",
		OnRead: "{\"items\":\n  union(map(siblings, #.itms)) + bogus}"}}, Options{})
	var ce *CompileError
	if !errors.As(err, &ce) || ce.Rule != "carts" || ce.Field != "on_read" {
		t.Fatalf("error %v: want a CompileError for carts/on_read", err)
	}
	fe := ce.ExprError()
	if fe == nil {
		t.Fatalf("no expression error in %v", err)
	}
	if fe.Line != 2 || fe.Column != 33 {
		t.Errorf("location %d:%d, want 2:33 (0-based column of bogus)", fe.Line, fe.Column)
	}
	msg := err.Error()
	for _, want := range []string{`rule "carts" (#1): on_read:`, "unknown name bogus (2:34)", "^"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	var plain *file.Error
	if !errors.As(err, &plain) {
		t.Errorf("errors.As cannot reach the *file.Error")
	}
}

func TestCompileOptions(t *testing.T) {
	if _, err := Compile(designSpecs(), Options{Regions: []string{"a", "a"}}); err == nil {
		t.Error("repeated region accepted")
	}
	if _, err := Compile(designSpecs(), Options{Regions: testRegions, DefaultResolver: "mars"}); err == nil {
		t.Error("default resolver outside the regions accepted")
	}
	small := Spec{Name: "r", Match: `key startsWith "a" || key startsWith "b"`, Strategy: "lww"}
	if _, err := Compile([]Spec{small}, Options{MaxNodes: 3}); err == nil {
		t.Error("MaxNodes 3 accepted a 7-node expression")
	}
	if _, err := Compile([]Spec{small}, Options{}); err != nil {
		t.Errorf("default MaxNodes refused a small expression: %v", err)
	}
}

func TestHome(t *testing.T) {
	set := mustCompile(t, append([]Spec{
		{Name: "by-key", Match: `key startsWith "k/"`, Strategy: "home_region", HomeMode: "redirect", Fallback: "siblings",
			Home: `key matches "^k/eu" ? "eu-west" : "ap-south"`},
		{Name: "broken", Match: `key startsWith "b/"`, Strategy: "home_region", Home: `value.region.name`},
		{Name: "merged", Match: `key startsWith "m/"`, Strategy: "custom", Merge: "merge(siblings)", Home: `"ap-south"`},
	}, designSpecs()...), Options{Regions: testRegions})
	tests := []struct {
		key, value, want string
		err              error
	}{
		{"user/1", `{"region": "eu-west"}`, "eu-west", nil},
		{"user/1", `{"name": "x"}`, "us-east", nil},
		{"user/1", ``, "us-east", nil},    // delete: value null
		{"user/1", `[1, 2]`, "", ErrEval}, // a field of an array is an error
		{"user/1", `{"region": "mars"}`, "", ErrBadHome},
		{"user/1", `{"region": 7}`, "", ErrBadHome},
		{"k/eu-1", `{}`, "eu-west", nil},
		{"k/us-1", `{}`, "ap-south", nil},
		{"b/1", `{"region": "us-east"}`, "", ErrEval}, // field of a string
		{"m/1", `{}`, "ap-south", nil},
		{"cart/1", `{}`, "", ErrNoHome},
	}
	for _, tt := range tests {
		r, _ := set.Match(tt.key)
		got, err := r.Home(tt.key, json.RawMessage(tt.value))
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Home(%s, %s) = %q, %v; want %v", tt.key, tt.value, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Home(%s, %s) = %q, %v; want %q", tt.key, tt.value, got, err, tt.want)
		}
	}
	r, _ := set.Match("k/eu")
	if r.HomeMode() != HomeRedirect || r.Fallback() != StrategySiblings {
		t.Errorf("by-key: mode %q fallback %q", r.HomeMode(), r.Fallback())
	}
	r, _ = set.Match("user/1")
	if r.HomeMode() != HomeForward || r.Fallback() != "" || !r.HasHome() {
		t.Errorf("user-profiles: mode %q fallback %q", r.HomeMode(), r.Fallback())
	}
	r, _ = set.Match("cart/1")
	if r.HomeMode() != "" || r.Fallback() != "" || r.HasHome() {
		t.Errorf("carts: mode %q fallback %q", r.HomeMode(), r.Fallback())
	}
}

func TestResolver(t *testing.T) {
	set := mustCompile(t, []Spec{
		{Name: "home", Match: `key startsWith "h/"`, Strategy: "custom", Merge: "merge(siblings)", Home: `value.region ?? "ap-south"`},
		{Name: "named", Match: `key startsWith "n/"`, Strategy: "custom", Merge: "merge(siblings)", Resolver: "eu-west"},
		{Name: "default", Match: `true`, Strategy: "custom", Merge: "merge(siblings)"},
	}, Options{Regions: testRegions, DefaultResolver: "eu-west"})
	tests := []struct {
		key, value, want string
		err              error
	}{
		{"h/1", `{"region": "us-east"}`, "us-east", nil},
		{"h/1", ``, "ap-south", nil},
		{"h/1", `{"region": "mars"}`, "", ErrBadHome}, // a failing home: nobody merges
		{"n/1", `{"region": "us-east"}`, "eu-west", nil},
		{"x/1", ``, "eu-west", nil},
	}
	for _, tt := range tests {
		r, _ := set.Match(tt.key)
		got, err := r.Resolver(tt.key, json.RawMessage(tt.value))
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("Resolver(%s, %s) = %q, %v; want %q, %v", tt.key, tt.value, got, err, tt.want, tt.err)
		}
		var ee *EvalError
		if tt.err != nil && (!errors.As(err, &ee) || ee.Field != "home" || ee.Rule != "home") {
			t.Errorf("Resolver error %v does not name rule home / field home", err)
		}
	}
	noDefault := mustCompile(t, []Spec{{Name: "d", Match: "true", Strategy: "custom", Merge: "merge(siblings)"}}, Options{Regions: testRegions})
	r, _ := noDefault.Match("x")
	if got, err := r.Resolver("x", nil); got != "us-east" || err != nil {
		t.Errorf("Resolver without DefaultResolver = %q, %v; want the first region", got, err)
	}
}

func TestSetHasMerge(t *testing.T) {
	opts := Options{Regions: []string{"a", "b"}}
	plain, err := Compile([]Spec{{Name: "d", Match: "true", Strategy: "lww"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	merging, err := Compile([]Spec{
		{Name: "c", Match: `key startsWith "c/"`, Strategy: "custom", Merge: `{"n": len(siblings)}`},
		{Name: "d", Match: "true", Strategy: "lww"},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if plain.HasMerge() || !merging.HasMerge() {
		t.Fatalf("HasMerge: plain %v, merging %v", plain.HasMerge(), merging.HasMerge())
	}
}
