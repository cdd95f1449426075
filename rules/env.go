package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// The environments the expressions are type-checked against and run with.
// Each kind of expression sees only the variables that make sense for it
// (see the package documentation); a name outside its environment is a
// compile error.

// matchEnv is the environment of match: the key alone, so a read can find
// its rule without a value and every region agrees.
type matchEnv struct {
	Key string `expr:"key"`
}

// homeEnv is the environment of home: the key and the written document
// (nil for a delete when the caller does not know the current value). It
// has no region: every region must compute the same home.
type homeEnv struct {
	Key   string `expr:"key"`
	Value any    `expr:"value"`
}

// versionDoc is one version of the frontier as expressions see it.
type versionDoc struct {
	Value   any     `expr:"value" json:"value"`
	Origin  string  `expr:"origin" json:"origin"`
	HLC     float64 `expr:"hlc" json:"hlc"`
	Deleted bool    `expr:"deleted" json:"deleted"`
}

// selectEnv is the environment of select. It has no region: every region
// collapses the same frontier and must pick the same winner.
type selectEnv struct {
	Key      string       `expr:"key"`
	Siblings []any        `expr:"siblings"`
	Versions []versionDoc `expr:"versions"`
	Version  versionDoc   `expr:"version"`
}

// siblingsEnv is the environment of merge and on_read.
type siblingsEnv struct {
	Key      string       `expr:"key"`
	Region   string       `expr:"region"`
	Siblings []any        `expr:"siblings"`
	Versions []versionDoc `expr:"versions"`
}

// exprKind is one kind of rule expression; its string is the config key.
type exprKind string

const (
	kindMatch  exprKind = "match"
	kindHome   exprKind = "home"
	kindSelect exprKind = "select"
	kindMerge  exprKind = "merge"
	kindOnRead exprKind = "on_read"
)

// env returns the zero environment a kind is type-checked against.
func (k exprKind) env() any {
	switch k {
	case kindMatch:
		return matchEnv{}
	case kindHome:
		return homeEnv{}
	case kindSelect:
		return selectEnv{}
	default:
		return siblingsEnv{}
	}
}

// forbiddenCalls are functions whose result depends on the host or the
// moment of evaluation; rules must give the same answer in every region.
var forbiddenCalls = map[string]string{
	"now":      "now() reads the clock; rules must be deterministic (use version.hlc)",
	"timezone": "timezone() depends on the host's time zone database",
}

// determinismCheck is an expr patcher that records the first call to a
// forbidden function or to time.Time.Local (host-dependent). It only
// inspects: the tree is left unchanged.
type determinismCheck struct {
	err *file.Error
}

// Visit implements ast.Visitor.
func (d *determinismCheck) Visit(node *ast.Node) {
	if d.err != nil {
		return
	}
	call, ok := (*node).(*ast.CallNode)
	if !ok {
		return
	}
	switch c := call.Callee.(type) {
	case *ast.IdentifierNode:
		if msg, bad := forbiddenCalls[c.Value]; bad {
			d.err = &file.Error{Location: call.Location(), Message: msg}
		}
	case *ast.MemberNode:
		if s, ok := c.Property.(*ast.StringNode); ok && s.Value == "Local" {
			d.err = &file.Error{Location: call.Location(), Message: "Local() depends on the host's time zone"}
		}
	}
}

// nullSafe is an expr patcher that makes every member access null-safe,
// like jq: a field of null is null instead of a run-time error, so
// `value.region ?? "us-east"` works for a delete (value = null) and
// `version.value.updated_at` for a tombstone. Fields of a non-null
// non-object (a string, a number) are still errors, and so is an array
// index out of range.
type nullSafe struct{}

// Visit implements ast.Visitor.
func (nullSafe) Visit(node *ast.Node) {
	if m, ok := (*node).(*ast.MemberNode); ok && !m.Optional {
		m.Optional = true
		ast.Patch(node, &ast.ChainNode{Node: m})
	}
}

