package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/rules"
	"github.com/spf13/pflag"
	"pgregory.net/rapid"
)

// baseYAML is a valid 3-region config whose regions are written in an order
// that is not sorted, so tests can tell file order from name order.
const baseYAML = `region: us-east
regions:
  us-east:  { http: "http://127.0.0.1:7101", nats: "nats://127.0.0.1:7201" }
  eu-west:  { http: "http://127.0.0.1:7102", nats: "nats://127.0.0.1:7202" }
  ap-south: { http: "http://127.0.0.1:7103", nats: "nats://127.0.0.1:7203" }
`

// tb is what the helpers need from *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// writeConfig writes content to a fresh file and returns its path.
func writeConfig(t tb, dir, content string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "geogate-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// load writes yaml (if not "") to a file and loads it with env and the
// command-line args parsed by a flag set from RegisterFlags.
func load(t tb, dir, yaml string, env, args []string) (*Config, error) {
	t.Helper()
	path := ""
	if yaml != "" {
		path = writeConfig(t, dir, yaml)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return Load(path, env, fs)
}

func mustLoad(t *testing.T, yaml string, env, args []string) *Config {
	t.Helper()
	c, err := load(t, t.TempDir(), yaml, env, args)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestPrecedence(t *testing.T) {
	listen := func(c *Config) any { return c.HTTP.Listen }
	level := func(c *Config) any { return c.Log.Level }
	tests := []struct {
		name string
		yaml string // appended to baseYAML
		env  []string
		args []string
		get  func(*Config) any
		want any
	}{
		{"file only", "http: {listen: 127.0.0.1:8001}\n", nil, nil, listen, "127.0.0.1:8001"},
		{"env over file", "http: {listen: 127.0.0.1:8001}\n",
			[]string{"GEOGATE_HTTP__LISTEN=127.0.0.1:8002"}, nil, listen, "127.0.0.1:8002"},
		{"flag over env and file", "http: {listen: 127.0.0.1:8001}\n",
			[]string{"GEOGATE_HTTP__LISTEN=127.0.0.1:8002"}, []string{"--http-listen=127.0.0.1:8003"}, listen, "127.0.0.1:8003"},
		{"flag over file, no env", "http: {listen: 127.0.0.1:8001}\n",
			nil, []string{"--http-listen", "127.0.0.1:8003"}, listen, "127.0.0.1:8003"},
		{"unrelated env and flags leave file value", "http: {listen: 127.0.0.1:8001}\n",
			[]string{"GEOGATE_LOG__LEVEL=warn", "HOME=/root", "GEOGATEX=1"}, []string{"--hub=eu-west"}, listen, "127.0.0.1:8001"},
		{"foreign GEOGATE_ variables are not keys", "http: {listen: 127.0.0.1:8001}\n",
			[]string{"GEOGATE_URL=http://127.0.0.1:7101", "GEOGATE_TEST_LOG=1", "GEOGATE_BENCH=1", "GEOGATE_STORE_CRASH_CHILD=x",
				"GEOGATE_TOKEN=t", "GEOGATE_CA=/ca.pem", "GEOGATE_TESTBED_LONG=1"},
			nil, listen, "127.0.0.1:8001"},
		{"no layer sets it: derived default", "", nil, nil, listen, "127.0.0.1:7101"},
		{"single underscore stays", "data_dir: /file\n", []string{"GEOGATE_DATA_DIR=/env"}, nil,
			func(c *Config) any { return c.DataDir }, "/env"},
		{"data-dir flag", "data_dir: /file\n", []string{"GEOGATE_DATA_DIR=/env"}, []string{"--data-dir=/flag"},
			func(c *Config) any { return c.DataDir }, "/flag"},
		{"log level file", "log: {level: debug}\n", nil, nil, level, "debug"},
		{"log level unset flag default does not clobber file", "log: {level: debug}\n", nil, []string{"--region=us-east"}, level, "debug"},
		{"log level env", "log: {level: debug}\n", []string{"GEOGATE_LOG__LEVEL=warn"}, nil, level, "warn"},
		{"log level env, single underscore", "log: {level: debug}\n", []string{"GEOGATE_LOG_LEVEL=warn"}, nil, level, "warn"},
		{"listen env, single underscore", "http: {listen: 127.0.0.1:8001}\n",
			[]string{"GEOGATE_HTTP_LISTEN=127.0.0.1:8002"}, nil, listen, "127.0.0.1:8002"},
		{"single underscores for some dots", "", []string{"GEOGATE_HTTP_TLS__CERT_FILE=/c.pem", "GEOGATE_HTTP__TLS_KEY_FILE=/k.pem"}, nil,
			func(c *Config) any { return c.HTTP.TLS.CertFile + " " + c.HTTP.TLS.KeyFile }, "/c.pem /k.pem"},
		{"single underscores, key with underscores", "", []string{"GEOGATE_REPLICATION_MAX_CLOCK_SKEW=7s"}, nil,
			func(c *Config) any { return c.Replication.MaxClockSkew }, 7 * time.Second},
		{"log level flag", "log: {level: debug}\n", []string{"GEOGATE_LOG__LEVEL=warn"}, []string{"--log-level=error"}, level, "error"},
		{"--set after named flags", "", nil, []string{"--log-level=error", "--set", "log.level=debug"}, level, "debug"},
		{"embedded false in file survives unset flag default true", "nats: {embedded: false}\n", nil, nil,
			func(c *Config) any { return c.NATS.Embedded }, false},
		{"embedded env over file", "nats: {embedded: false}\n", []string{"GEOGATE_NATS__EMBEDDED=true"}, nil,
			func(c *Config) any { return c.NATS.Embedded }, true},
		{"embedded flag over env", "", []string{"GEOGATE_NATS__EMBEDDED=true"}, []string{"--nats-embedded=false"},
			func(c *Config) any { return c.NATS.Embedded }, false},
		{"topology file survives unset flag default", "topology: {kind: circular}\n", nil, nil,
			func(c *Config) any { return c.Topology.Kind }, TopologyCircular},
		{"topology and hub flags", "topology: {kind: circular}\n", nil, []string{"--topology=star", "--hub=ap-south"},
			func(c *Config) any { return c.Topology.Kind + "/" + c.Topology.Hub }, "star/ap-south"},
		{"batch file < env < --set", "replication: {batch: 64}\n", []string{"GEOGATE_REPLICATION__BATCH=128"},
			[]string{"--set", "replication.batch=512"}, func(c *Config) any { return c.Replication.Batch }, 512},
		{"batch env", "replication: {batch: 64}\n", []string{"GEOGATE_REPLICATION__BATCH=128"}, nil,
			func(c *Config) any { return c.Replication.Batch }, 128},
		{"region from env drives derived defaults", "", []string{"GEOGATE_REGION=eu-west"}, nil,
			func(c *Config) any { return c.Region + " " + c.HTTP.Listen + " " + c.NATS.Listen + " " + c.DataDir },
			"eu-west 127.0.0.1:7102 127.0.0.1:7202 ./data/eu-west"},
		{"region flag over env", "", []string{"GEOGATE_REGION=eu-west"}, []string{"--region=ap-south"},
			func(c *Config) any { return c.Region + " " + c.HTTP.Listen }, "ap-south 127.0.0.1:7103"},
		{"list from env, flow form", "", []string{"GEOGATE_TOPOLOGY__ORDER=[ap-south, us-east, eu-west]"}, nil,
			func(c *Config) any { return c.Topology.Order }, []string{"ap-south", "us-east", "eu-west"}},
		{"list from --set, comma form", "topology: {order: [us-east, eu-west, ap-south]}\n", nil,
			[]string{"--set=topology.order=eu-west, ap-south,us-east"},
			func(c *Config) any { return c.Topology.Order }, []string{"eu-west", "ap-south", "us-east"}},
		{"size from env", "", []string{"GEOGATE_HTTP__MAX_VALUE_BYTES=2MiB"}, nil,
			func(c *Config) any { return c.HTTP.MaxValueBytes }, ByteSize(2 << 20)},
		{"duration from flag", "replication: {heartbeat: 2s}\n", nil, []string{"--set", "replication.heartbeat=250ms"},
			func(c *Config) any { return c.Replication.Heartbeat }, 250 * time.Millisecond},
		{"region endpoint from env merges into file map", "", []string{"GEOGATE_REGIONS__EU-WEST__HTTP=https://eu.example.test"}, nil,
			func(c *Config) any { return c.Regions["eu-west"] },
			Endpoints{HTTP: "https://eu.example.test", NATS: "nats://127.0.0.1:7202"}},
		{"rules from env as YAML flow", "", []string{`GEOGATE_RULES=[{name: carts, match: 'key startsWith "cart/"', strategy: siblings}]`}, nil,
			func(c *Config) any { return c.Rules },
			[]rules.Spec{{Name: "carts", Match: `key startsWith "cart/"`, Strategy: "siblings"}}},
		{"replicas with an external cluster", "nats: {url: \"nats://n1:4222,nats://n2:4222,nats://n3:4222\", replicas: 3}\n", nil, nil,
			func(c *Config) any { return c.NATS.Replicas }, 3},
		{"replicas from env", "nats: {url: nats://n1:4222}\n", []string{"GEOGATE_NATS__REPLICAS=5"}, nil,
			func(c *Config) any { return c.NATS.Replicas }, 5},
		{"replicas 1 from env with the embedded server", "", []string{"GEOGATE_NATS__REPLICAS=1"}, nil,
			func(c *Config) any { return c.NATS.Replicas }, 1},
		{"ack wait file", "replication: {ack_wait: 30s}\n", nil, nil,
			func(c *Config) any { return c.Replication.AckWait }, 30 * time.Second},
		{"ack wait env over file", "replication: {ack_wait: 30s}\n", []string{"GEOGATE_REPLICATION__ACK_WAIT=1m"}, nil,
			func(c *Config) any { return c.Replication.AckWait }, time.Minute},
		{"ack wait --set over env", "", []string{"GEOGATE_REPLICATION__ACK_WAIT=1m"}, []string{"--set", "replication.ack_wait=1s"},
			func(c *Config) any { return c.Replication.AckWait }, time.Second},
		{"null value keeps default", "http:\nreplication: {batch: }\n", nil, nil,
			func(c *Config) any { return fmt.Sprint(c.HTTP.MaxValueBytes, c.Replication.Batch) }, "1MiB 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, baseYAML+tt.yaml, tt.env, tt.args)
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// TestPrecedenceProperty checks the layering law on random combinations: a
// key's value is the one from the highest layer that sets it (file < env <
// flag), else its default.
func TestPrecedenceProperty(t *testing.T) {
	dir := t.TempDir()
	levels := []string{"debug", "info", "warn", "error"}
	rapid.Check(t, func(rt *rapid.T) {
		type layered struct {
			key, envName, flag string
			def                string
			values             func() *rapid.Generator[string]
			get                func(*Config) string
		}
		keys := []layered{
			{"log.level", "GEOGATE_LOG__LEVEL", "--log-level", "info",
				func() *rapid.Generator[string] { return rapid.SampledFrom(levels) },
				func(c *Config) string { return c.Log.Level }},
			{"http.listen", "GEOGATE_HTTP__LISTEN", "--http-listen", "127.0.0.1:7101",
				func() *rapid.Generator[string] {
					return rapid.Map(rapid.IntRange(1, 65535), func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) })
				},
				func(c *Config) string { return c.HTTP.Listen }},
			{"replication.batch", "GEOGATE_REPLICATION__BATCH", "--set=replication.batch", "256",
				func() *rapid.Generator[string] {
					return rapid.Map(rapid.IntRange(1, MaxBatch), func(n int) string { return fmt.Sprint(n) })
				},
				func(c *Config) string { return fmt.Sprint(c.Replication.Batch) }},
		}
		yaml := baseYAML
		var env, args []string
		var want []string
		for _, k := range keys {
			w := k.def
			if rapid.Bool().Draw(rt, k.key+" in file") {
				v := k.values().Draw(rt, k.key+" file value")
				parent, leaf, _ := strings.Cut(k.key, ".")
				yaml += fmt.Sprintf("%s: {%s: %q}\n", parent, leaf, v)
				w = v
			}
			if rapid.Bool().Draw(rt, k.key+" in env") {
				v := k.values().Draw(rt, k.key+" env value")
				env = append(env, k.envName+"="+v)
				w = v
			}
			if rapid.Bool().Draw(rt, k.key+" in flags") {
				v := k.values().Draw(rt, k.key+" flag value")
				args = append(args, k.flag+"="+v)
				w = v
			}
			want = append(want, w)
		}
		c, err := load(rt, dir, yaml, env, args)
		if err != nil {
			rt.Fatalf("Load: %v", err)
		}
		for i, k := range keys {
			if got := k.get(c); got != want[i] {
				rt.Fatalf("%s = %q, want %q (yaml %q env %q args %q)", k.key, got, want[i], yaml, env, args)
			}
		}
	})
}

func TestDefaults(t *testing.T) {
	c := mustLoad(t, baseYAML, nil, nil)
	want := &Config{
		Region:    "us-east",
		Node:      "us-east",
		Election:  Election{LeaseTTL: 3 * time.Second},
		RegionLog: RegionLog{MaxAge: 24 * time.Hour, MaxBytes: 1 << 30, AppendTimeout: 10 * time.Second},
		Regions: map[string]Endpoints{
			"us-east":  {HTTP: "http://127.0.0.1:7101", NATS: "nats://127.0.0.1:7201"},
			"eu-west":  {HTTP: "http://127.0.0.1:7102", NATS: "nats://127.0.0.1:7202"},
			"ap-south": {HTTP: "http://127.0.0.1:7103", NATS: "nats://127.0.0.1:7203"},
		},
		Topology: Topology{Kind: TopologyAllToAll},
		DataDir:  "./data/us-east",
		HTTP: HTTP{Listen: "127.0.0.1:7101", MaxValueBytes: 1 << 20,
			ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second},
		NATS:       NATS{Embedded: true, Listen: "127.0.0.1:7201", StoreDir: filepath.Join("data", "us-east", "nats"), Sync: "1s", Replicas: 1},
		Durability: Durability{Sync: true},
		Replication: Replication{MaxClockSkew: 5 * time.Second, Heartbeat: time.Second,
			StreamMaxAge: 168 * time.Hour, StreamMaxBytes: 1 << 30, Batch: 256, AckWait: 5 * time.Second, LogMode: LogModeOutbox,
			ReseedAfter: 30 * time.Second},
		Conflicts:   Conflicts{Retention: 100000, MaxAge: 168 * time.Hour},
		Sessions:    Sessions{DefaultWait: 2 * time.Second, MaxWait: 30 * time.Second},
		Watch:       Watch{Retention: 1000000, Heartbeat: 5 * time.Second, MaxLag: 10000, WriteTimeout: 30 * time.Second},
		Log:         Log{Level: "info", Format: "text"},
		Storage:     Storage{MinFreeBytes: 512 << 20},
		Tombstones:  Tombstones{Grace: 24 * time.Hour, Interval: time.Hour},
		AntiEntropy: AntiEntropy{Interval: time.Minute, ScrubInterval: 24 * time.Hour},
		Rules:       []rules.Spec{{Name: "default", Match: "true", Strategy: "lww"}},
		fileOrder:   []string{"us-east", "eu-west", "ap-south"},
	}
	c.checked = nil // the cache of rules.Check, not a setting
	if c.File() == "" {
		t.Error("File() is empty for a config loaded from a file")
	}
	c.file = "" // where it came from, not a setting
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if c.NATS.SyncInterval() != time.Second {
		t.Errorf("default SyncInterval = %v, want 1s", c.NATS.SyncInterval())
	}

	// Default() + region + regions + Complete is what Load gives.
	d := Default()
	d.Region, d.Regions, d.fileOrder = c.Region, c.Regions, c.fileOrder
	d.Complete()
	d.checked = nil
	if !reflect.DeepEqual(d, c) {
		t.Errorf("Default()+Complete differs from Load:\n got %+v\nwant %+v", d, c)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Validate(Default()+Complete): %v", err)
	}
	d.checked = nil
	d.Complete() // idempotent
	if !reflect.DeepEqual(d, c) {
		t.Errorf("second Complete changed the config: %+v", d)
	}
}

func TestDerivedDefaults(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		args []string
		want func(*Config) string
		is   string
	}{
		{"default ports by scheme", `region: x
regions: {x: {http: "https://x.example.test", nats: "tls://x.example.test"}}
`, nil, nil, func(c *Config) string { return c.HTTP.Listen + " " + c.NATS.Listen }, "x.example.test:443 x.example.test:4222"},
		{"ipv6 host", `region: x
regions: {x: {http: "http://[::1]:7100", nats: "nats://[::1]:7200"}}
`, nil, nil, func(c *Config) string { return c.HTTP.Listen + " " + c.NATS.Listen }, "[::1]:7100 [::1]:7200"},
		{"store dir follows data dir", baseYAML + "data_dir: /srv/geo\n", nil, nil,
			func(c *Config) string { return c.NATS.StoreDir }, "/srv/geo/nats"},
		{"url alone means external NATS", baseYAML + "nats: {url: nats://nats.internal:4222}\n", nil, nil,
			func(c *Config) string { return fmt.Sprint(c.NATS.Embedded, " ", c.NATS.URL, " ", c.NATS.Listen == "") },
			"false nats://nats.internal:4222 true"},
		{"url from flag means external NATS", baseYAML, nil, []string{"--nats-url=tls://a:4222,tls://b:4222"},
			func(c *Config) string { return fmt.Sprint(c.NATS.Embedded, " ", c.NATS.URL) }, "false tls://a:4222,tls://b:4222"},
		{"embedded false defaults url to own nats entry", baseYAML + "nats: {embedded: false}\n", nil, nil,
			func(c *Config) string {
				return fmt.Sprint(c.NATS.Embedded, " ", c.NATS.URL, " ", c.NATS.StoreDir == "")
			},
			"false nats://127.0.0.1:7201 true"},
		{"env and flags only, no file", "",
			[]string{"GEOGATE_REGION=b", "GEOGATE_REGIONS__B__HTTP=http://127.0.0.1:9002", "GEOGATE_REGIONS__B__NATS=nats://127.0.0.1:9102",
				"GEOGATE_REGIONS__A__HTTP=http://127.0.0.1:9001", "GEOGATE_REGIONS__A__NATS=nats://127.0.0.1:9101"},
			[]string{"--data-dir=/tmp/b"},
			func(c *Config) string { return fmt.Sprint(c.Order(), c.HTTP.Listen, " ", c.NATS.StoreDir) }, "[a b]127.0.0.1:9002 /tmp/b/nats"},
		{"sync interval", baseYAML + "nats: {sync: 250ms}\n", nil, nil,
			func(c *Config) string { return c.NATS.SyncInterval().String() }, "250ms"},
		{"explicit empty rules get the default", baseYAML + "rules: []\n", nil, nil,
			func(c *Config) string { return fmt.Sprint(c.Rules) }, fmt.Sprint(DefaultRules())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.yaml, tt.env, tt.args)
			if got := tt.want(c); got != tt.is {
				t.Errorf("got %q, want %q", got, tt.is)
			}
		})
	}
}

func TestConfigFileSources(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, baseYAML+"log: {level: warn}\n")
	c, err := Load("", []string{EnvConfigFile + "=" + path}, nil)
	if err != nil || c.Log.Level != "warn" || c.File() != path {
		t.Fatalf("GEOGATE_CONFIG: %v, %+v", err, c)
	}
	other := writeConfig(t, dir, baseYAML+"log: {level: error}\n")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--config", other}); err != nil {
		t.Fatal(err)
	}
	c, err = Load("", []string{EnvConfigFile + "=" + path}, fs)
	if err != nil || c.Log.Level != "error" || c.File() != other {
		t.Fatalf("--config over GEOGATE_CONFIG: %v, %+v", err, c)
	}
	c, err = Load(path, nil, fs)
	if err != nil || c.Log.Level != "warn" || c.File() != path {
		t.Fatalf("path argument over --config: %v, %+v", err, c)
	}
	if c, err := Load("", []string{"GEOGATE_REGION=us-east", "GEOGATE_REGIONS={us-east: {http: 'http://127.0.0.1:1', nats: 'nats://127.0.0.1:2'}}"}, nil); err != nil || c.File() != "" {
		t.Fatalf("no file: %v, file %q", err, c.File())
	}
}

