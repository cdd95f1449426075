package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	koanfyaml "github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/internal/schema"
	"github.com/geogate/geogate/rules"
)

// EnvPrefix starts every environment variable Load reads.
const EnvPrefix = "GEOGATE_"

// EnvConfigFile is the environment variable naming the configuration file
// when Load is given no path and no --config flag. It is not a key.
const EnvConfigFile = EnvPrefix + "CONFIG"

// flagKey returns the key a flag defined by RegisterFlags overrides, or ""
// for flags that are not keys (--config, --set, and flags of others).
func flagKey(name string) string {
	switch name {
	case "region":
		return "region"
	case "data-dir":
		return "data_dir"
	case "http-listen":
		return "http.listen"
	case "nats-listen":
		return "nats.listen"
	case "nats-url":
		return "nats.url"
	case "nats-embedded":
		return "nats.embedded"
	case "topology":
		return "topology.kind"
	case "hub":
		return "topology.hub"
	case "log-level":
		return "log.level"
	case "log-format":
		return "log.format"
	}
	return ""
}

// RegisterFlags defines the configuration flags on fs: --config FILE, one
// flag per common key (--region, --data-dir, --http-listen, --nats-listen,
// --nats-url, --nats-embedded, --topology, --hub, --log-level,
// --log-format) and the repeatable --set key.path=value for any key. Pass
// the parsed fs to Load; only flags the user set override. It panics, like
// pflag, if fs already defines one of these names.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "configuration file (YAML); default $"+EnvConfigFile)
	fs.String("region", "", "this region's name (key region)")
	fs.String("data-dir", "", "data directory (key data_dir; default ./data/<region>)")
	fs.String("http-listen", "", "client API host:port (key http.listen; default from regions.<region>.http)")
	fs.String("nats-listen", "", "embedded NATS client host:port (key nats.listen; default from regions.<region>.nats)")
	fs.String("nats-url", "", "external NATS URL instead of an embedded server (key nats.url)")
	fs.Bool("nats-embedded", true, "run an embedded NATS server with JetStream (key nats.embedded)")
	fs.String("topology", TopologyAllToAll, "all-to-all, star or circular (key topology.kind)")
	fs.String("hub", "", "star topology hub region (key topology.hub)")
	fs.String("log-level", "info", "debug, info, warn or error (key log.level)")
	fs.String("log-format", "text", "text or json (key log.format)")
	fs.StringArray("set", nil, "set any key, e.g. --set replication.batch=512 (repeatable; lists as [a, b] or a,b)")
}

// Load assembles the configuration from defaults, the YAML file at path,
// the GEOGATE_* variables in environ (entries "NAME=value", as from
// os.Environ; nil means none) and the flags the user set on flags (defined
// by RegisterFlags; nil means none), each overriding the one before. With
// path "", the file is --config if set, else $GEOGATE_CONFIG, else none.
//
// It returns a complete, valid Config, or an error listing every problem
// found: a missing or unreadable file, YAML that does not parse, an unknown
// key (naming where it was written), a value of the wrong type, and every
// Validate failure, one per line, each naming its key. Load only reads; it
// creates no file or directory.
func Load(path string, environ []string, flags *pflag.FlagSet) (*Config, error) {
	if path == "" && flags != nil {
		if f := flags.Lookup("config"); f != nil && f.Changed {
			path = f.Value.String()
		}
	}
	if path == "" {
		path = lookupEnv(environ, EnvConfigFile)
	}

	// Each layer is read, checked for unknown keys (located in its source)
	// and merged over the layers before it.
	user := koanf.New(".")
	var problems []error
	var idx yamlIndex
	layers := []func() (map[string]any, []error, error){
		func() (m map[string]any, unknown []error, err error) {
			if path == "" {
				return nil, nil, nil
			}
			m, idx, err = readFile(path)
			if err == nil {
				resolveFilePaths(m, filepath.Dir(path))
			}
			return m, checkKeys(m, func(key string) string {
				if l := idx.line(key); l > 0 {
					return fmt.Sprintf("%s:%d", path, l)
				}
				return path
			}), err
		},
		func() (map[string]any, []error, error) { return readEnv(environ) },
		func() (map[string]any, []error, error) { return readFlags(flags, user) },
		func() (map[string]any, []error, error) { return readSetFlags(flags) },
	}
	for _, layer := range layers {
		m, unknown, err := layer()
		if err != nil {
			return nil, err
		}
		problems = append(problems, unknown...)
		if err := user.Load(confmap.Provider(m, ""), nil); err != nil {
			return nil, fmt.Errorf("config: merge: %w", err)
		}
	}

	// nats.url given without nats.embedded means an external server.
	if user.String("nats.url") != "" && !user.Exists("nats.embedded") {
		if err := user.Set("nats.embedded", false); err != nil {
			return nil, fmt.Errorf("config: nats.embedded: %w", err)
		}
	}

	// auth.tokens_file given without auth.enabled means auth on.
	if user.String("auth.tokens_file") != "" && !user.Exists("auth.enabled") {
		if err := user.Set("auth.enabled", true); err != nil {
			return nil, fmt.Errorf("config: auth.enabled: %w", err)
		}
	}

	ko := koanf.New(".")
	if err := ko.Load(confmap.Provider(defaultValues(), ""), nil); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}
	if err := ko.Merge(user); err != nil {
		return nil, fmt.Errorf("config: merge: %w", err)
	}
	c, err := decode(ko, len(problems) == 0)
	if err != nil {
		return nil, errors.Join(append(problems, err)...)
	}
	c.file, c.fileOrder = path, idx.regions
	c.Complete()
	if err := c.Validate(); err != nil {
		locateRuleProblems(err, path, c)
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return c, nil
}

