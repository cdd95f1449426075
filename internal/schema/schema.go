// Package schema maps YAML keys to the fields of the Go structs they
// decode into, by struct tag, in both directions: Unknowns finds every key
// of a YAML tree that its Go type has no field for (with the known key it
// most likely misspells), and Encode writes a struct back as YAML under the
// same keys. The region config (gateway/config, koanf tags) and the
// testbed's scenarios (yaml tags) read and write their files through it,
// so both follow one set of rules.
package schema

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Field is one key of a struct type.
type Field struct {
	// Key is the field's name under the tag: the tag's first part, or the
	// Go name lower-cased when the field has no tag (yaml.v3's and
	// mapstructure's default).
	Key string
	// Tagged is false for a field named by default.
	Tagged bool
	// Index is the field's index in the struct.
	Index int
	// Type is the field's Go type.
	Type reflect.Type
}

// Fields lists the keys of struct type t under tag, in declaration order:
// every exported field but those tagged "-".
func Fields(t reflect.Type, tag string) []Field {
	var out []Field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get(tag), ",")
		if key == "-" {
			continue
		}
		field := Field{Key: key, Tagged: key != "", Index: i, Type: f.Type}
		if key == "" {
			field.Key = strings.ToLower(f.Name)
		}
		out = append(out, field)
	}
	return out
}