func TestOrder(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		env   []string
		order []string
		peers []string
	}{
		{"file order, not sorted", baseYAML, nil,
			[]string{"us-east", "eu-west", "ap-south"}, []string{"eu-west", "ap-south"}},
		{"file order with a different layout", `region: c
regions:
  c:
    http: "http://127.0.0.1:1"
    nats: "nats://127.0.0.1:2"
  a: {http: "http://127.0.0.1:3", nats: "nats://127.0.0.1:4"}
  b: {http: "http://127.0.0.1:5", nats: "nats://127.0.0.1:6"}
`, nil, []string{"c", "a", "b"}, []string{"a", "b"}},
		{"regions added by env follow the file's, sorted", baseYAML,
			[]string{"GEOGATE_REGIONS__ZZ__HTTP=http://127.0.0.1:7109", "GEOGATE_REGIONS__ZZ__NATS=nats://127.0.0.1:7209",
				"GEOGATE_REGIONS__AA__HTTP=http://127.0.0.1:7108", "GEOGATE_REGIONS__AA__NATS=nats://127.0.0.1:7208"},
			[]string{"us-east", "eu-west", "ap-south", "aa", "zz"}, []string{"eu-west", "ap-south", "aa", "zz"}},
		{"topology.order wins", baseYAML + "topology: {kind: circular, order: [ap-south, us-east, eu-west]}\n", nil,
			[]string{"ap-south", "us-east", "eu-west"}, []string{"ap-south", "eu-west"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.yaml, tt.env, nil)
			if got := c.Order(); !slices.Equal(got, tt.order) {
				t.Errorf("Order() = %v, want %v", got, tt.order)
			}
			if got := c.Peers(); !slices.Equal(got, tt.peers) {
				t.Errorf("Peers() = %v, want %v", got, tt.peers)
			}
			o := c.Order()
			o[0] = "mutated"
			if c.Order()[0] == "mutated" {
				t.Error("Order() shares its slice with the config")
			}
		})
	}
	code := &Config{Regions: map[string]Endpoints{"b": {}, "c": {}, "a": {}}}
	if got := code.Order(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Order() of a Config built in code = %v, want name order", got)
	}
	// SetRegionOrder orders a Config built in code as a file would: the
	// names it gives first (unknown ones skipped), then the rest by name.
	code.Regions["d"] = Endpoints{}
	order := []string{"c", "x", "a"}
	code.SetRegionOrder(order)
	order[0] = "mutated"
	if got := code.Order(); !slices.Equal(got, []string{"c", "a", "b", "d"}) {
		t.Errorf("Order() after SetRegionOrder([c x a]) = %v, want [c a b d]", got)
	}
}