// Default returns a Config holding every built-in default and nothing else:
// no region, no regions, no rules. Set those, then call Complete and
// Validate; Load starts from the same values.
func Default() *Config {
	ko := koanf.New(".")
	if err := ko.Load(confmap.Provider(defaultValues(), ""), nil); err != nil {
		panic(fmt.Sprintf("config: defaults: %v", err))
	}
	c, err := decode(ko, true)
	if err != nil {
		panic(fmt.Sprintf("config: defaults: %v", err))
	}
	return c
}

// defaultValues is the defaults layer, written as a file would be.
func defaultValues() map[string]any {
	return map[string]any{
		"topology": map[string]any{"kind": TopologyAllToAll},
		"http": map[string]any{
			"max_value_bytes": "1MiB",
			"read_timeout":    "30s",
			"write_timeout":   "60s",
			"idle_timeout":    "120s",
		},
		"nats":       map[string]any{"embedded": true, "sync": "1s", "replicas": 1},
		"durability": map[string]any{"sync": true},
		"election":   map[string]any{"lease_ttl": "3s"},
		"region_log": map[string]any{"max_age": "24h", "max_bytes": "1GiB", "append_timeout": "10s"},
		"replication": map[string]any{
			"max_clock_skew":   "5s",
			"heartbeat":        "1s",
			"stream_max_age":   "168h",
			"stream_max_bytes": "1GiB",
			"batch":            256,
			"ack_wait":         "5s",
			"log_mode":         LogModeOutbox,
			"reseed_after":     "30s",
		},
		"tombstones":   map[string]any{"grace": "24h", "interval": "1h"},
		"anti_entropy": map[string]any{"interval": "1m", "scrub_interval": "24h"},
		"conflicts":    map[string]any{"retention": 100000, "max_age": "168h"},
		"sessions":     map[string]any{"default_wait": "2s", "max_wait": "30s"},
		"watch":        map[string]any{"retention": 1000000, "heartbeat": "5s", "max_lag": 10000, "write_timeout": "30s"},
		"log":          map[string]any{"level": "info", "format": "text"},
		"storage":      map[string]any{"min_free_bytes": "512MiB"},
	}
}