// Lookup returns the field of struct type t whose key under tag is key.
func Lookup(t reflect.Type, tag, key string) (Field, bool) {
	for _, f := range Fields(t, tag) {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

// Keys returns the keys of struct type t under tag, sorted.
func Keys(t reflect.Type, tag string) []string {
	var keys []string
	for _, f := range Fields(t, tag) {
		keys = append(keys, f.Key)
	}
	slices.Sort(keys)
	return keys
}

// Shaped is implemented by a type whose YAML form is not its own fields
// (it decodes itself with an UnmarshalYAML): Unknowns walks the YAML under
// such a type as if it were KeyShape's type, for example a map of the
// values it reads.
type Shaped interface {
	KeyShape() any
}

// Unknown is one key of a YAML tree that its Go type has no field for.
type Unknown struct {
	// Path is the key's path: keys joined by '.', list items as [i]
	// ("workload.rat", "faults[0].restart").
	Path string
	// In is the path of the mapping the key is in ("" at the top).
	In string
	// Key is the key as written.
	Key string
	// Line is the key's line (0 for a tree built in code).
	Line int
	// Known are the keys allowed in that mapping, sorted.
	Known []string
	// Nearest is the known key Key most likely misspells, or "".
	Nearest string
	// Value is what is written under the key.
	Value *yaml.Node
}

// Unknowns walks the YAML tree n against the Go type t whose struct fields
// are named by tag and returns every mapping key t has no field for, in the
// order written. Only keys are checked, not values: a value of the wrong
// shape (a scalar where a mapping belongs) is left to the decoder. Maps
// with string keys take any key; their values, and list items, are walked
// against the element type.
func Unknowns(n *yaml.Node, t reflect.Type, tag string) []Unknown {
	var out []Unknown
	walk(n, t, tag, "", &out)
	return out
}

var (
	shapedType   = reflect.TypeFor[Shaped]()
	durationType = reflect.TypeFor[time.Duration]()
)

func walk(n *yaml.Node, t reflect.Type, tag, path string, out *[]Unknown) {
	if n == nil {
		return
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			walk(c, t, tag, path, out)
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(shapedType) || reflect.PointerTo(t).Implements(shapedType) {
		t = reflect.TypeOf(reflect.New(t).Interface().(Shaped).KeyShape())
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := Join(path, k.Value)
			if f, ok := Lookup(t, tag, k.Value); ok {
				walk(n.Content[i+1], f.Type, tag, p, out)
				continue
			}
			known := Keys(t, tag)
			*out = append(*out, Unknown{Path: p, In: path, Key: k.Value, Line: k.Line, Known: known,
				Nearest: Nearest(k.Value, known), Value: n.Content[i+1]})
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode || t.Key().Kind() != reflect.String {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walk(n.Content[i+1], t.Elem(), tag, Join(path, n.Content[i].Value), out)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			walk(item, t.Elem(), tag, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// Join appends key to path with a '.'.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Leaves lists the paths of the scalars and empty mappings under n, which
// is at path (path itself when n is not a mapping): what an unknown key
// would have set.
func Leaves(n *yaml.Node, path string) []string {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		return []string{path}
	}
	var out []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, Leaves(n.Content[i+1], Join(path, n.Content[i].Value))...)
	}
	return out
}

// Nearest returns the option got most likely misspells: the closest by
// edit distance, ignoring case (a swap of two adjacent letters counts as
// one edit), if it is at most a third of the option's length (and at least
// 1) away; "" when none is that close, or when got is one of the options.
func Nearest(got string, options []string) string {
	if slices.Contains(options, got) {
		return ""
	}
	lower := strings.ToLower(got)
	best, bestDist := "", -1
	for _, o := range options {
		d := editDistance(lower, strings.ToLower(o))
		if limit := max(1, len(o)/3); d <= limit && (bestDist < 0 || d < bestDist) {
			best, bestDist = o, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two strings, in bytes,
// counting a swap of two adjacent bytes as one edit.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// Encode writes v (a struct or a pointer to one) as a YAML mapping keyed by
// its fields' tag names, the form Unknowns and a decoder with the same tag
// read back. Every field is written, zero values included, so that the
// result does not depend on a reader's defaults; only a nil slice, map or
// pointer is left out. Scalars are encoded by yaml.v3, which quotes what
// would otherwise read back as another type; a time.Duration is written as
// its String form, an encoding.TextMarshaler as its text. The keys of a
// string-keyed map at path p come in order[p] first, then by name. An
// exported field without a tag is an error, since a reader would not find
// it under a predictable key.
func Encode(v any, tag string, order map[string][]string) (*yaml.Node, error) {
	e := encoder{tag: tag, order: order}
	n, err := e.node(reflect.ValueOf(v), "")
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, fmt.Errorf("cannot encode a nil %T", v)
	}
	return n, nil
}

type encoder struct {
	tag   string
	order map[string][]string
}

var textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()

// node encodes v, found at path. It returns nil for a nil slice, map or
// pointer.
func (e encoder) node(v reflect.Value, path string) (*yaml.Node, error) {
	switch {
	case v.Type() == durationType:
		return scalar(time.Duration(v.Int()).String(), path)
	case v.Type().Implements(textMarshalerType):
		if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
			return nil, nil
		}
		text, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", orTop(path), err)
		}
		return scalar(string(text), path)
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil, nil
		}
		return e.node(v.Elem(), path)
	case reflect.Struct:
		return e.structNode(v, path)
	case reflect.Map:
		return e.mapNode(v, path)
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil, nil
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for i := range v.Len() {
			p := fmt.Sprintf("%s[%d]", path, i)
			item, err := e.node(v.Index(i), p)
			if err != nil {
				return nil, err
			}
			if item == nil {
				return nil, fmt.Errorf("%s: a list item cannot be nil", p)
			}
			seq.Content = append(seq.Content, item)
		}
		return seq, nil
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return scalar(v.Interface(), path)
	}
	return nil, fmt.Errorf("%s: cannot write a %s as YAML", orTop(path), v.Type())
}

// structNode writes a struct's fields in declaration order.
func (e encoder) structNode(v reflect.Value, path string) (*yaml.Node, error) {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	t := v.Type()
	for _, f := range Fields(t, e.tag) {
		if !f.Tagged || t.Field(f.Index).Anonymous {
			return nil, fmt.Errorf("%s: field %s.%s has no %s key", orTop(path), t, t.Field(f.Index).Name, e.tag)
		}
		val, err := e.node(v.Field(f.Index), Join(path, f.Key))
		if err != nil {
			return nil, err
		}
		if val != nil {
			m.Content = append(m.Content, keyNode(f.Key), val)
		}
	}
	return m, nil
}

// mapNode writes a string-keyed map, the keys in e.order[path] first, then
// the rest by name.
func (e encoder) mapNode(v reflect.Value, path string) (*yaml.Node, error) {
	if v.IsNil() {
		return nil, nil
	}
	if v.Type().Key().Kind() != reflect.String {
		return nil, fmt.Errorf("%s: map keys must be strings, not %s", orTop(path), v.Type().Key())
	}
	var keys []string
	for _, k := range v.MapKeys() {
		keys = append(keys, k.String())
	}
	slices.Sort(keys)
	rank := func(k string) int {
		if i := slices.Index(e.order[path], k); i >= 0 {
			return i
		}
		return len(e.order[path])
	}
	slices.SortStableFunc(keys, func(a, b string) int { return rank(a) - rank(b) })
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, k := range keys {
		p := Join(path, k)
		val, err := e.node(v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key())), p)
		if err != nil {
			return nil, err
		}
		if val == nil {
			return nil, fmt.Errorf("%s: a map value cannot be nil", p)
		}
		m.Content = append(m.Content, keyNode(k), val)
	}
	return m, nil
}

// scalar encodes a Go scalar with yaml.v3, which picks a style (quoted when
// needed) that reads back as the same value and type.
func scalar(v any, path string) (*yaml.Node, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, fmt.Errorf("%s: %w", orTop(path), err)
	}
	return &n, nil
}

// keyNode is a mapping key, quoted by yaml.v3 if it would not read back as
// this string.
func keyNode(k string) *yaml.Node {
	n, _ := scalar(k, k) // encoding a string cannot fail
	return n
}

func orTop(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}
