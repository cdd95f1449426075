package testbed

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/internal/schema"
)

// checkKeys walks a YAML node against the Go type it will be decoded into
// and reports every mapping key the type has no field for, with its line
// and the keys allowed there. Field names are the yaml tags. It does not
// check values: decoding does.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	var errs []error
	for _, u := range schema.Unknowns(n, t, "yaml") {
		in := schema.Join(path, u.In)
		if in == "" {
			in = "the scenario"
		}
		errs = append(errs, fmt.Errorf("line %d: unknown key %q in %s (known: %s)",
			u.Line, schema.Join(path, u.Path), in, strings.Join(u.Known, ", ")))
	}
	return errors.Join(errs...)
}

// KeyShape is the form Links takes in YAML (schema.Shaped): a mapping of
// "default" and "from->to" to profiles.
func (Links) KeyShape() any { return map[string]LinkProfile{} }
