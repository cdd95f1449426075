package testbed

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	typeDuration = reflect.TypeFor[time.Duration]()
	typeLinks    = reflect.TypeFor[Links]()
	typeProfile  = reflect.TypeFor[LinkProfile]()
)

// checkKeys walks a YAML node against the Go type it will be decoded into
// and reports every mapping key the type has no field for, with its line
// and the keys allowed there. Field names are the yaml tags. It does not
// check values: decoding does.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	var errs []error
	walkKeys(n, t, path, &errs)
	return errors.Join(errs...)
}

func walkKeys(n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	if n == nil {
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch {
	case t == typeLinks:
		// A mapping of "default" or "from->to" to profiles.
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				walkKeys(n.Content[i+1], typeProfile, join(n.Content[i].Value), errs)
			}
		}
	case t == typeDuration:
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // the decoder reports the type mismatch
		}
		fields := map[string]reflect.Type{}
		var names []string
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				slices.Sort(names)
				*errs = append(*errs, fmt.Errorf("line %d: unknown key %q in %s (known: %s)",
					k.Line, join(k.Value), orTop(path), strings.Join(names, ", ")))
				continue
			}
			walkKeys(n.Content[i+1], ft, join(k.Value), errs)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for i, item := range n.Content {
				walkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				walkKeys(n.Content[i+1], t.Elem(), join(n.Content[i].Value), errs)
			}
		}
	}
}

func orTop(path string) string {
	if path == "" {
		return "the scenario"
	}
	return path
}
