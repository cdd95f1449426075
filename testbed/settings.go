package testbed

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/geogate/geogate/gateway/config"
)

// applySettings sets the region configuration keys of settings (a key path
// such as "replication.stream_max_age", as `geogate serve --set` takes it,
// to its value) on c. Scalar keys only: durations, sizes (config.ByteSize
// and other text-unmarshalling types), numbers, booleans and strings.
func applySettings(c *config.Config, settings map[string]string) error {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if err := setKey(reflect.ValueOf(c).Elem(), key, settings[key]); err != nil {
			return fmt.Errorf("settings.%s: %w", key, err)
		}
	}
	return nil
}

// checkSettings reports a setting no region config could take.
func checkSettings(settings map[string]string) error {
	return applySettings(config.Default(), settings)
}

func setKey(v reflect.Value, path, value string) error {
	head, rest, nested := strings.Cut(path, ".")
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("koanf"), ","); tag != head || !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		if nested {
			if fv.Kind() != reflect.Struct {
				return fmt.Errorf("%q is not a section", head)
			}
			return setKey(fv, rest, value)
		}
		return setScalar(fv, value)
	}
	return fmt.Errorf("no key %q", head)
}

func setScalar(fv reflect.Value, value string) error {
	if u, ok := fv.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(value))
	}
	switch {
	case fv.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(value)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		fv.SetString(value)
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case fv.CanInt():
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	default:
		return fmt.Errorf("a %s key cannot be set here", fv.Type())
	}
	return nil
}
