package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// problems flattens a Load error into its *FieldError keys and
// *UnknownKeyError keys.
func problems(err error) (fields, unknown []string) {
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *FieldError
		var ue *UnknownKeyError
		switch {
		case errors.As(e, &fe):
			fields = append(fields, fe.Key)
		case errors.As(e, &ue):
			unknown = append(unknown, ue.Key)
		}
	}
	walk(err)
	return fields, unknown
}

// withRegion returns baseYAML with the line of region name replaced by
// line (or line added when the region is not there).
func withRegion(name, line string) string {
	for _, l := range strings.Split(baseYAML, "\n") {
		if strings.HasPrefix(l, "  "+name+":") {
			return strings.Replace(baseYAML, l, "  "+line, 1)
		}
	}
	return strings.Replace(baseYAML, "regions:\n", "regions:\n  "+line+"\n", 1)
}

// threeNodes lists three nodes of us-east (without node:).
const threeNodes = `nodes:
  us-east-1: {http: http://127.0.0.1:7301, nats: nats://127.0.0.1:7302, cluster: nats://127.0.0.1:7303}
  us-east-2: {http: http://127.0.0.1:7311, nats: nats://127.0.0.1:7312, cluster: nats://127.0.0.1:7313}
  us-east-3: {http: http://127.0.0.1:7321, nats: nats://127.0.0.1:7322, cluster: nats://127.0.0.1:7323}
`