// readFile reads and parses the YAML file at path, returning its key map
// with null values dropped, and the index of its key lines and region order.
func readFile(path string) (map[string]any, yamlIndex, error) {
	b, err := file.Provider(path).ReadBytes()
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, yamlIndex{}, fmt.Errorf("config: file %q: %w", path, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, yamlIndex{}, fmt.Errorf("config: file %q is not valid YAML: %w", path, err)
	}
	idx, err := indexYAML(&doc)
	if err != nil {
		return nil, yamlIndex{}, fmt.Errorf("config: file %q: %w", path, err)
	}
	m, err := koanfyaml.Parser().Unmarshal(b)
	if err != nil {
		return nil, yamlIndex{}, fmt.Errorf("config: file %q is not valid YAML: %w", path, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return dropNils(m), idx, nil
}

// readEnv reads the GEOGATE_* variables of environ into a nested map and
// reports its unknown keys. A name is the key upper-cased with "__" for
// each dot (GEOGATE_HTTP__LISTEN); a name that is no key so written but
// names exactly one key with single underscores for some of its dots
// (GEOGATE_HTTP_LISTEN, GEOGATE_LOG_LEVEL) sets that key; one that could
// name several is refused with the spellings of each.
func readEnv(environ []string) (map[string]any, []error, error) {
	names := map[string]string{}
	var problems []error
	m, err := env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			rest := strings.TrimPrefix(name, EnvPrefix)
			if rest == "" || name == EnvConfigFile {
				return "", nil
			}
			key, err := envKey(strings.ToLower(rest), envKeyPaths)
			if err != nil {
				problems = append(problems, fmt.Errorf("config: environment %s: %w", name, err))
				return "", nil
			}
			names[key] = name
			return key, parseValue(value)
		},
	}).Read()
	if err != nil {
		return nil, nil, fmt.Errorf("config: environment: %w", err)
	}
	m = dropNils(m)
	// A name that starts as a section does but names no key
	// (GEOGATE_LOG_LEVL) is a misspelling, not another program's variable.
	for k := range m {
		head, _, ok := strings.Cut(k, "_")
		if _, known := envKeyPaths[k]; known || !ok || envKeyPaths[head] != reflect.Struct {
			continue
		}
		problems = append(problems, &UnknownKeyError{Key: k, Source: "environment " + names[k], Suggestion: nearestEnvKey(k)})
		delete(m, k)
	}
	m = dropForeign(m)
	return m, append(problems, checkKeys(m, func(key string) string {
		return "environment " + nearestName(names, key)
	})...), nil
}

// envKeyPaths are the key paths an environment variable can name with
// single underscores, each with the kind of its value: every key of
// Config and of its nested sections (reflect.Struct), not the entries of
// its maps and lists (regions.<r>.http needs "__").
var envKeyPaths = func() map[string]reflect.Kind {
	out := map[string]reflect.Kind{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for _, f := range schema.Fields(t, keyTag) {
			p := schema.Join(path, f.Key)
			out[p] = f.Type.Kind()
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, p)
			}
		}
	}
	walk(configType, "")
	return out
}()

// nearestEnvKey returns the key whose name with single underscores is
// closest to name (a likely misspelling), or "".
func nearestEnvKey(name string) string {
	flat := map[string]string{}
	for p := range envKeyPaths {
		flat[strings.ReplaceAll(p, ".", "_")] = p
	}
	return flat[schema.Nearest(name, slices.Collect(maps.Keys(flat)))]
}

// envKey returns the key path an environment variable names (rest: the
// name after the prefix, lower-cased). Read with "__" as dots, rest names
// a key of paths, or an entry of a map or list key: that is the key.
// Otherwise it is the one key of paths whose dots, each written "_" or
// "__", spell rest; with none, the "__" reading is returned (an unknown
// key, or not configuration at all); with several, an error naming the
// spelling of each.
func envKey(rest string, paths map[string]reflect.Kind) (string, error) {
	key := strings.ReplaceAll(rest, "__", ".")
	if _, ok := paths[key]; ok {
		return key, nil
	}
	for p := key; strings.Contains(p, "."); {
		p = p[:strings.LastIndexByte(p, '.')]
		if k, ok := paths[p]; ok && k != reflect.Struct {
			return key, nil
		}
	}
	flat := strings.ReplaceAll(key, ".", "_")
	var found []string
	for p := range paths {
		if strings.ReplaceAll(p, ".", "_") == flat {
			found = append(found, p)
		}
	}
	slices.Sort(found)
	switch len(found) {
	case 0:
		return key, nil
	case 1:
		return found[0], nil
	}
	spell := make([]string, len(found))
	for i, p := range found {
		spell[i] = fmt.Sprintf("%s%s (%s)", EnvPrefix, strings.ToUpper(strings.ReplaceAll(p, ".", "__")), p)
	}
	return "", fmt.Errorf("could name %s: write the one you mean", strings.Join(spell, " or "))
}

// readFlags reads the flags of RegisterFlags that the user set (never a
// flag's default) into a nested map.
func readFlags(flags *pflag.FlagSet, user *koanf.Koanf) (map[string]any, []error, error) {
	if flags == nil {
		return nil, nil, nil
	}
	m, err := posflag.ProviderWithFlag(flags, ".", user, func(f *pflag.Flag) (string, any) {
		key := flagKey(f.Name)
		if key == "" || !f.Changed {
			return "", nil
		}
		return key, posflag.FlagVal(flags, f)
	}).Read()
	if err != nil {
		return nil, nil, fmt.Errorf("config: flags: %w", err)
	}
	return m, nil, nil
}

