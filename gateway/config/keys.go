package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

var configType = reflect.TypeOf(Config{})

// unknownKeys walks a configuration map (one layer, before merging) against
// the Config schema and returns the leaf path of every key the schema does
// not have, with the closest known path when one is near. Shapes that do not
// fit (a string where a mapping belongs) are left to the decoder.
func unknownKeys(m map[string]any) (paths, suggestions []string) {
	var walk func(t reflect.Type, v any, path string)
	walk = func(t reflect.Type, v any, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			mp, ok := v.(map[string]any)
			if !ok {
				return
			}
			for _, k := range sortedKeys(mp) {
				f, ok := fieldByTag(t, k)
				if ok {
					walk(f.Type, mp[k], join(path, k))
					continue
				}
				near := nearestTag(t, k)
				for _, leaf := range leaves(mp[k], join(path, k)) {
					paths = append(paths, leaf)
					s := ""
					if near != "" {
						s = join(path, near) + strings.TrimPrefix(leaf, join(path, k))
					}
					suggestions = append(suggestions, s)
				}
			}
		case reflect.Map:
			mp, ok := v.(map[string]any)
			if !ok {
				return
			}
			for _, k := range sortedKeys(mp) {
				walk(t.Elem(), mp[k], join(path, k))
			}
		case reflect.Slice:
			list, ok := v.([]any)
			if !ok {
				return
			}
			for i, item := range list {
				walk(t.Elem(), item, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(configType, m, "")
	return paths, suggestions
}

// fieldByTag finds the struct field whose koanf tag is name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("koanf"), ","); tag == name && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// nearestTag returns the struct's koanf tag closest to name by edit
// distance, if it is close enough to be a likely typo.
func nearestTag(t reflect.Type, name string) string {
	best, bestDist := "", 0
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("koanf"), ",")
		if tag == "" {
			continue
		}
		d := editDistance(strings.ToLower(name), tag)
		if best == "" || d < bestDist {
			best, bestDist = tag, d
		}
	}
	if best == "" || bestDist > max(1, len(name)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
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
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// leaves lists the leaf paths under v (v itself when it is not a mapping or
// a list of mappings with keys).
func leaves(v any, path string) []string {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			return []string{path}
		}
		var out []string
		for _, k := range sortedKeys(x) {
			out = append(out, leaves(x[k], join(path, k))...)
		}
		return out
	}
	return []string{path}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlIndex maps every key path in a YAML document to the line it is
// written on, and records the order of the regions mapping.
type yamlIndex struct {
	lines   map[string]int
	regions []string
}

// indexYAML reads the key paths, lines and region order of a parsed YAML
// document. It returns an error when the document is not a mapping.
func indexYAML(doc *yaml.Node) (yamlIndex, error) {
	idx := yamlIndex{lines: map[string]int{}}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return idx, nil // empty file
	}
	root := doc
	if root.Kind == yaml.DocumentNode {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return idx, fmt.Errorf("the top level must be a mapping of keys, not %s", nodeKind(root))
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				p := join(path, k.Value)
				idx.lines[p] = k.Line
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				idx.lines[p] = item.Line
				walk(item, p)
			}
		case yaml.AliasNode:
			if n.Alias != nil {
				walk(n.Alias, path)
			}
		}
	}
	walk(root, "")
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "regions" {
			continue
		}
		regions := root.Content[i+1]
		if regions.Kind == yaml.AliasNode && regions.Alias != nil {
			regions = regions.Alias
		}
		if regions.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(regions.Content); j += 2 {
				idx.regions = append(idx.regions, regions.Content[j].Value)
			}
		}
	}
	return idx, nil
}

// line returns the line of path or of its nearest written ancestor.
func (x yamlIndex) line(path string) int {
	for path != "" {
		if l, ok := x.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the scalar %q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a mapping"
}
