package config

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/internal/schema"
)

// configType is the schema every layer is checked against; keyTag names
// its keys.
var configType = reflect.TypeFor[Config]()

const keyTag = "koanf"

// unknownKeys walks one layer of the configuration (before merging)
// against the Config schema and returns the leaf path of every key the
// schema does not have, with the closest known path when one is near
// ("htp: {listen: x}" gives htp.listen, suggesting http.listen). Shapes
// that do not fit (a string where a mapping belongs) are left to the
// decoder.
func unknownKeys(layer *yaml.Node) (paths, suggestions []string) {
	for _, u := range schema.Unknowns(layer, configType, keyTag) {
		for _, leaf := range schema.Leaves(u.Value, u.Path) {
			paths = append(paths, leaf)
			s := ""
			if u.Nearest != "" {
				s = schema.Join(u.In, u.Nearest) + strings.TrimPrefix(leaf, u.Path)
			}
			suggestions = append(suggestions, s)
		}
	}
	return paths, suggestions
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
				p := schema.Join(path, k.Value)
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