// readSetFlags reads the --set key.path=value flags into a nested map and
// reports its unknown keys.
func readSetFlags(flags *pflag.FlagSet) (map[string]any, []error, error) {
	if flags == nil {
		return nil, nil, nil
	}
	f := flags.Lookup("set")
	if f == nil || !f.Changed || f.Value.Type() != "stringArray" {
		return nil, nil, nil
	}
	items, err := flags.GetStringArray("set")
	if err != nil {
		return nil, nil, fmt.Errorf("config: flag --set: %w", err)
	}
	flat := map[string]any{}
	names := map[string]string{}
	for _, item := range items {
		key, value, ok := strings.Cut(item, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, "[] ") ||
			strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
			return nil, nil, fmt.Errorf("config: flag --set %q: want key.path=value, e.g. --set http.listen=127.0.0.1:7101", item)
		}
		flat[key] = parseValue(value)
		names[key] = item
	}
	m, err := confmap.Provider(flat, ".").Read()
	if err != nil {
		return nil, nil, fmt.Errorf("config: flag --set: %w", err)
	}
	m = dropNils(m)
	return m, checkKeys(m, func(key string) string {
		return "flag --set " + nearestName(names, key)
	}), nil
}

// checkKeys reports every unknown key of one layer, located by where.
func checkKeys(m map[string]any, where func(key string) string) []error {
	var layer yaml.Node
	if err := layer.Encode(m); err != nil {
		return []error{fmt.Errorf("config: %w", err)}
	}
	paths, suggestions := unknownKeys(&layer)
	out := make([]error, len(paths))
	for i, p := range paths {
		out[i] = &UnknownKeyError{Key: p, Source: where(p), Suggestion: suggestions[i]}
	}
	return out
}

// parseValue converts an environment or --set value: a YAML flow list or
// mapping when it starts with '[' or '{', else the string as given.
func parseValue(s string) any {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") {
		var v any
		if err := yaml.Unmarshal([]byte(t), &v); err == nil {
			return v
		}
	}
	return s
}

// dropNils removes null values (a key written with no value) from a map,
// recursively, so they leave the default in place instead of erasing it.
func dropNils(m map[string]any) map[string]any {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			m[k] = dropNils(x)
		}
	}
	return m
}

// dropForeign removes the environment variables that share the GEOGATE_
// prefix without being configuration keys (GEOGATE_URL of the client verbs,
// test switches): those whose first key is neither a key nor a likely
// misspelling of one. An unknown key below a known one stays, to be
// reported.
func dropForeign(m map[string]any) map[string]any {
	for k := range m {
		if _, ok := schema.Lookup(configType, keyTag, k); !ok && schema.Nearest(k, schema.Keys(configType, keyTag)) == "" {
			delete(m, k)
		}
	}
	return m
}

// nearestName returns the name recorded for key or for its nearest
// ancestor key.
func nearestName(names map[string]string, key string) string {
	for p := key; p != ""; {
		if n, ok := names[p]; ok {
			return n
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return key
}

// lookupEnv returns the value of name in environ, or "".
func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// locateRuleProblems sets At on the rule problems of a Validate
// error when the rules came from the file at path unchanged: each then names
// where `geogate rules lint` shows it (file:line:col).
func locateRuleProblems(err error, path string, c *Config) {
	if path == "" {
		return
	}
	src, rerr := os.ReadFile(path)
	if rerr != nil {
		return
	}
	specs, perr := rules.ParseRules(src, path)
	if perr != nil || !slices.Equal(specs, c.Rules) {
		return // the rules came from elsewhere (environment, flags)
	}
	diags := rules.Errors(rules.Lint(src, path, c.RuleOptions()))
	for _, e := range unjoin(err) {
		var fe *FieldError
		if !errors.As(e, &fe) || !strings.HasPrefix(fe.Key, "rules") {
			continue
		}
		for _, d := range diags {
			key := "rules"
			if d.Index >= 0 {
				key = fmt.Sprintf("rules[%d]", d.Index)
				if d.Field != "" {
					key += "." + d.Field
				}
			}
			if key == fe.Key && d.Line > 0 && strings.HasPrefix(fe.Reason, d.Message) {
				fe.At = fmt.Sprintf("%s:%d:%d", d.File, d.Line, d.Column)
				break
			}
		}
	}
}
