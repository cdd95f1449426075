package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Strategy is how a rule handles concurrent writes to a key.
type Strategy string

// The strategies a rule can take.
const (
	// StrategyHomeRegion avoids conflicts: each key has a home region
	// that accepts its writes; conflicts arise only under Fallback.
	StrategyHomeRegion Strategy = "home_region"
	// StrategyLWW keeps the version greatest under conflict.CompareLWW.
	StrategyLWW Strategy = "lww"
	// StrategySiblings keeps every concurrent version; a read returns
	// them all (300) unless on_read combines them.
	StrategySiblings Strategy = "siblings"
	// StrategyCustom scores versions (select), merges them in the
	// resolver region (merge) and/or combines them on read (on_read).
	StrategyCustom Strategy = "custom"
)

// Home modes of a home_region rule: what a region other than the home does
// with a write.
const (
	HomeForward  = "forward"  // forward the write to the home region (default)
	HomeRedirect = "redirect" // answer 307 with the home region's URL
	HomeReject   = "reject"   // answer 421
)

// Defaults applied to a zero Options field.
const (
	DefaultMaxNodes       uint = 2000
	DefaultMaxInputBytes       = 8 << 20
	DefaultMaxResultBytes      = 1 << 20
	// DefaultMemoryBudget is expr's own default VM budget (its units:
	// roughly the elements of the collections an evaluation builds).
	DefaultMemoryBudget uint = 1_000_000
)

// Options are the deployment facts and limits rules are compiled under.
type Options struct {
	// Regions are the deployment's region names. When set, a home must
	// yield one of them and Resolver/DefaultResolver must name one.
	Regions []string
	// DefaultResolver is the region that runs merge for rules without
	// home or resolver; empty means Regions[0].
	DefaultResolver string
	// MaxNodes bounds the size of each expression (expr.MaxNodes);
	// 0 means DefaultMaxNodes.
	MaxNodes uint
	// MemoryBudget bounds what one evaluation may allocate (expr's VM
	// budget, in its units); 0 means DefaultMemoryBudget.
	MemoryBudget uint
	// MaxInputBytes bounds the total size of the JSON values handed to one
	// evaluation; larger frontiers are not evaluated (ErrTooLarge) and
	// are kept as siblings. 0 means DefaultMaxInputBytes.
	MaxInputBytes int
	// MaxResultBytes bounds the encoded result of merge and on_read;
	// 0 means DefaultMaxResultBytes.
	MaxResultBytes int
}

// config is the normalized Options shared by a Set's rules.
type config struct {
	regions        []string
	resolver       string
	maxNodes       uint
	memoryBudget   uint
	maxInputBytes  int
	maxResultBytes int
	// vms holds idle *vm.VM for run: reusing them saves their
	// allocations on every evaluation.
	vms sync.Pool
}

// newConfig applies defaults and validates opts.
func newConfig(opts Options) (*config, error) {
	c := &config{
		regions:        slices.Clone(opts.Regions),
		resolver:       opts.DefaultResolver,
		maxNodes:       opts.MaxNodes,
		memoryBudget:   opts.MemoryBudget,
		maxInputBytes:  opts.MaxInputBytes,
		maxResultBytes: opts.MaxResultBytes,
	}
	if c.maxNodes == 0 {
		c.maxNodes = DefaultMaxNodes
	}
	if c.memoryBudget == 0 {
		c.memoryBudget = DefaultMemoryBudget
	}
	if c.maxInputBytes <= 0 {
		c.maxInputBytes = DefaultMaxInputBytes
	}
	if c.maxResultBytes <= 0 {
		c.maxResultBytes = DefaultMaxResultBytes
	}
	seen := map[string]bool{}
	for _, r := range c.regions {
		if r == "" || seen[r] {
			return nil, fmt.Errorf("options: region %q is empty or repeated", r)
		}
		seen[r] = true
	}
	if c.resolver == "" && len(c.regions) > 0 {
		c.resolver = c.regions[0]
	}
	if c.resolver != "" && len(c.regions) > 0 && !seen[c.resolver] {
		return nil, fmt.Errorf("options: default resolver %q is not a region", c.resolver)
	}
	return c, nil
}

