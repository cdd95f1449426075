package rules

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
)

// libraryOptions returns the functions geogate adds to expr, and the
// deterministic replacements of the builtins keys, values, toPairs (expr's
// follow Go's random map order) and date (which could read the host's
// time zone).
func libraryOptions() []expr.Option {
	return []expr.Option{
		expr.Function("union", fnUnion),
		expr.Function("intersect", fnIntersect),
		expr.Function("merge", fnMerge),
		expr.Function("maxBy", func(args ...any) (any, error) { return extremeBy("maxBy", 1, args) }),
		expr.Function("minBy", func(args ...any) (any, error) { return extremeBy("minBy", -1, args) }),
		expr.Function("keys", fnKeys),
		expr.Function("values", fnValues),
		expr.Function("toPairs", fnToPairs),
		expr.Function("date", fnDate,
			new(func(string) time.Time),
			new(func(string, string) time.Time),
			new(func(string, string, string) time.Time)),
	}
}

// Union returns the set union of arrays: every distinct element (deep
// equality on JSON values) once, in first-seen order. As a set the result
// does not depend on the order of the arrays. Null arrays count as empty.
// It is the implementation of the expression function union.
func Union(arrays ...[]any) []any {
	seen := map[string]bool{}
	out := []any{}
	for _, a := range arrays {
		for _, e := range a {
			k := canonical(e)
			if !seen[k] {
				seen[k] = true
				out = append(out, e)
			}
		}
	}
	return out
}