func TestLoadDoesNotTouchData(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, yaml := range []string{
		baseYAML + "data_dir: " + data + "\n",
		baseYAML + "data_dir: " + data + "\nhtp: {listen: x}\n",
	} {
		_, _ = load(t, dir, yaml, nil, nil)
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Load created or touched %s: %v", data, err)
		}
	}
}

func TestLogger(t *testing.T) {
	var b strings.Builder
	l := Log{Level: "warn", Format: "json"}.NewLogger(&b)
	l.Info("hidden")
	l.Warn("shown")
	if out := b.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown"`) {
		t.Errorf("logger output %q", out)
	}
}

func TestStreamModeWithSyncAlways(t *testing.T) {
	c := mustLoad(t, baseYAML+"replication: {log_mode: stream}\nnats: {sync: always}\n", nil, nil)
	if c.Replication.LogMode != LogModeStream || c.NATS.SyncInterval() != 0 {
		t.Fatalf("log_mode %q, sync interval %v", c.Replication.LogMode, c.NATS.SyncInterval())
	}
}

// TestEnvKey checks how an environment variable's name maps to a key when
// single underscores stand for dots: only when exactly one key fits, and
// a name that fits several is refused with the spelling of each.
func TestEnvKey(t *testing.T) {
	paths := map[string]reflect.Kind{
		"a": reflect.Struct, "a.b_c": reflect.String, "a_b": reflect.Struct, "a_b.c": reflect.String,
		"a.d": reflect.String, "m": reflect.Map, "x_y": reflect.String,
	}
	for rest, want := range map[string]string{
		"a__b_c":    "a.b_c",   // written with "__": as written
		"a_b__c":    "a_b.c",   // likewise
		"a_d":       "a.d",     // one key fits
		"x_y":       "x_y",     // a key with an underscore
		"m__k_1__z": "m.k_1.z", // entries of a map are as written
		"a__zz":     "a.zz",    // unknown below a section: reported later
		"other":     "other",   // not configuration: dropped later
	} {
		got, err := envKey(rest, paths)
		if err != nil || got != want {
			t.Errorf("envKey(%q) = %q, %v; want %q", rest, got, err, want)
		}
	}
	_, err := envKey("a_b_c", paths)
	if err == nil || !strings.Contains(err.Error(), "GEOGATE_A__B_C (a.b_c)") || !strings.Contains(err.Error(), "GEOGATE_A_B__C (a_b.c)") {
		t.Fatalf("envKey(a_b_c) = %v; want an error naming both spellings", err)
	}
	// The real schema has no name two keys fit.
	seen := map[string]string{}
	for p := range envKeyPaths {
		flat := strings.ReplaceAll(p, ".", "_")
		if q, dup := seen[flat]; dup {
			t.Errorf("keys %s and %s are both GEOGATE_%s", p, q, strings.ToUpper(flat))
		}
		seen[flat] = p
	}
}