// isRegion reports whether name is a region of the deployment (any
// non-empty name when the regions are not known).
func (c *config) isRegion(name string) bool {
	if len(c.regions) == 0 {
		return name != ""
	}
	return slices.Contains(c.regions, name)
}

// Set is a compiled, ordered rule list. It is immutable and safe for
// concurrent use; a reload builds a new Set.
type Set struct {
	rules []*Rule
	cfg   *config
}

// Rule is one compiled rule. It is immutable and safe for concurrent use.
type Rule struct {
	spec     Spec
	index    int
	strategy Strategy
	homeMode string
	fallback Strategy
	cfg      *config

	match, home, sel, merge, onRead *vm.Program
	// held is set on the copy Set.Match returns for a key whose match
	// expression failed (see Held).
	held *EvalError
	// matchKey is match compiled to Go when it is a plain test of key
	// (see compileKeyTest); nil means match runs on the VM.
	matchKey keyTest
}

// Compile validates and compiles every rule once: each expression is
// parsed, type-checked against its environment (see the package
// documentation) and bounded by Options.MaxNodes; fields that do not apply
// to the rule's strategy, unknown strategies and modes, missing, repeated
// or space-padded names and non-region names are refused. A blank
// expression (only spaces) counts as unset. Compile is the one judge of a
// rule list: the config validates rules by calling it. Invalid opts (an
// empty or repeated region, a default resolver outside the regions) give a
// plain error. On failure otherwise the error joins one
// *CompileError per problem (errors.As finds the first), each naming the
// rule, the field and, for an expression, the line and column with a
// caret.
func Compile(specs []Spec, opts Options) (*Set, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	set, errs := compileSet(specs, cfg)
	if len(errs) > 0 {
		joined := make([]error, len(errs))
		for i, e := range errs {
			joined[i] = e
		}
		return nil, errors.Join(joined...)
	}
	return set, nil
}

