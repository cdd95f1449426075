package config

import (
	"errors"
	"fmt"
	"github.com/geogate/geogate/topology"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits Validate enforces.
const (
	// MaxRegionNameLen bounds a region name (it is part of stream and
	// consumer names): topology.MaxRegionLen.
	MaxRegionNameLen = topology.MaxRegionLen
	// MaxValueBytesLimit is the largest http.max_value_bytes: NATS's hard
	// limit on a message payload.
	MaxValueBytesLimit ByteSize = 64 << 20
	// MaxBatch is the largest replication.batch.
	MaxBatch = 10000
)

// validRegionName reports whether s is a region name (topology.ValidRegion:
// [a-z0-9-]+, at most MaxRegionNameLen bytes, not "hb").
func validRegionName(s string) bool { return topology.ValidRegion(s) }

// Validate checks every setting and returns nil, or every problem found
// joined with errors.Join, each a *FieldError "config: <key>: <reason>", in
// the order of the keys in Config. It reads nothing and changes nothing; it
// does not compile rule expressions (the rules package does), only checks
// each rule's fields and their combination. Run Complete first on a Config
// built in code: Validate does not fill defaults.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fieldErrorf(key, format, args...))
	}
	order := c.writtenOrder()
	known := "(" + strings.Join(order, ", ") + ")"
	isRegion := func(name string) bool { _, ok := c.Regions[name]; return ok }

	// region
	switch {
	case c.Region == "" && len(c.Regions) > 0:
		add("region", "required: this region's name, one of the regions %s", known)
	case c.Region == "":
		add("region", "required: this region's name")
	case !validRegionName(c.Region):
		add("region", "%q is not a valid region name (lowercase letters, digits and '-', at most %d; \"hb\" is reserved)", c.Region, MaxRegionNameLen)
	case len(c.Regions) > 0 && !isRegion(c.Region):
		add("region", "%q is not one of the regions %s", c.Region, known)
	}

	// regions
	if len(c.Regions) == 0 {
		add("regions", `required: every region of the deployment, e.g. {us-east: {http: "http://127.0.0.1:7101", nats: "nats://127.0.0.1:7201"}}`)
	}
	httpAt, natsAt := map[string]string{}, map[string]string{}
	for _, name := range order {
		ep := c.Regions[name]
		key := "regions." + name
		if !validRegionName(name) {
			add(key, "%q is not a valid region name (lowercase letters, digits and '-', at most %d; \"hb\" is reserved)", name, MaxRegionNameLen)
		}
		if u, err := checkURL(ep.HTTP, "http", "https"); err != nil {
			add(key+".http", "%v", err)
		} else if other, dup := httpAt[u.Host]; dup {
			add(key+".http", "%q is also regions.%s.http", ep.HTTP, other)
		} else {
			httpAt[u.Host] = name
		}
		if u, err := checkURL(ep.NATS, "nats", "tls"); err != nil {
			add(key+".nats", "%v", err)
		} else if other, dup := natsAt[u.Host]; dup {
			add(key+".nats", "%q is also regions.%s.nats", ep.NATS, other)
		} else {
			natsAt[u.Host] = name
		}
	}

	// topology
	switch c.Topology.Kind {
	case TopologyAllToAll, TopologyStar, TopologyCircular:
	case "":
		add("topology.kind", "required: one of %s, %s, %s", TopologyAllToAll, TopologyStar, TopologyCircular)
	default:
		add("topology.kind", "%q is not one of %s, %s, %s", c.Topology.Kind, TopologyAllToAll, TopologyStar, TopologyCircular)
	}
	switch {
	case c.Topology.Hub == "" && c.Topology.Kind == TopologyStar:
		add("topology.hub", "required for topology star: the hub region, one of %s", known)
	case c.Topology.Hub != "" && !isRegion(c.Topology.Hub):
		add("topology.hub", "%q is not one of the regions %s", c.Topology.Hub, known)
	}
	if len(c.Topology.Order) > 0 {
		if reason := permutationProblem(c.Topology.Order, c.Regions); reason != "" {
			add("topology.order", "%s", reason)
		}
	}

	// data_dir
	if c.DataDir == "" && validRegionName(c.Region) {
		add("data_dir", "required")
	}

	// http
	self, selfOK := c.Regions[c.Region]
	if c.HTTP.Listen == "" {
		if selfOK {
			add("http.listen", "required (none can be derived from regions.%s.http %q)", c.Region, self.HTTP)
		}
	} else if err := checkListen(c.HTTP.Listen); err != nil {
		add("http.listen", "%v", err)
	}
	if c.HTTP.MaxValueBytes <= 0 || c.HTTP.MaxValueBytes > MaxValueBytesLimit {
		add("http.max_value_bytes", "%s is out of range: must be 1B to %s", c.HTTP.MaxValueBytes, MaxValueBytesLimit)
	}
	nonNegative(add, "http.read_timeout", c.HTTP.ReadTimeout)
	nonNegative(add, "http.write_timeout", c.HTTP.WriteTimeout)
	nonNegative(add, "http.idle_timeout", c.HTTP.IdleTimeout)
	if c.HTTP.WriteTimeout > 0 && c.Sessions.MaxWait > 0 && c.HTTP.WriteTimeout <= c.Sessions.MaxWait {
		add("http.write_timeout", "%s must be longer than sessions.max_wait (%s), or 0 for none", c.HTTP.WriteTimeout, c.Sessions.MaxWait)
	}

	// nats
	if c.NATS.Embedded && c.NATS.URL != "" {
		add("nats.embedded", "true conflicts with nats.url %q: set nats.url for an external NATS server, or nats.embedded: true for one in this process, not both", c.NATS.URL)
	}
	if c.NATS.Embedded {
		if c.NATS.Listen == "" {
			if selfOK {
				add("nats.listen", "required (none can be derived from regions.%s.nats %q)", c.Region, self.NATS)
			}
		} else if err := checkListen(c.NATS.Listen); err != nil {
			add("nats.listen", "%v", err)
		}
		if c.NATS.StoreDir == "" && c.DataDir != "" {
			add("nats.store_dir", "required")
		}
	} else if c.NATS.URL == "" {
		if selfOK || len(c.Regions) == 0 {
			add("nats.url", "required when nats.embedded is false")
		}
	} else {
		for _, part := range strings.Split(c.NATS.URL, ",") {
			if _, err := checkURL(strings.TrimSpace(part), "nats", "tls"); err != nil {
				add("nats.url", "%v", err)
				break
			}
		}
	}
	if c.NATS.Sync != NATSSyncAlways {
		if d, err := time.ParseDuration(c.NATS.Sync); err != nil || d <= 0 {
			add("nats.sync", "%q is neither %q nor a positive interval such as \"1s\"", c.NATS.Sync, NATSSyncAlways)
		}
	}

	// replication
	positive(add, "replication.max_clock_skew", c.Replication.MaxClockSkew)
	positive(add, "replication.heartbeat", c.Replication.Heartbeat)
	positive(add, "replication.stream_max_age", c.Replication.StreamMaxAge)
	if c.Replication.StreamMaxBytes <= 0 {
		add("replication.stream_max_bytes", "%s must be positive", c.Replication.StreamMaxBytes)
	}
	if c.Replication.Batch < 1 || c.Replication.Batch > MaxBatch {
		add("replication.batch", "%d is out of range: must be 1 to %d", c.Replication.Batch, MaxBatch)
	}
	switch c.Replication.LogMode {
	case LogModeOutbox:
	case LogModeStream:
		if c.NATS.Embedded && c.NATS.Sync != NATSSyncAlways {
			add("replication.log_mode", "stream trims the outbox once JetStream stored an entry, so it needs nats.sync: always (got %q); use log_mode: outbox for lazy sync", c.NATS.Sync)
		}
	default:
		add("replication.log_mode", "%q is neither %q nor %q", c.Replication.LogMode, LogModeOutbox, LogModeStream)
	}
	if c.Replication.MaxHold < 0 {
		add("replication.max_hold", "%s must not be negative", c.Replication.MaxHold)
	}

	// conflicts
	if c.Conflicts.Retention < 1 {
		add("conflicts.retention", "%d must be positive", c.Conflicts.Retention)
	}
	positive(add, "conflicts.max_age", c.Conflicts.MaxAge)

	// sessions
	positive(add, "sessions.default_wait", c.Sessions.DefaultWait)
	positive(add, "sessions.max_wait", c.Sessions.MaxWait)
	if c.Sessions.DefaultWait > c.Sessions.MaxWait && c.Sessions.MaxWait > 0 {
		add("sessions.default_wait", "%s exceeds sessions.max_wait (%s)", c.Sessions.DefaultWait, c.Sessions.MaxWait)
	}

	// log
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		add("log.format", "%q is not one of text, json", c.Log.Format)
	}

	errs = append(errs, c.validateRules()...)
	return errors.Join(errs...)
}