func TestErrors(t *testing.T) {
	const rule = "rules:\n  - {name: r, match: 'true', strategy: lww}\n"
	tests := []struct {
		name    string
		yaml    string // "" means no file; baseYAML is NOT prepended
		env     []string
		args    []string
		field   string   // a *FieldError key that must be reported
		unknown string   // an *UnknownKeyError key that must be reported
		text    string   // a substring the message must contain
		not     []string // keys that must not be reported (follow-on noise)
	}{
		// unknown keys, at every level and from every source
		{name: "unknown top-level key", yaml: baseYAML + "htp:\n  listen: 127.0.0.1:1\n",
			unknown: "htp.listen", text: `unknown key "htp.listen" in `},
		{name: "unknown key names file and line", yaml: baseYAML + "\nhtp:\n  listen: 127.0.0.1:1\n",
			unknown: "htp.listen", text: `.yaml:8 (did you mean "http.listen"?)`},
		{name: "unknown nested key", yaml: baseYAML + "http: {lisen: 127.0.0.1:1}\n",
			unknown: "http.lisen", text: `(did you mean "http.listen"?)`},
		{name: "unknown key in a region", yaml: withRegion("eu-west", `eu-west: {http: "http://127.0.0.1:7102", nats: "nats://127.0.0.1:7202", htp: x}`),
			unknown: "regions.eu-west.htp"},
		{name: "unknown key inside a rule", yaml: baseYAML + "rules:\n  - name: r\n    match: 'true'\n    stratgy: lww\n",
			unknown: "rules[0].stratgy", text: `did you mean "rules[0].strategy"?`},
		{name: "unknown key from env", yaml: baseYAML, env: []string{"GEOGATE_HTP__LISTEN=x"},
			unknown: "htp.listen", text: "in environment GEOGATE_HTP__LISTEN"},
		{name: "misspelt top-level key from env", yaml: baseYAML, env: []string{"GEOGATE_REGOIN=eu-west"},
			unknown: "regoin", text: `in environment GEOGATE_REGOIN (did you mean "region"?)`},
		{name: "misspelt key from env, single underscores", yaml: baseYAML, env: []string{"GEOGATE_LOG_LEVL=debug"},
			unknown: "log_levl", text: `in environment GEOGATE_LOG_LEVL (did you mean "log.level"?)`},
		{name: "unknown key below a section from env, single underscores", yaml: baseYAML, env: []string{"GEOGATE_HTTP_PORT=1"},
			unknown: "http_port", text: `in environment GEOGATE_HTTP_PORT`},
		{name: "unknown key from --set", yaml: baseYAML, args: []string{"--set", "nats.urll=nats://x:1"},
			unknown: "nats.urll", text: `in flag --set nats.urll=nats://x:1 (did you mean "nats.url"?)`},
		{name: "keys are case-sensitive", yaml: baseYAML + "Log: {level: info}\n", unknown: "Log.level"},

		// region and regions
		{name: "missing region", yaml: strings.Replace(baseYAML, "region: us-east\n", "", 1),
			field: "region", text: "config: region: required: this region's name, one of the regions (us-east, eu-west, ap-south)"},
		{name: "region not in regions", yaml: strings.Replace(baseYAML, "region: us-east", "region: eu-central", 1),
			field: "region", text: `config: region: "eu-central" is not one of the regions (us-east, eu-west, ap-south)`},
		{name: "bad region name", yaml: strings.Replace(baseYAML, "region: us-east", "region: US_East", 1),
			field: "region", text: `region name "US_East" must be 1..64 characters of [a-z0-9-]`, not: []string{"data_dir", "http.listen"}},
		{name: "bad region name from flag", yaml: baseYAML, args: []string{"--region", "us east"}, field: "region"},
		{name: "bad name in regions", yaml: withRegion("Bad_Name", `Bad_Name: {http: "http://h:1", nats: "nats://h:2"}`),
			field: "regions.Bad_Name"},
		{name: "no regions", yaml: "region: us-east\n", field: "regions"},
		{name: "nothing at all", yaml: "", field: "region"},
		{name: "http URL scheme", yaml: withRegion("eu-west", `eu-west: {http: "ftp://127.0.0.1:7102", nats: "nats://127.0.0.1:7202"}`),
			field: "regions.eu-west.http", text: "scheme must be http or https"},
		{name: "http URL without scheme", yaml: withRegion("eu-west", `eu-west: {http: "127.0.0.1:7102", nats: "nats://127.0.0.1:7202"}`),
			field: "regions.eu-west.http"},
		{name: "http URL without host", yaml: withRegion("eu-west", `eu-west: {http: "http:///x", nats: "nats://127.0.0.1:7202"}`),
			field: "regions.eu-west.http", text: "has no host"},
		{name: "nats URL scheme", yaml: withRegion("eu-west", `eu-west: {http: "http://127.0.0.1:7102", nats: "http://127.0.0.1:7202"}`),
			field: "regions.eu-west.nats", text: "nats or tls"},
		{name: "nats URL port out of range", yaml: withRegion("eu-west", `eu-west: {http: "http://127.0.0.1:7102", nats: "nats://127.0.0.1:99999"}`),
			field: "regions.eu-west.nats"},
		{name: "nats URL missing", yaml: withRegion("zz", `zz: {http: "http://127.0.0.1:7109"}`),
			field: "regions.zz.nats", text: "required"},
		{name: "duplicate addresses", yaml: withRegion("eu-west", `eu-west: {http: "http://127.0.0.1:7101", nats: "nats://127.0.0.1:7202"}`),
			field: "regions.eu-west.http", text: "is also regions.us-east.http"},
		{name: "region endpoint not a mapping", yaml: withRegion("eu-west", `eu-west: nope`), field: "regions.eu-west"},

		// topology
		{name: "bad topology kind", yaml: baseYAML + "topology: {kind: mesh}\n", field: "topology.kind"},
		{name: "star without hub", yaml: baseYAML + "topology: {kind: star}\n", field: "topology.hub", text: "required for a star topology: the hub region, one of (us-east, eu-west, ap-south)"},
		{name: "star without hub from flag", yaml: baseYAML, args: []string{"--topology=star"}, field: "topology.hub"},
		{name: "hub not in regions", yaml: baseYAML + "topology: {kind: star, hub: eu-central}\n",
			field: "topology.hub", text: `config: topology.hub: "eu-central" is not one of the regions (us-east, eu-west, ap-south)`},
		{name: "order misses a region", yaml: baseYAML + "topology: {kind: circular, order: [us-east, eu-west]}\n",
			field: "topology.order", text: `region "ap-south" is missing (the order must list every region once)`},
		{name: "order repeats a region", yaml: baseYAML + "topology: {order: [us-east, eu-west, ap-south, us-east]}\n",
			field: "topology.order", text: `region "us-east" is listed twice`, not: []string{"regions.us-east.http", "regions.us-east.nats"}},
		{name: "order names an unknown region", yaml: baseYAML + "topology: {order: [us-east, eu-west, mars]}\n",
			field: "topology.order", text: `"mars" is not one of the regions`, not: []string{"regions.mars.http", "regions.mars.nats"}},

		// types and durations
		{name: "duration with a bad unit", yaml: baseYAML + "replication: {heartbeat: 5 parsecs}\n",
			field: "replication.heartbeat", text: "is not a duration"},
		{name: "duration without a unit", yaml: baseYAML + "replication: {max_clock_skew: 5}\n",
			field: "replication.max_clock_skew", text: "has no unit"},
		{name: "negative duration", yaml: baseYAML + "conflicts: {max_age: -1h}\n", field: "conflicts.max_age", text: "must be positive"},
		{name: "zero duration", yaml: baseYAML + "replication: {heartbeat: 0s}\n", field: "replication.heartbeat"},
		{name: "bad duration from env", yaml: baseYAML, env: []string{"GEOGATE_SESSIONS__MAX_WAIT=soon"}, field: "sessions.max_wait"},
		{name: "default wait above max", yaml: baseYAML + "sessions: {default_wait: 10s, max_wait: 5s}\n", field: "sessions.default_wait"},
		{name: "write timeout within max wait", yaml: baseYAML + "http: {write_timeout: 10s}\n",
			field: "http.write_timeout", text: "longer than sessions.max_wait"},
		{name: "bad size", yaml: baseYAML + "http: {max_value_bytes: lots}\n", field: "http.max_value_bytes", text: "not a size"},
		{name: "size too large", yaml: baseYAML + "http: {max_value_bytes: 1GiB}\n", field: "http.max_value_bytes", text: "out of range"},
		{name: "zero stream bytes", yaml: baseYAML + "replication: {stream_max_bytes: 0}\n", field: "replication.stream_max_bytes"},
		{name: "bad bool", yaml: baseYAML + "nats: {embedded: maybe}\n", field: "nats.embedded", text: `"maybe" is not true or false`},
		{name: "bad int", yaml: baseYAML, env: []string{"GEOGATE_REPLICATION__BATCH=many"}, field: "replication.batch"},
		{name: "batch out of range", yaml: baseYAML + "replication: {batch: 0}\n", field: "replication.batch"},
		{name: "bad log mode", yaml: baseYAML + "replication: {log_mode: lazy}\n", field: "replication.log_mode"},
		{name: "stream mode without synced nats", yaml: baseYAML + "replication: {log_mode: stream}\n", field: "replication.log_mode"},
		{name: "negative max hold", yaml: baseYAML + "replication: {max_hold: -1s}\n", field: "replication.max_hold"},
		{name: "retention not positive", yaml: baseYAML + "conflicts: {retention: 0}\n", field: "conflicts.retention"},
		{name: "watch retention not positive", yaml: baseYAML + "watch: {retention: 0}\n", field: "watch.retention"},
		{name: "watch max lag not positive", yaml: baseYAML + "watch: {max_lag: -1}\n", field: "watch.max_lag"},
		{name: "watch heartbeat not positive", yaml: baseYAML + "watch: {heartbeat: 0s}\n", field: "watch.heartbeat"},
		{name: "section not a mapping", yaml: baseYAML + "log: loud\n", field: "log", text: "must be a mapping"},
		{name: "list where a string belongs", yaml: baseYAML + "data_dir: [a, b]\n", field: "data_dir", text: "must be a string, not a list"},

		// listeners and NATS
		{name: "bad http listen", yaml: baseYAML + "http: {listen: nope}\n", field: "http.listen", text: "not host:port"},
		{name: "bad nats listen port", yaml: baseYAML, args: []string{"--nats-listen=127.0.0.1:70000"}, field: "nats.listen"},
		{name: "embedded and url", yaml: baseYAML + "nats: {embedded: true, url: nats://10.0.0.1:4222}\n",
			field: "nats.embedded", text: "conflicts with nats.url"},
		{name: "embedded and url from flags", yaml: baseYAML, args: []string{"--nats-embedded", "--nats-url=nats://x:4222"},
			field: "nats.embedded"},
		{name: "bad external url", yaml: baseYAML + "nats: {url: \"nats://a:4222,http://b:4222\"}\n", field: "nats.url"},
		{name: "replicas zero", yaml: baseYAML + "nats: {url: nats://n1:4222, replicas: 0}\n",
			field: "nats.replicas", text: "config: nats.replicas: 0 is out of range: must be 1 to 5"},
		{name: "replicas above JetStream's limit", yaml: baseYAML + "nats: {url: nats://n1:4222, replicas: 6}\n",
			field: "nats.replicas", text: "6 is out of range: must be 1 to 5"},
		{name: "replicas with the embedded server", yaml: baseYAML + "nats: {replicas: 3}\n",
			field: "nats.replicas", text: "3 needs a clustered JetStream, and the embedded server of a region of one node is a single server"},
		{name: "replicas from env with the embedded server", yaml: baseYAML, env: []string{"GEOGATE_NATS__REPLICAS=3"},
			field: "nats.replicas", text: "use 1, list the region's nodes (nodes), or set nats.url for an external cluster"},
		// nodes of a region
		{name: "node not among the nodes", yaml: baseYAML + threeNodes + "node: us-east-9\n",
			field: "node", text: `"us-east-9" is not one of this region's nodes (us-east-1, us-east-2, us-east-3)`},
		{name: "one node listed", yaml: baseYAML + "node: n1\nnodes:\n  n1: {http: http://127.0.0.1:7301, nats: nats://127.0.0.1:7302, cluster: nats://127.0.0.1:7303}\n",
			field: "nodes", text: "a region of one node needs no nodes list"},
		{name: "node without its cluster url", yaml: baseYAML + strings.Replace(threeNodes, ", cluster: nats://127.0.0.1:7313", "", 1) + "node: us-east-1\n",
			field: "nodes.us-east-2.cluster", text: "required"},
		{name: "two nodes on one port", yaml: baseYAML + strings.Replace(threeNodes, "7313", "7312", 1) + "node: us-east-1\n",
			field: "nodes.us-east-2.cluster", text: "is also nodes.us-east-2.nats"},
		{name: "bad node name", yaml: baseYAML + threeNodes + "node: us-east-1\n", args: []string{"--set", "node=East"}, field: "node"},
		{name: "replicas above the nodes", yaml: baseYAML + threeNodes + "node: us-east-1\nnats: {replicas: 5}\n",
			field: "nats.replicas", text: "5 exceeds the region's 3 nodes"},
		{name: "lease too short", yaml: baseYAML + threeNodes + "node: us-east-1\nelection: {lease_ttl: 200ms}\n",
			field: "election.lease_ttl", text: "too short: at least 1s"},
		{name: "region log max age zero", yaml: baseYAML, env: []string{"GEOGATE_REGION_LOG__MAX_AGE=0s"}, field: "region_log.max_age"},
		{name: "region nats list with a bad url", yaml: withRegion("eu-west", `eu-west: { http: "http://127.0.0.1:7102", nats: "nats://127.0.0.1:7202,http://x:1" }`),
			field: "regions.eu-west.nats"},
		{name: "replicas not a number", yaml: baseYAML, env: []string{"GEOGATE_NATS__REPLICAS=three"}, field: "nats.replicas"},
		{name: "negative replicas from --set", yaml: baseYAML + "nats: {url: nats://n1:4222}\n", args: []string{"--set", "nats.replicas=-1"},
			field: "nats.replicas", text: "out of range"},
		{name: "ack wait too short", yaml: baseYAML + "replication: {ack_wait: 500ms}\n",
			field: "replication.ack_wait", text: "config: replication.ack_wait: 500ms is too short: must be at least 1s"},
		{name: "ack wait zero", yaml: baseYAML, env: []string{"GEOGATE_REPLICATION__ACK_WAIT=0s"}, field: "replication.ack_wait"},
		{name: "ack wait without unit", yaml: baseYAML + "replication: {ack_wait: 30}\n", field: "replication.ack_wait", text: "has no unit"},
		{name: "bad nats sync", yaml: baseYAML + "nats: {sync: sometimes}\n", field: "nats.sync"},
		{name: "bad log level", yaml: baseYAML, args: []string{"--log-level=loud"}, field: "log.level"},
		{name: "bad log format", yaml: baseYAML + "log: {format: xml}\n", field: "log.format"},

		// rules
		{name: "duplicate rule names", yaml: baseYAML + "rules:\n  - {name: r, match: 'true', strategy: lww}\n  - {name: r, match: 'true', strategy: lww}\n",
			field: "rules[1].name", text: `config: rules[1].name: name "r" is already used by rule #1; names must be unique; at `},
		{name: "rule without name", yaml: baseYAML + "rules:\n  - {match: 'true', strategy: lww}\n", field: "rules[0].name"},
		{name: "rule without match", yaml: baseYAML + "rules:\n  - {name: r, strategy: lww}\n", field: "rules[0].match"},
		{name: "bad strategy", yaml: baseYAML + "rules:\n  - {name: r, match: 'true', strategy: newest}\n",
			field: "rules[0].strategy", text: `unknown strategy "newest" (want home_region, lww, siblings or custom) (rule "r")`},
		{name: "missing strategy", yaml: baseYAML + "rules:\n  - {name: r, match: 'true'}\n", field: "rules[0].strategy"},
		{name: "home_region without home", yaml: baseYAML + rule + "  - {name: h, match: 'true', strategy: home_region}\n",
			field: "rules[1].home"},
		{name: "custom without expressions", yaml: baseYAML + "rules:\n  - {name: c, match: 'true', strategy: custom}\n",
			field: "rules[0].strategy", text: "select, merge or on_read"},
		{name: "custom with select and merge", yaml: baseYAML + "rules:\n  - {name: c, match: 'true', strategy: custom, select: '1', merge: 'siblings[0]'}\n",
			field: "rules[0].merge"},
		{name: "bad fallback", yaml: baseYAML + "rules:\n  - {name: h, match: 'true', strategy: home_region, home: '\"us-east\"', fallback: retry}\n",
			field: "rules[0].fallback"},
		{name: "bad home_mode", yaml: baseYAML + "rules:\n  - {name: h, match: 'true', strategy: home_region, home: '\"us-east\"', home_mode: proxy}\n",
			field: "rules[0].home_mode"},
		{name: "fallback on lww", yaml: baseYAML + "rules:\n  - {name: l, match: 'true', strategy: lww, fallback: reject}\n",
			field: "rules[0].fallback", text: "fallback does not apply to strategy lww"},
		{name: "select on siblings", yaml: baseYAML + "rules:\n  - {name: s, match: 'true', strategy: siblings, select: '1'}\n",
			field: "rules[0].select"},
		{name: "resolver not a region", yaml: baseYAML + "rules:\n  - {name: m, match: 'true', strategy: custom, merge: 'siblings[0]', resolver: mars}\n",
			field: "rules[0].resolver", text: `"mars" is not a region (regions: us-east, eu-west, ap-south)`},
		{name: "resolver without merge", yaml: baseYAML + "rules:\n  - {name: m, match: 'true', strategy: custom, select: '1', resolver: eu-west}\n",
			field: "rules[0].resolver"},
		{name: "rules not a list of mappings", yaml: baseYAML + "rules: lww\n", field: "rules[0]"},

		// flags
		{name: "malformed --set", yaml: baseYAML, args: []string{"--set", "justakey"}, text: `config: flag --set "justakey": want key.path=value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, t.TempDir(), tt.yaml, tt.env, tt.args)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			msg := err.Error()
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, "config: ") {
					t.Errorf("error line %q does not start with \"config: \"", line)
				}
			}
			fields, unknown := problems(err)
			if tt.field != "" && !slices.Contains(fields, tt.field) {
				t.Errorf("no error for key %q; keys %q; error:\n%s", tt.field, fields, msg)
			}
			if tt.field != "" && !strings.Contains(msg, "config: "+tt.field+": ") {
				t.Errorf("message does not name key %q:\n%s", tt.field, msg)
			}
			if tt.unknown != "" && !slices.Contains(unknown, tt.unknown) {
				t.Errorf("no unknown-key error for %q; unknown %q; error:\n%s", tt.unknown, unknown, msg)
			}
			for _, k := range tt.not {
				if slices.Contains(fields, k) {
					t.Errorf("spurious error for %q:\n%s", k, msg)
				}
			}
			if tt.text != "" && !strings.Contains(msg, tt.text) {
				t.Errorf("message lacks %q:\n%s", tt.text, msg)
			}
		})
	}
}

// TestErrorsAreCollected checks that Load reports every problem at once,
// not only the first.
func TestErrorsAreCollected(t *testing.T) {
	yaml := strings.Replace(baseYAML, "region: us-east", "region: eu-central", 1) +
		"topology: {kind: star}\nlog: {level: loud}\nhtp: {listen: x}\n"
	_, err := load(t, t.TempDir(), yaml, nil, nil)
	fields, unknown := problems(err)
	for _, k := range []string{"region", "topology.hub", "log.level"} {
		if !slices.Contains(fields, k) {
			t.Errorf("missing error for %s in %v", k, err)
		}
	}
	if !slices.Equal(unknown, []string{"htp.listen"}) {
		t.Errorf("unknown keys %v, want [htp.listen]", unknown)
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	_, err := Load(missing, nil, nil)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v (want fs.ErrNotExist naming %s)", err, missing)
	}

	tests := []struct {
		name, content, text string
	}{
		{"not YAML", "region: [unclosed\n", "is not valid YAML"},
		{"tab indentation", "region: x\nhttp:\n\tlisten: y\n", "is not valid YAML"},
		{"duplicate key", "region: a\nregion: b\n", "is not valid YAML"},
		{"top level is a list", "- region: x\n", "the top level must be a mapping of keys, not a list"},
		{"top level is a scalar", "just words\n", "the top level must be a mapping of keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, dir, tt.content)
			_, err := Load(path, nil, nil)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q should name %s and say %q", err, path, tt.text)
			}
		})
	}

	t.Run("directory", func(t *testing.T) {
		_, err := Load(dir, nil, nil)
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("directory as file: %v", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads any file")
		}
		path := writeConfig(t, dir, baseYAML)
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, nil, nil); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("unreadable file: %v", err)
		}
	})
}

func TestValidateBuiltInCode(t *testing.T) {
	c := Default()
	if err := c.Validate(); err == nil {
		t.Fatal("Validate accepted a config without region and regions")
	}
	c.Region = "a"
	c.Regions = map[string]Endpoints{"a": {HTTP: "http://127.0.0.1:1", NATS: "nats://127.0.0.1:2"}}
	if err := c.Validate(); err == nil {
		t.Error("Validate accepted a config before Complete (no rules, no listen)")
	}
	c.Complete()
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after Complete: %v", err)
	}
}
