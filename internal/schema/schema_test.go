package schema

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type limits struct {
	Max  int           `yaml:"max"`
	Wait time.Duration `yaml:"wait"`
}

// pairs decodes itself from a mapping of names to limits.
type pairs struct{ byName map[string]limits }

func (pairs) KeyShape() any { return map[string]limits{} }

type doc struct {
	Name    string            `yaml:"name"`
	Limits  limits            `yaml:"limits"`
	Ptr     *limits           `yaml:"ptr"`
	List    []limits          `yaml:"list"`
	ByName  map[string]limits `yaml:"by_name"`
	Pairs   pairs             `yaml:"pairs"`
	Default string
	Skipped string `yaml:"-"`
	hidden  string //nolint:unused // an unexported field is never a key
}

func parse(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestUnknowns(t *testing.T) {
	src := `name: x
nmae: y
limits: {max: 1, wiat: 2s}
ptr: {mx: 3}
list:
  - {max: 1}
  - {wait: 1s, bogus: 1}
by_name: {a: {max: 1, extra: 2}}
pairs: {p: {wait: 1s, maxx: 1}}
default: ok
skipped: no
anchor: &a {max: 1}
limits_alias: *a
`
	got := Unknowns(parse(t, src), reflect.TypeFor[doc](), "yaml")
	want := []struct {
		path, in, nearest string
		line              int
	}{
		{"nmae", "", "name", 2},
		{"limits.wiat", "limits", "wait", 3},
		{"ptr.mx", "ptr", "max", 4},
		{"list[1].bogus", "list[1]", "", 7},
		{"by_name.a.extra", "by_name.a", "", 8},
		{"pairs.p.maxx", "pairs.p", "max", 9},
		{"skipped", "", "", 11},
		{"anchor", "", "", 12},
		{"limits_alias", "", "", 13},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d unknown keys, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Path != w.path || g.In != w.in || g.Nearest != w.nearest || g.Line != w.line {
			t.Errorf("unknown %d = {%s in %q near %q line %d}, want {%s in %q near %q line %d}",
				i, g.Path, g.In, g.Nearest, g.Line, w.path, w.in, w.nearest, w.line)
		}
	}
	if want := []string{"by_name", "default", "limits", "list", "name", "pairs", "ptr"}; !slices.Equal(got[0].Known, want) {
		t.Errorf("known keys at the top: %v, want %v", got[0].Known, want)
	}
	// An alias is walked as what it points to.
	if got := Unknowns(parse(t, "x: &l {max: 1, nope: 2}\nlimits: *l\n"), reflect.TypeFor[struct {
		X      map[string]int `yaml:"x"`
		Limits limits         `yaml:"limits"`
	}](), "yaml"); len(got) != 1 || got[0].Path != "limits.nope" {
		t.Errorf("alias: %+v", got)
	}
	// Shapes that do not fit are the decoder's business.
	if got := Unknowns(parse(t, "limits: 3\nlist: {a: 1}\n"), reflect.TypeFor[doc](), "yaml"); len(got) != 0 {
		t.Errorf("wrong shapes reported as unknown keys: %+v", got)
	}
}

func TestLeaves(t *testing.T) {
	n := parse(t, "a: {b: 1, c: {d: 2, e: {}}}\n").Content[0]
	if got, want := Leaves(n, "x"), []string{"x.a.b", "x.a.c.d", "x.a.c.e"}; !slices.Equal(got, want) {
		t.Errorf("Leaves = %v, want %v", got, want)
	}
	if got := Leaves(parse(t, "1").Content[0], "x"); !slices.Equal(got, []string{"x"}) {
		t.Errorf("Leaves of a scalar = %v", got)
	}
}

func TestNearest(t *testing.T) {
	opts := []string{"listen", "http", "max_value_bytes", "lww", "rules"}
	for got, want := range map[string]string{
		"lissten":         "listen",
		"htp":             "http",
		"HTTP":            "http",
		"max_valeu_bytes": "max_value_bytes", // a swap is one edit
		"LWW":             "lww",
		"listen":          "",
		"tcp":             "",
		"x":               "",
		"rulez":           "rules",
	} {
		if n := Nearest(got, opts); n != want {
			t.Errorf("Nearest(%q) = %q, want %q", got, n, want)
		}
	}
}

type size int64

func (s size) MarshalText() ([]byte, error) { return []byte(strings.Repeat("#", int(s))), nil }

type encoded struct {
	Name  string           `koanf:"name"`
	Wait  time.Duration    `koanf:"wait"`
	Size  size             `koanf:"size"`
	Zero  int              `koanf:"zero"`
	Nil   []string         `koanf:"nil"`
	Peers map[string]int   `koanf:"peers"`
	Inner *struct{ A int } `koanf:"-"`
}

func TestEncode(t *testing.T) {
	v := encoded{Name: "null", Wait: 1500 * time.Millisecond, Size: 3, Peers: map[string]int{"b": 2, "a": 1, "c": 3, "true": 4}}
	n, err := Encode(v, "koanf", map[string][]string{"peers": {"c", "true"}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	want := `name: "null"
wait: 1.5s
size: '###'
zero: 0
peers:
    c: 3
    "true": 4
    a: 1
    b: 2
`
	if string(out) != want {
		t.Errorf("Encode wrote\n%s\nwant\n%s", out, want)
	}
}

// TestEncodeRefusesUntaggedField checks Encode refuses a field a reader
// would not find under a known key, instead of writing it under a guess.
func TestEncodeRefusesUntaggedField(t *testing.T) {
	type inner struct {
		Tagged   string `koanf:"tagged"`
		Untagged string
	}
	type outer struct {
		Inner inner `koanf:"inner"`
	}
	_, err := Encode(outer{}, "koanf", nil)
	if err == nil || !strings.Contains(err.Error(), "Untagged") || !strings.Contains(err.Error(), "inner") {
		t.Fatalf("err = %v, want one naming the field Untagged under inner", err)
	}
}