// Rule strategies (rules.Spec.Strategy).
const (
	strategyHome     = "home_region"
	strategyLWW      = "lww"
	strategySiblings = "siblings"
	strategyCustom   = "custom"
)

// validateRules checks each rule's fields and their combination.
func (c *Config) validateRules() []error {
	var errs []error
	if len(c.Rules) == 0 {
		return []error{fieldErrorf("rules", "empty: give at least one rule, or leave the key out for the default lww rule")}
	}
	firstNamed := map[string]int{}
	for i, r := range c.Rules {
		key := fmt.Sprintf("rules[%d]", i)
		add := func(field, format string, args ...any) {
			k := key
			if field != "" {
				k += "." + field
			}
			reason := fmt.Sprintf(format, args...)
			if r.Name != "" && field != "name" {
				reason += fmt.Sprintf(" (rule %q)", r.Name)
			}
			errs = append(errs, &FieldError{Key: k, Reason: reason})
		}
		switch j, dup := firstNamed[r.Name]; {
		case strings.TrimSpace(r.Name) == "":
			add("name", "required: a name for logs, metrics and the conflict log")
		case r.Name != strings.TrimSpace(r.Name):
			add("name", "%q has leading or trailing spaces", r.Name)
		case dup:
			add("name", "%q is already the name of rules[%d]", r.Name, j)
		default:
			firstNamed[r.Name] = i
		}
		if strings.TrimSpace(r.Match) == "" {
			add("match", `required: a boolean expression over key, e.g. 'key startsWith "user/"' or 'true'`)
		}
		switch r.Strategy {
		case strategyHome:
			if strings.TrimSpace(r.Home) == "" {
				add("home", "required for strategy home_region: an expression giving the key's home region")
			}
		case strategyCustom:
			if r.Select == "" && r.Merge == "" && r.OnRead == "" {
				add("strategy", "custom needs select, merge or on_read")
			}
			if r.Select != "" && r.Merge != "" {
				add("merge", "select and merge are exclusive: select keeps one version, merge writes a new one")
			}
		case strategyLWW, strategySiblings:
		case "":
			add("strategy", "required: one of home_region, lww, siblings, custom")
		default:
			add("strategy", "%q is not one of home_region, lww, siblings, custom", r.Strategy)
		}
		validStrategy := r.Strategy == strategyHome || r.Strategy == strategyLWW || r.Strategy == strategySiblings || r.Strategy == strategyCustom
		if validStrategy && r.Strategy != strategyHome {
			if r.HomeMode != "" {
				add("home_mode", "only used by strategy home_region, not %s", r.Strategy)
			}
			if r.Fallback != "" {
				add("fallback", "only used by strategy home_region, not %s", r.Strategy)
			}
			if r.Home != "" && r.Strategy != strategyCustom {
				add("home", "only used by strategies home_region and custom, not %s", r.Strategy)
			}
		}
		if validStrategy && r.Strategy != strategyCustom {
			if r.Select != "" {
				add("select", "only used by strategy custom, not %s", r.Strategy)
			}
			if r.Merge != "" {
				add("merge", "only used by strategy custom, not %s", r.Strategy)
			}
		}
		if !slices.Contains([]string{"", "reject", "lww", "siblings"}, r.Fallback) {
			add("fallback", "%q is not one of reject, lww, siblings", r.Fallback)
		}
		if !slices.Contains([]string{"", "forward", "redirect", "reject"}, r.HomeMode) {
			add("home_mode", "%q is not one of forward, redirect, reject", r.HomeMode)
		}
		if r.Resolver != "" {
			if _, ok := c.Regions[r.Resolver]; !ok {
				add("resolver", "%q is not one of the regions %s", r.Resolver, knownList(c))
			} else if r.Merge == "" {
				add("resolver", "only used with merge")
			}
		}
	}
	return errs
}