// compileSet compiles every rule and returns every problem found.
func compileSet(specs []Spec, cfg *config) (*Set, []*CompileError) {
	var errs []*CompileError
	if len(specs) == 0 {
		return nil, []*CompileError{{Index: -1, Err: errors.New("the rule list is empty")}}
	}
	set := &Set{cfg: cfg}
	names := map[string]bool{}
	for i, spec := range specs {
		r, rerrs := compileRule(i, spec, cfg)
		errs = append(errs, rerrs...)
		if names[spec.Name] && spec.Name != "" {
			// No position: callers count rules from 1 (#2) or from 0
			// (rules[1]); the earlier rule has the same name.
			errs = append(errs, &CompileError{Index: i, Rule: spec.Name, Field: "name",
				Err: fmt.Errorf("name %q is already used by an earlier rule; names must be unique", spec.Name)})
		}
		names[spec.Name] = true
		set.rules = append(set.rules, r)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

// compileRule validates one spec and compiles its expressions. It returns
// a rule even when there are errors (with nil programs where compilation
// failed), so lint can keep checking.
func compileRule(i int, spec Spec, cfg *config) (*Rule, []*CompileError) {
	r := &Rule{spec: spec, index: i, strategy: Strategy(spec.Strategy), cfg: cfg}
	var errs []*CompileError
	fail := func(field string, err error) {
		errs = append(errs, &CompileError{Index: i, Rule: spec.Name, Field: field, Err: err})
	}
	compile := func(kind exprKind, src string) *vm.Program {
		if strings.TrimSpace(src) == "" {
			return nil
		}
		p, err := compileExpr(kind, src, cfg)
		if err != nil {
			fail(string(kind), err)
		}
		return p
	}
	switch name := strings.TrimSpace(spec.Name); {
	case name == "":
		fail("name", errors.New("a rule needs a name"))
	case name != spec.Name:
		// The name travels in the X-Geo-Rule header, whose value HTTP
		// trims, and in metric labels, which it does not.
		fail("name", fmt.Errorf("%q has leading or trailing spaces", spec.Name))
	}
	if strings.TrimSpace(spec.Match) == "" {
		fail("match", errors.New("a rule needs a match expression (use 'true' to match every key)"))
	}
	r.match = compile(kindMatch, spec.Match)
	if r.match != nil {
		r.matchKey = compileKeyTest(r.match.Node())
	}
	r.home = compile(kindHome, spec.Home)
	r.sel = compile(kindSelect, spec.Select)
	r.merge = compile(kindMerge, spec.Merge)
	r.onRead = compile(kindOnRead, spec.OnRead)

	// A blank expression is an unset one, as compile treats it: a
	// home_region rule with home: " " has no home.
	given := func(src string) bool { return strings.TrimSpace(src) != "" }
	set := map[string]bool{
		"home": given(spec.Home), "home_mode": spec.HomeMode != "", "fallback": spec.Fallback != "",
		"select": given(spec.Select), "merge": given(spec.Merge), "on_read": given(spec.OnRead),
		"resolver": spec.Resolver != "",
	}
	allowed := map[Strategy][]string{
		StrategyHomeRegion: {"home", "home_mode", "fallback", "on_read"},
		StrategyLWW:        {},
		StrategySiblings:   {"on_read"},
		StrategyCustom:     {"select", "merge", "on_read", "home", "resolver"},
	}
	fields, known := allowed[r.strategy]
	if !known {
		fail("strategy", fmt.Errorf("unknown strategy %q%s (want home_region, lww, siblings or custom)", spec.Strategy,
			didYouMean(spec.Strategy, []string{"home_region", "lww", "siblings", "custom"})))
		return r, errs
	}
	for _, f := range []string{"home", "home_mode", "fallback", "select", "merge", "on_read", "resolver"} {
		if set[f] && !slices.Contains(fields, f) {
			fail(f, fmt.Errorf("%s does not apply to strategy %s", f, r.strategy))
		}
	}
	switch r.strategy {
	case StrategyHomeRegion:
		if !set["home"] {
			fail("home", errors.New("strategy home_region needs a home expression"))
		}
		r.homeMode = HomeForward
		switch spec.HomeMode {
		case "", HomeForward, HomeRedirect, HomeReject:
			if spec.HomeMode != "" {
				r.homeMode = spec.HomeMode
			}
		default:
			fail("home_mode", fmt.Errorf("unknown home_mode %q%s (want forward, redirect or reject)", spec.HomeMode,
				didYouMean(spec.HomeMode, []string{HomeForward, HomeRedirect, HomeReject})))
		}
		switch spec.Fallback {
		case "", "reject":
		case string(StrategyLWW), string(StrategySiblings):
			r.fallback = Strategy(spec.Fallback)
		default:
			fail("fallback", fmt.Errorf("unknown fallback %q%s (want reject, lww or siblings)", spec.Fallback,
				didYouMean(spec.Fallback, []string{"reject", "lww", "siblings"})))
		}
		if set["on_read"] && r.fallback != StrategySiblings {
			fail("on_read", errors.New("on_read applies to home_region only with fallback: siblings"))
		}
	case StrategyCustom:
		if !set["select"] && !set["merge"] && !set["on_read"] {
			fail("strategy", errors.New("strategy custom needs select, merge or on_read"))
		}
		if set["select"] && set["merge"] {
			fail("merge", errors.New("select and merge exclude each other: select keeps one version, merge writes a new one"))
		}
		if set["select"] && set["on_read"] {
			fail("on_read", errors.New("on_read has no effect with select: select leaves one version"))
		}
		if set["home"] && !set["merge"] {
			fail("home", errors.New("home on a custom rule only names the resolver of merge; there is no merge"))
		}
		if set["resolver"] && !set["merge"] {
			fail("resolver", errors.New("resolver applies only to rules with merge"))
		}
		if set["resolver"] && set["home"] {
			fail("resolver", errors.New("set home or resolver, not both: the home region resolves"))
		}
	}
	if set["resolver"] && !cfg.isRegion(spec.Resolver) {
		fail("resolver", fmt.Errorf("%q is not a region (regions: %s)", spec.Resolver, strings.Join(cfg.regions, ", ")))
	}
	if r.home != nil && len(cfg.regions) > 0 {
		for _, lit := range resultLiterals(r.home.Node()) {
			if !cfg.isRegion(lit.Value) {
				e := &file.Error{Location: lit.Location(),
					Message: fmt.Sprintf("%q is not a region (regions: %s)", lit.Value, strings.Join(cfg.regions, ", "))}
				fail("home", e.Bind(file.NewSource(spec.Home)))
			}
		}
	}
	return r, errs
}

// resultLiterals returns the string literals an expression can yield
// directly: the whole expression, the right side of ??, the branches of a
// conditional.
func resultLiterals(n ast.Node) []*ast.StringNode {
	switch x := n.(type) {
	case *ast.StringNode:
		return []*ast.StringNode{x}
	case *ast.BinaryNode:
		if x.Operator == "??" {
			return append(resultLiterals(x.Left), resultLiterals(x.Right)...)
		}
	case *ast.ConditionalNode:
		return append(resultLiterals(x.Exp1), resultLiterals(x.Exp2)...)
	case *ast.ChainNode:
		return resultLiterals(x.Node)
	}
	return nil
}

// Default returns the rule set used when the config names none: one rule
// "default" matching every key with strategy lww.
func Default() *Set {
	set, err := Compile([]Spec{{Name: "default", Match: "true", Strategy: string(StrategyLWW)}}, Options{})
	if err != nil {
		panic(fmt.Sprintf("rules: default set does not compile: %v", err)) // a bug, not an input error
	}
	return set
}

// Rules returns the rules in match order. The slice is a copy; the rules
// are shared and immutable.
func (s *Set) Rules() []*Rule { return slices.Clone(s.rules) }

// HasMerge reports whether any rule of the set merges on write, so callers
// can skip looking for merges when none can happen.
func (s *Set) HasMerge() bool {
	return slices.ContainsFunc(s.rules, (*Rule).HasMerge)
}

// Match returns the rule governing key: the first rule, in list order,
// whose match expression holds for key, and a nil error.
//
// A match expression that fails at run time for key (a type error, an
// index out of range, the memory budget) stops the search there: the key
// does not fall through to a later rule, whose strategy the operator did
// not choose for it. Match then returns that rule held (see Rule.Held)
// and the *EvalError (Field "match"). A held rule keeps every version of
// the key: it resolves as strategy siblings without on_read, never merges,
// has no home, and a write without a context under it is concurrent with
// the versions present (SupersedesWithoutContext is false).
//
// When no rule matches, the rule is nil and the error wraps ErrNoRule.
func (s *Set) Match(key string) (*Rule, error) {
	var env any        // boxed once, for the rules that need the VM
	var machine *vm.VM // taken from the pool when first needed
	defer func() {
		if machine != nil {
			s.cfg.putVM(machine)
		}
	}()
	for _, r := range s.rules {
		if r.matchKey != nil {
			if r.matchKey(key) {
				return r, nil
			}
			continue
		}
		if machine == nil {
			env, machine = matchEnv{Key: key}, s.cfg.getVM()
		}
		out, err := s.cfg.runOn(machine, r.match, env)
		if err != nil {
			ee := &EvalError{Rule: r.spec.Name, Field: string(kindMatch), Key: key, Err: err}
			return r.hold(ee), ee
		}
		if ok, _ := out.(bool); ok {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoRule, key)
}

// hold returns r held for one key after err: the same name, index and
// spec, resolving as siblings with no expression left to fail.
func (r *Rule) hold(err *EvalError) *Rule {
	return &Rule{spec: r.spec, index: r.index, strategy: StrategySiblings, cfg: r.cfg, held: err}
}

// Held returns the failure that holds a key under this rule (Set.Match
// returned the rule held because its match expression failed for the
// key), or nil for a rule that governs normally. A held rule's Strategy is
// StrategySiblings whatever its Spec says.
func (r *Rule) Held() error {
	if r.held == nil {
		return nil
	}
	return r.held
}

// SupersedesWithoutContext says whether a local write of a key governed by
// r that carries no causal context replaces every version the region has
// seen for the key (lww, and home_region, whose home serialises the key's
// writes) or is concurrent with them (siblings, custom, and a held rule).
func (r *Rule) SupersedesWithoutContext() bool {
	switch r.strategy {
	case StrategyLWW, StrategyHomeRegion:
		return true
	}
	return false
}

// Name returns the rule's name.
func (r *Rule) Name() string { return r.spec.Name }

// Index returns the rule's position in its Set, from 0.
func (r *Rule) Index() int { return r.index }

// Strategy returns the strategy in effect: the rule's, or
// StrategySiblings for a held rule (see Held).
func (r *Rule) Strategy() Strategy { return r.strategy }

// Spec returns the rule as written.
func (r *Rule) Spec() Spec { return r.spec }

// HomeMode returns forward, redirect or reject for a home_region rule
// (forward when unset) and "" for other strategies.
func (r *Rule) HomeMode() string { return r.homeMode }

// Fallback returns what a home_region rule does when the home region is
// unreachable: "" (reject the write, 503), StrategyLWW or
// StrategySiblings (accept it locally). It is "" for other strategies.
func (r *Rule) Fallback() Strategy { return r.fallback }

// HasHome reports whether the rule has a home expression.
func (r *Rule) HasHome() bool { return r.home != nil }

// HasMerge reports whether the rule writes merged values (custom with
// merge), so the resolver region must call MergeOnWrite.
func (r *Rule) HasMerge() bool { return r.merge != nil }

// Home evaluates the home expression for a write of value (nil for a
// delete whose current value is unknown) and returns the region that owns
// the key. It fails with ErrNoHome when the rule has no home, an
// *EvalError when the expression fails, and ErrBadHome when the result is
// not a region of the deployment (an *EvalError too, so that every
// failure of a home names its rule and field). Home is deterministic:
// every region gets the same answer for the same key and value.
func (r *Rule) Home(key string, value json.RawMessage) (string, error) {
	if r.home == nil {
		return "", fmt.Errorf("rule %q: %w", r.spec.Name, ErrNoHome)
	}
	fail := func(err error) (string, error) {
		return "", &EvalError{Rule: r.spec.Name, Field: string(kindHome), Key: key, Err: err}
	}
	if len(value) > r.cfg.maxInputBytes {
		return fail(fmt.Errorf("%w: value of %d bytes", ErrTooLarge, len(value)))
	}
	doc, err := decodeDoc(value)
	if err != nil {
		return fail(err)
	}
	out, err := r.cfg.run(r.home, homeEnv{Key: key, Value: doc})
	if err != nil {
		return fail(err)
	}
	name, ok := out.(string)
	if !ok || !r.cfg.isRegion(name) {
		return fail(fmt.Errorf("%w: %s", ErrBadHome, describe(out)))
	}
	return name, nil
}

// describe renders an expression result for an error message.
func describe(v any) string {
	if v == nil {
		return "null"
	}
	b, err := encodeDoc(v)
	if err != nil || len(b) > 80 {
		return fmt.Sprintf("%T", v)
	}
	return string(b)
}

// Resolver returns the region that runs merge for key: the home region if
// the rule has a home (evaluated with value; pass nil when no single
// value applies), else the rule's resolver, else Options.DefaultResolver
// (default: the first region). When the home expression fails it returns
// "" and the error (*EvalError): no region merges, so the siblings stay as
// they are, in every region alike. It returns "" and no error only when
// no region is known (no regions configured).
func (r *Rule) Resolver(key string, value json.RawMessage) (string, error) {
	if r.home != nil {
		return r.Home(key, value)
	}
	if r.spec.Resolver != "" {
		return r.spec.Resolver, nil
	}
	return r.cfg.resolver, nil
}