// Intersect returns the distinct elements present in every array, in the
// order of the first array. As a set the result does not depend on the
// order of the arrays. With no arrays it is empty; a null array counts as
// empty (so the intersection is empty). It is the implementation of the
// expression function intersect.
func Intersect(arrays ...[]any) []any {
	out := []any{}
	if len(arrays) == 0 {
		return out
	}
	rest := make([]map[string]bool, len(arrays)-1)
	for i, a := range arrays[1:] {
		rest[i] = map[string]bool{}
		for _, e := range a {
			rest[i][canonical(e)] = true
		}
	}
	seen := map[string]bool{}
next:
	for _, e := range arrays[0] {
		k := canonical(e)
		if seen[k] {
			continue
		}
		seen[k] = true
		for _, r := range rest {
			if !r[k] {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

// Merge deep-merges JSON objects left to right: where both sides hold an
// object the two are merged recursively; otherwise the later value wins
// (scalars, arrays, null). Null arguments are skipped. The inputs are not
// modified. Merge(a, b, c) equals Merge(Merge(a, b), c); Merge(a, a) is a;
// for objects whose fields do not conflict (no path holding an object on
// one side and anything else, or two different scalars) it is commutative.
// It is the implementation of the expression function merge.
func Merge(objects ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, o := range objects {
		mergeInto(out, o)
	}
	return out
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := dst[k].(map[string]any); ok {
				mergeInto(dv, sv)
				continue
			}
			fresh := map[string]any{}
			mergeInto(fresh, sv)
			dst[k] = fresh
			continue
		}
		dst[k] = deepCopy(v)
	}
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}

// arraysArg reads the arguments of union and intersect: several arrays,
// or exactly one argument that is the list of arrays, as produced by
// map(siblings, #.items). Null stands for an empty array.
func arraysArg(name string, args []any) ([][]any, error) {
	norm := make([]any, len(args))
	for i, a := range args {
		n, err := normalize(a)
		if err != nil {
			return nil, fmt.Errorf("%s: argument %d: %w", name, i+1, err)
		}
		norm[i] = n
	}
	what := "argument"
	if len(norm) == 1 {
		switch list := norm[0].(type) {
		case nil:
			return nil, nil
		case []any:
			norm, what = list, "element"
		default:
			return nil, fmt.Errorf("%s: argument is %s, not an array of arrays", name, jsonType(list))
		}
	}
	out := make([][]any, 0, len(norm))
	for i, a := range norm {
		switch x := a.(type) {
		case nil:
			out = append(out, nil)
		case []any:
			out = append(out, x)
		default:
			return nil, fmt.Errorf("%s: %s %d is %s, not an array", name, what, i+1, jsonType(a))
		}
	}
	return out, nil
}

func fnUnion(args ...any) (any, error) {
	arrays, err := arraysArg("union", args)
	if err != nil {
		return nil, err
	}
	return Union(arrays...), nil
}

func fnIntersect(args ...any) (any, error) {
	arrays, err := arraysArg("intersect", args)
	if err != nil {
		return nil, err
	}
	return Intersect(arrays...), nil
}

// fnMerge takes objects and arrays of objects (flattened in place, so
// merge(siblings) and merge(map(...), {...}) work); null is skipped.
func fnMerge(args ...any) (any, error) {
	var objs []map[string]any
	add := func(pos string, v any) error {
		switch x := v.(type) {
		case nil:
		case map[string]any:
			objs = append(objs, x)
		default:
			return fmt.Errorf("merge: argument %s is %s, not an object", pos, jsonType(v))
		}
		return nil
	}
	for i, a := range args {
		n, err := normalize(a)
		if err != nil {
			return nil, fmt.Errorf("merge: argument %d: %w", i+1, err)
		}
		if list, ok := n.([]any); ok {
			for j, e := range list {
				if err := add(fmt.Sprintf("%d[%d]", i+1, j), e); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := add(fmt.Sprint(i+1), n); err != nil {
			return nil, err
		}
	}
	return Merge(objs...), nil
}

// extremeBy implements maxBy(array, path) and minBy(array, path): the
// element whose field at the dotted path ("" = the element itself) is the
// greatest (sign 1) or least (sign -1). Numbers compare numerically,
// strings lexically; elements whose field is null or missing are skipped;
// mixing numbers and strings is an error. Ties are broken by the
// canonical JSON of the elements, so the result does not depend on the
// array's order. An empty or all-null array gives null.
func extremeBy(name string, sign int, args []any) (any, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("%s: want 2 arguments (array, path), got %d", name, len(args))
	}
	path, ok := args[1].(string)
	if !ok {
		return nil, fmt.Errorf("%s: path must be a string", name)
	}
	n, err := normalize(args[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	list, ok := n.([]any)
	if n != nil && !ok {
		return nil, fmt.Errorf("%s: argument 1 is %s, not an array", name, jsonType(n))
	}
	var best, bestKey any
	bestCanon := ""
	for _, e := range list {
		k := fieldAt(e, path)
		if k == nil {
			continue
		}
		if best == nil {
			best, bestKey, bestCanon = e, k, canonical(e)
			continue
		}
		c, err := compareScalar(k, bestKey)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		canon := canonical(e)
		if c == 0 {
			c = strings.Compare(canon, bestCanon)
		}
		if c*sign > 0 {
			best, bestKey, bestCanon = e, k, canon
		}
	}
	return best, nil
}

// fieldAt follows a dotted path of object fields; null where it breaks.
func fieldAt(v any, path string) any {
	if path == "" {
		return v
	}
	for part := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// compareScalar orders two non-null JSON scalars of the same type.
func compareScalar(a, b any) (int, error) {
	switch x := a.(type) {
	case float64:
		if y, ok := b.(float64); ok {
			return cmp.Compare(x, y), nil
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), nil
		}
	case bool:
		if y, ok := b.(bool); ok {
			return cmp.Compare(boolNum(x), boolNum(y)), nil
		}
	}
	return 0, fmt.Errorf("cannot compare %s with %s", jsonType(a), jsonType(b))
}

func boolNum(b bool) int {
	if b {
		return 1
	}
	return 0
}

// jsonType names the JSON type of a normalized value for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// objectArg reads the single object argument of keys, values and toPairs.
func objectArg(name string, args []any) (map[string]any, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s: want 1 argument, got %d", name, len(args))
	}
	n, err := normalize(args[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m, ok := n.(map[string]any)
	if !ok && n != nil {
		return nil, fmt.Errorf("%s: argument is %s, not an object", name, jsonType(n))
	}
	return m, nil
}

// fnKeys is keys(object): the field names, sorted.
func fnKeys(args ...any) (any, error) {
	m, err := objectArg("keys", args)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k)
	}
	return out, nil
}

// fnValues is values(object): the field values in sorted key order.
func fnValues(args ...any) (any, error) {
	m, err := objectArg("values", args)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out, nil
}

// fnToPairs is toPairs(object): [key, value] pairs in sorted key order.
func fnToPairs(args ...any) (any, error) {
	m, err := objectArg("toPairs", args)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, []any{k, m[k]})
	}
	return out, nil
}

// dateLayouts are the layouts date(s) tries, as expr's builtin does.
var dateLayouts = []string{
	"2006-01-02",
	"15:04:05",
	"2006-01-02 15:04:05",
	time.RFC3339Nano,
	time.RFC822,
	time.RFC850,
	time.RFC1123,
}

// fnDate is expr's date(s [, layout [, zone]]) without the host's local
// zone: a string without a zone is UTC, and the zone "Local" is refused.
func fnDate(args ...any) (any, error) {
	s, _ := args[0].(string)
	switch len(args) {
	case 1:
		for _, layout := range dateLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return t, nil
			}
		}
		return nil, fmt.Errorf("date: cannot parse %q", s)
	case 2:
		layout, _ := args[1].(string)
		return time.Parse(layout, s)
	default:
		layout, _ := args[1].(string)
		zone, _ := args[2].(string)
		if zone == "" || zone == "Local" {
			return nil, fmt.Errorf("date: zone %q depends on the host; name one, e.g. \"UTC\"", zone)
		}
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return nil, fmt.Errorf("date: %w", err)
		}
		return time.ParseInLocation(layout, s, loc)
	}
}