func knownList(c *Config) string { return "(" + strings.Join(c.writtenOrder(), ", ") + ")" }

// permutationProblem says why order is not a permutation of the regions, or
// returns "".
func permutationProblem(order []string, regions map[string]Endpoints) string {
	seen := map[string]bool{}
	for _, name := range order {
		if _, ok := regions[name]; !ok {
			return fmt.Sprintf("%q is not one of the regions", name)
		}
		if seen[name] {
			return fmt.Sprintf("%q appears twice: the order must list every region once", name)
		}
		seen[name] = true
	}
	var missing []string
	for name := range regions {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Sprintf("missing %s: the order must list every region once", strings.Join(missing, ", "))
	}
	return ""
}

// checkURL parses raw as an absolute URL with one of the schemes and a
// host, and no query or fragment.
func checkURL(raw string, schemes ...string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("required: a URL (%s)", strings.Join(schemes, " or "))
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%q is not a URL: %v", raw, err)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return nil, fmt.Errorf("%q: the scheme must be %s", raw, strings.Join(schemes, " or "))
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q: port %s is not 1 to 65535", raw, p)
		}
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q: a query or fragment is not allowed", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" && u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%q: a path is not allowed", raw)
	}
	return u, nil
}

// checkListen checks a host:port to listen on; port 0 means any free port.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 0 to 65535", addr, port)
	}
	return nil
}

func positive(add func(string, string, ...any), key string, d time.Duration) {
	if d <= 0 {
		add(key, "%s must be positive", d)
	}
}

func nonNegative(add func(string, string, ...any), key string, d time.Duration) {
	if d < 0 {
		add(key, "%s must not be negative", d)
	}
}