// TestNodesDerive checks what a node of a region of several derives from
// its entry in nodes: listeners, data directory, replicas.
func TestNodesDerive(t *testing.T) {
	c := mustLoad(t, baseYAML+threeNodes+"node: us-east-2\n", nil, nil)
	if !c.Clustered() || c.Node != "us-east-2" {
		t.Fatalf("clustered %v node %q", c.Clustered(), c.Node)
	}
	if c.HTTP.Listen != "127.0.0.1:7311" || c.NATS.Listen != "127.0.0.1:7312" || c.NATS.ClusterListen != "127.0.0.1:7313" {
		t.Errorf("listeners http %q nats %q cluster %q", c.HTTP.Listen, c.NATS.Listen, c.NATS.ClusterListen)
	}
	if c.DataDir != "./data/us-east-2" || c.NATS.Replicas != 3 {
		t.Errorf("data dir %q replicas %d", c.DataDir, c.NATS.Replicas)
	}
	if got := c.NodeNames(); !slices.Equal(got, []string{"us-east-1", "us-east-2", "us-east-3"}) {
		t.Errorf("node names %v", got)
	}
	one := mustLoad(t, baseYAML, nil, nil)
	if one.Clustered() || one.Node != "us-east" || !slices.Equal(one.NodeNames(), []string{"us-east"}) || one.NATS.ClusterListen != "" {
		t.Errorf("one node: clustered %v node %q names %v cluster %q", one.Clustered(), one.Node, one.NodeNames(), one.NATS.ClusterListen)
	}
	// An explicit replica count below the nodes is kept.
	two := mustLoad(t, baseYAML+threeNodes+"node: us-east-1\nnats: {replicas: 2}\n", nil, nil)
	if two.NATS.Replicas != 2 {
		t.Errorf("replicas %d, want 2", two.NATS.Replicas)
	}
}
