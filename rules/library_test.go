package rules

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	_ "time/tzdata" // date() with a named zone, whatever the host has

	"github.com/geogate/geogate/conflict"
	"pgregory.net/rapid"
)

// evalOnRead compiles expression as an on_read and evaluates it over the
// given sibling documents (in dot order: origin r0, r1, ...).
func evalOnRead(t *testing.T, expression string, docs ...string) (string, error) {
	t.Helper()
	set, err := Compile([]Spec{{Name: "f", Match: "true", Strategy: "custom", OnRead: expression}}, Options{})
	if err != nil {
		return "", err
	}
	r, _ := set.Match("k")
	var vs []conflict.Version
	for i, d := range docs {
		vs = append(vs, ver(fmt.Sprintf("r%d", i), 1, int64(10+i), d))
	}
	// Two siblings at least, so that on_read runs: pad with a placeholder
	// the expressions below ignore.
	for len(vs) < 2 {
		vs = append(vs, ver(fmt.Sprintf("r%d", len(vs)), 1, 1, `{}`))
	}
	res, err := r.Resolve("k", "us-east", vs)
	if err != nil {
		return "", err
	}
	return string(res.Value), nil
}

func TestLibraryFunctions(t *testing.T) {
	tests := []struct {
		expression string
		docs       []string
		want       string // "error: substring" for an expected failure
	}{
		{`union(map(siblings, #.items))`, []string{`{"items": [1, 2]}`, `{"items": [2, 3, 1]}`}, `[1,2,3]`},
		{`union(map(siblings, #.items))`, []string{`{"items": [{"a": 1}]}`, `{"items": [{"a": 1}, {"a": 2}]}`}, `[{"a":1},{"a":2}]`},
		{`union(map(siblings, #.items))`, []string{`{"items": ["a"]}`, `{}`}, `["a"]`},
		{`union([1, 1, 2], [2, 3], nil)`, nil, `[1,2,3]`},
		{`union([])`, nil, `[]`},
		{`union(map(siblings, #.items))`, []string{`{"items": ["a"]}`, `{"items": 5}`}, `error: element 2 is a number, not an array`},
		{`union(1, [2])`, nil, `error: argument 1 is a number`},
		{`intersect(map(siblings, #.tags))`, []string{`{"tags": ["a", "b", "c", "a"]}`, `{"tags": ["c", "a"]}`}, `["a","c"]`},
		{`intersect([1, 2], nil)`, nil, `[]`},
		{`intersect([[1], 2], [[1]])`, nil, `[[1]]`},
		{`merge(siblings)`, []string{`{"a": {"x": 1, "y": [1]}, "b": 1}`, `{"a": {"y": [2], "z": 3}, "c": null}`}, `{"a":{"x":1,"y":[2],"z":3},"b":1,"c":null}`},
		{`merge(siblings[0], nil, {"a": 5})`, []string{`{"a": {"x": 1}, "b": 2}`}, `{"a":5,"b":2}`},
		{`merge(map(siblings, #.p), {"n": len(siblings)})`, []string{`{"p": {"a": 1}}`, `{"p": {"b": 2}}`}, `{"a":1,"b":2,"n":2}`},
		{`merge(siblings[0], [1])`, []string{`{}`}, `error: not an object`},
		{`maxBy(siblings, "v.n")`, []string{`{"v": {"n": 2}, "id": 1}`, `{"v": {"n": 9}, "id": 2}`, `{"id": 3}`}, `{"id":2,"v":{"n":9}}`},
		{`minBy(siblings, "v.n")`, []string{`{"v": {"n": 2}, "id": 1}`, `{"v": {"n": 9}, "id": 2}`}, `{"id":1,"v":{"n":2}}`},
		{`maxBy(versions, "hlc").origin`, []string{`{}`, `{}`, `{}`}, `"r2"`},
		{`{"m": maxBy(siblings, "s")}`, []string{`{"s": "b", "id": 1}`, `{"s": "b", "id": 0}`}, `{"m":{"id":1,"s":"b"}}`}, // tie: greater canonical JSON
		{`maxBy(siblings, "s")`, []string{`{"s": "b"}`, `{"s": 1}`}, `error: cannot compare`},
		{`keys(groupBy(siblings, #.n))`, []string{`{"n": 2}`, `{"n": 1}`, `{"n": 2}`}, `["1","2"]`},
		{`groupBy(siblings, #.n)`, []string{`{"n": 1}`, `{"n": "1"}`}, `error: two map keys read "1"`},
		{`keys(siblings[0])`, []string{`{"z": 1, "a": 2, "m": 3}`}, `["a","m","z"]`},
		{`values(siblings[0])`, []string{`{"z": 1, "a": 2, "m": 3}`}, `[2,3,1]`},
		{`toPairs(siblings[0])`, []string{`{"b": 1, "a": 2}`}, `[["a",2],["b",1]]`},
		{`{"y": date("2024-03-01T10:00:00Z").Year(), "u": date("2024-03-01").Unix()}`, nil, `{"u":1709251200,"y":2024}`},
		{`date("10:00 2024-03-01", "15:04 2006-01-02", "Europe/Paris").Unix()`, nil, `1709283600`},
		{`date("2024-03-01", "2006-01-02", "Local")`, nil, `error: depends on the host`},
		{`{"missing": siblings[0].a.b.c, "len": len(siblings)}`, []string{`{}`}, `{"len":2,"missing":null}`},
		{`siblings[0].a.b`, []string{`{"a": "text"}`}, `error: invalid operation`},
	}
	for _, tt := range tests {
		t.Run(tt.expression, func(t *testing.T) {
			got, err := evalOnRead(t, tt.expression, tt.docs...)
			if want, ok := strings.CutPrefix(tt.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %s, %v; want an error containing %q", got, err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// genJSON draws a small JSON value in the decoded data model.
func genJSON(depth int) *rapid.Generator[any] {
	return rapid.Custom(func(t *rapid.T) any {
		kind := rapid.IntRange(0, 5).Draw(t, "kind")
		if depth <= 0 && kind >= 4 {
			kind = 1
		}
		switch kind {
		case 0:
			return nil
		case 1:
			return float64(rapid.IntRange(-3, 3).Draw(t, "n"))
		case 2:
			return rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "s")
		case 3:
			return rapid.Bool().Draw(t, "b")
		case 4:
			return rapid.SliceOfN(genJSON(depth-1), 0, 3).Draw(t, "arr")
		default:
			return rapid.MapOfN(rapid.SampledFrom([]string{"x", "y", "z"}), genJSON(depth-1), 0, 3).Draw(t, "obj")
		}
	})
}

func genObject(depth int) *rapid.Generator[map[string]any] {
	return rapid.MapOfN(rapid.SampledFrom([]string{"x", "y", "z", "w"}), genJSON(depth), 0, 4)
}

func setOf(a []any) []string {
	out := make([]string, len(a))
	for i, e := range a {
		out[i] = canonical(e)
	}
	slices.Sort(out)
	return out
}

func TestPropUnionIsASetUnion(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		arrays := rapid.SliceOfN(rapid.SliceOfN(genJSON(2), 0, 4), 0, 4).Draw(t, "arrays")
		u := Union(arrays...)
		// No duplicates, and exactly the elements of the inputs.
		want := map[string]bool{}
		for _, a := range arrays {
			for _, e := range a {
				want[canonical(e)] = true
			}
		}
		got := setOf(u)
		if len(slices.Compact(slices.Clone(got))) != len(got) || len(got) != len(want) {
			t.Fatalf("union %v of %v has duplicates or misses elements", got, arrays)
		}
		for _, k := range got {
			if !want[k] {
				t.Fatalf("union invented %s", k)
			}
		}
		// As a set, independent of the order of the arrays.
		perm := rapid.Permutation(arrays).Draw(t, "perm")
		if !slices.Equal(setOf(Union(perm...)), got) {
			t.Fatalf("union depends on argument order")
		}
		// Idempotent.
		if !slices.Equal(setOf(Union(u, u)), got) {
			t.Fatalf("union(u, u) != u")
		}
	})
}

func TestPropIntersect(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		arrays := rapid.SliceOfN(rapid.SliceOfN(genJSON(1), 0, 5), 1, 4).Draw(t, "arrays")
		got := setOf(Intersect(arrays...))
		perm := rapid.Permutation(arrays).Draw(t, "perm")
		if !slices.Equal(setOf(Intersect(perm...)), got) {
			t.Fatalf("intersect depends on argument order")
		}
		for _, k := range got {
			for _, a := range arrays {
				if !slices.Contains(setOf(a), k) {
					t.Fatalf("%s in the intersection but not in %v", k, a)
				}
			}
		}
		// Every element common to all arrays is in it.
		for _, e := range arrays[0] {
			inAll := true
			for _, a := range arrays[1:] {
				inAll = inAll && slices.Contains(setOf(a), canonical(e))
			}
			if inAll && !slices.Contains(got, canonical(e)) {
				t.Fatalf("%s is in every array but not in the intersection", canonical(e))
			}
		}
	})
}

func TestPropMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genObject(2).Draw(t, "a")
		b := genObject(2).Draw(t, "b")
		c := genObject(2).Draw(t, "c")
		aIn, bIn := canonical(a), canonical(b)
		ab := Merge(a, b)
		if canonical(a) != aIn || canonical(b) != bIn {
			t.Fatal("merge modified its inputs")
		}
		if canonical(Merge(a, a)) != canonical(a) {
			t.Fatal("merge(a, a) != a")
		}
		if canonical(Merge(a, b, c)) != canonical(Merge(ab, c)) {
			t.Fatal("merge(a, b, c) != merge(merge(a, b), c)")
		}
		// The last argument's scalars win.
		for k, v := range b {
			if _, obj := v.(map[string]any); !obj && canonical(ab[k]) != canonical(v) {
				t.Fatalf("field %s: merge kept %v, want the later %v", k, ab[k], v)
			}
		}
		// Disjoint fields commute.
		disjoint := map[string]any{}
		for k, v := range b {
			if _, clash := a[k]; !clash {
				disjoint[k] = v
			}
		}
		if canonical(Merge(a, disjoint)) != canonical(Merge(disjoint, a)) {
			t.Fatalf("merge of disjoint objects does not commute: %v %v", a, disjoint)
		}
	})
}

// The library functions run inside expressions agree with the Go ones and
// are order-independent as the lint convergence check assumes.
func TestPropUnionExpressionOrderIndependent(t *testing.T) {
	set := mustCompile(t, []Spec{{Name: "c", Match: "true", Strategy: "siblings", OnRead: `{"items": union(map(siblings, #.items))}`}}, Options{})
	r, _ := set.Match("k")
	rapid.Check(t, func(t *rapid.T) {
		lists := rapid.SliceOfN(rapid.SliceOfN(genJSON(1), 0, 3), 2, 4).Draw(t, "lists")
		var vs []conflict.Version
		for i, l := range lists {
			b, _ := json.Marshal(map[string]any{"items": l})
			vs = append(vs, ver(fmt.Sprintf("r%d", i), 1, 1, string(b)))
		}
		res, err := r.Resolve("k", "r0", vs)
		if err != nil {
			t.Fatal(err)
		}
		sets := make([][]any, len(lists))
		copy(sets, lists)
		var got struct{ Items []any }
		if err := json.Unmarshal(res.Value, &got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(setOf(got.Items), setOf(Union(sets...))) {
			t.Fatalf("expression union %v != Union %v", got.Items, Union(sets...))
		}
	})
}
