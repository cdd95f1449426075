package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/v2"
)

var (
	durationType = reflect.TypeOf(time.Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
	stringsType  = reflect.TypeOf([]string(nil))
)

// decode unmarshals the merged configuration into a fresh Config. Keys
// match the koanf tags exactly (case-sensitive); strings are converted to
// the field's type. A value that does not fit its key gives a *FieldError
// naming the key.
//
// strict makes a key outside the schema a decoding error too; Load turns it
// off once it has reported unknown keys itself, with their sources.
func decode(ko *koanf.Koanf, strict bool) (*Config, error) {
	var c Config
	dc := &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook, byteSizeHook, commaListHook),
		WeaklyTypedInput: true,
		ErrorUnused:      strict,
		MatchName:        func(mapKey, fieldName string) bool { return mapKey == fieldName },
		TagName:          "koanf",
	}
	if err := ko.UnmarshalWithConf("", &c, koanf.UnmarshalConf{DecoderConfig: dc}); err != nil {
		return nil, decodeErrors(err)
	}
	return &c, nil
}

// durationHook reads a duration from a string such as "5s" or "1h30m", and
// refuses a bare non-zero number, whose unit would be a guess.
func durationHook(_, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch v := data.(type) {
	case time.Duration:
		return v, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration (use e.g. \"500ms\", \"5s\", \"2h\")", v)
		}
		return d, nil
	case int, int64, uint64, float64:
		if reflect.ValueOf(v).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("%v has no unit (write e.g. \"%vs\" or \"%vms\")", v, v, v)
	}
	return data, nil
}

// byteSizeHook reads a ByteSize written as a string ("1GiB").
func byteSizeHook(_, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if to != byteSizeType || !ok {
		return data, nil
	}
	return ParseByteSize(s)
}

// commaListHook reads a list of strings written as "a, b, c" (from the
// environment or --set).
func commaListHook(_, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if to != stringsType || !ok {
		return data, nil
	}
	if strings.TrimSpace(s) == "" {
		return []string{}, nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts, nil
}

// decodeErrors turns mapstructure's error tree into one *FieldError per
// field that failed, joined.
func decodeErrors(err error) error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if de, ok := e.(*mapstructure.DecodeError); ok {
			inner := de.Unwrap()
			if _, ok := inner.(interface{ Unwrap() []error }); ok {
				walk(inner)
				return
			}
			if _, ok := inner.(*mapstructure.DecodeError); ok {
				walk(inner)
				return
			}
			if de.Name() == "" {
				out = append(out, fmt.Errorf("config: %s", decodeReason(inner)))
			} else {
				out = append(out, &FieldError{Key: keyFromDecoderName(de.Name()), Reason: decodeReason(inner)})
			}
			return
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
			return
		}
		out = append(out, fmt.Errorf("config: %w", e))
	}
	walk(err)
	return errors.Join(out...)
}

// keyFromDecoderName converts mapstructure's field names ("regions[x].http")
// to key paths ("regions.x.http"); list indexes stay ("rules[0].name").
func keyFromDecoderName(name string) string {
	const prefix = "regions["
	if rest, ok := strings.CutPrefix(name, prefix); ok {
		if i := strings.IndexByte(rest, ']'); i >= 0 {
			return "regions." + rest[:i] + rest[i+1:]
		}
	}
	return name
}

// decodeReason words a mapstructure failure for an operator.
func decodeReason(err error) string {
	var ue *mapstructure.UnconvertibleTypeError
	if errors.As(err, &ue) {
		return fmt.Sprintf("must be %s, not %s", describeType(ue.Expected.Type()), describeValue(ue.Value))
	}
	var pe *mapstructure.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s is not %s", describeValue(pe.Value), describeType(pe.Expected.Type()))
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "expected a map") {
		return "must be a mapping of keys"
	}
	return msg
}

// describeType names the kind of value a field takes.
func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration"
	case t == byteSizeType:
		return "a size"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping of keys"
	}
	return t.String()
}

// describeValue shows a value, or its kind when it is a list or mapping.
func describeValue(v any) string {
	switch v.(type) {
	case nil:
		return "empty"
	case string:
		return fmt.Sprintf("%q", v)
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map:
		return "a mapping"
	}
	return fmt.Sprint(v)
}