// compileExpr compiles one expression of the given kind under the limits
// of cfg. The result type is checked where the kind fixes it: match must
// be bool, home a string, select a number, string or bool.
func compileExpr(kind exprKind, src string, cfg *config) (*vm.Program, error) {
	check := &determinismCheck{}
	opts := []expr.Option{
		expr.Env(kind.env()),
		expr.MaxNodes(cfg.maxNodes),
		expr.DisableBuiltin("now"),
		expr.DisableBuiltin("timezone"),
		expr.Patch(check),
		expr.Patch(nullSafe{}),
	}
	opts = append(opts, libraryOptions()...)
	switch kind {
	case kindMatch:
		opts = append(opts, expr.AsBool())
	case kindHome:
		opts = append(opts, expr.AsKind(reflect.String))
	default:
		opts = append(opts, expr.AsAny())
	}
	prog, err := expr.Compile(src, opts...)
	if check.err != nil {
		return nil, check.err.Bind(file.NewSource(src))
	}
	if err != nil {
		return nil, err
	}
	if kind == kindSelect {
		if t := prog.Node().Type(); t != nil && !scoreType(t) {
			e := &file.Error{Location: prog.Node().Location(),
				Message: fmt.Sprintf("select must yield a number, string or bool, not %v", t)}
			return nil, e.Bind(file.NewSource(src))
		}
	}
	return prog, nil
}

// scoreType reports whether a statically known result type can be a score.
func scoreType(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Interface, reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// run evaluates a program under the memory budget of c, on a VM from c's
// pool. It never panics: a panic in the VM or in a library function
// becomes an error.
func (c *config) run(prog *vm.Program, env any) (any, error) {
	machine := c.getVM()
	defer c.putVM(machine)
	return c.runOn(machine, prog, env)
}

// runOn is run on a given VM, for a caller evaluating several programs in
// a row (Set.Match). A VM serves one evaluation at a time; vm.VM.Run resets
// its state, so it can be reused even after a failure.
func (c *config) runOn(machine *vm.VM, prog *vm.Program, env any) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	machine.MemoryBudget = c.memoryBudget
	return machine.Run(prog, env)
}

// getVM takes an idle VM from the pool, or makes one.
func (c *config) getVM() *vm.VM {
	if machine, ok := c.vms.Get().(*vm.VM); ok {
		return machine
	}
	return &vm.VM{}
}

// putVM returns a VM to the pool, dropping its references to the last
// evaluation's values first.
func (c *config) putVM(machine *vm.VM) {
	clear(machine.Stack[:cap(machine.Stack)])
	clear(machine.Variables)
	c.vms.Put(machine)
}

// decodeDoc decodes a stored JSON value for an expression: objects become
// map[string]any, arrays []any, numbers float64. An empty value is nil.
func decodeDoc(raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("decode value: %w", err)
	}
	return v, nil
}

// normalize converts an expression value to the JSON data model (nil,
// bool, float64, string, []any, map[string]any). Maps with other keys are
// keyed by the keys' text; other values (ints, typed slices, structs,
// times) go through encoding/json; values that do not encode (functions,
// NaN) are an error.
func normalize(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, float64, string:
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case time.Duration:
		return x.String(), nil
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Map {
		// groupBy and friends build maps with non-string keys: key them
		// by their text, refusing collisions (whose winner would depend
		// on Go's random map order).
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			k := fmt.Sprint(it.Key().Interface())
			if _, dup := out[k]; dup {
				return nil, fmt.Errorf("not a JSON value: two map keys read %q", k)
			}
			n, err := normalize(it.Value().Interface())
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not a JSON value (%T): %w", v, err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("not a JSON value (%T): %w", v, err)
	}
	return out, nil
}

// encodeDoc renders an expression result as a JSON document. Object keys
// come out sorted (encoding/json), so equal values encode to equal bytes.
func encodeDoc(v any) (json.RawMessage, error) {
	n, err := normalize(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// canonical returns the canonical encoding of a JSON-model value, used as
// its identity for deep equality (union, intersect, tie-breaks).
func canonical(v any) string {
	b, err := encodeDoc(v)
	if err != nil {
		return fmt.Sprintf("%T:%v", v, v)
	}
	return string(b)
}

// errNull is returned when merge or on_read yields null: a null document
// would silently erase every sibling.
var errNull = errors.New("expression yielded null")
