package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/topology"
)

// Limits Validate enforces.
const (
	// MaxRegionNameLen bounds a region name (it is part of stream and
	// consumer names): topology.MaxRegionLen.
	MaxRegionNameLen = topology.MaxRegionLen
	// MaxValueBytesLimit is the largest http.max_value_bytes: NATS's hard
	// limit on a message payload, less EventReserve.
	MaxValueBytesLimit ByteSize = 64<<20 - EventReserve
	// EventReserve is the room a replicated event needs on top of its
	// document: the key (up to 1 KiB), the causal context (about 80 bytes
	// per actor that ever wrote the key), the clocks, and the message
	// headers (identity, route, positions). A region's NATS server must
	// accept messages of http.max_value_bytes plus this: the embedded one
	// is configured so, an external one is checked at start. A write
	// whose event is larger still (a context of hundreds of actors) is
	// refused with 413 rather than stalling replication.
	EventReserve ByteSize = 64 << 10
	// HeaderReserve is the part of EventReserve kept for the message
	// headers: an event's encoding may use the rest.
	HeaderReserve ByteSize = 8 << 10
	// MaxBatch is the largest replication.batch.
	MaxBatch = 10000
	// MaxNATSReplicas is the largest nats.replicas: JetStream's limit on
	// the replicas of a stream.
	MaxNATSReplicas = 5
	// MinAckWait is the shortest replication.ack_wait. A link asks for
	// several batches ahead and each waits its turn to be applied, so an
	// ack wait much below a second redelivers messages that are only
	// queued, not lost.
	MinAckWait = time.Second
)

// validRegionName reports whether s is a region name (topology.ValidRegion:
// [a-z0-9-]+, at most MaxRegionNameLen bytes, not "hb").
func validRegionName(s string) bool { return topology.ValidRegion(s) }

// Validate checks every setting and returns nil, or every problem found
// joined with errors.Join, each a *FieldError "config: <key>: <reason>",
// roughly in the order of the keys in Config. It reads nothing and changes
// nothing. Run Complete first on a Config built in code: Validate does not
// fill defaults.
//
// The region list and the topology section are judged by the topology
// package (topology.Validate, on the same input Plan gives topology.New),
// and the rules by the rules package (rules.Compile under RuleOptions,
// expressions included), so a Config that Validate accepts builds its plan
// and compiles its rules in the gateway, and one it refuses would fail
// there too.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fieldErrorf(key, format, args...))
	}
	order := c.writtenOrder()
	known := "(" + strings.Join(order, ", ") + ")"
	isRegion := func(name string) bool { _, ok := c.Regions[name]; return ok }

	// region
	switch nameErr := topology.CheckRegion(c.Region); {
	case c.Region == "" && len(c.Regions) > 0:
		add("region", "required: this region's name, one of the regions %s", known)
	case c.Region == "":
		add("region", "required: this region's name")
	case nameErr != nil:
		add("region", "%v", nameErr)
	case len(c.Regions) > 0 && !isRegion(c.Region):
		add("region", "%q is not one of the regions %s", c.Region, known)
	}

	// regions: the endpoints here, the names with the topology below.
	httpAt, natsAt := map[string]string{}, map[string]string{}
	for _, name := range order {
		ep := c.Regions[name]
		key := "regions." + name
		if u, err := checkURL(ep.HTTP, "http", "https"); err != nil {
			add(key+".http", "%v", err)
		} else if other, dup := httpAt[u.Host]; dup {
			add(key+".http", "%q is also regions.%s.http", ep.HTTP, other)
		} else {
			httpAt[u.Host] = name
		}
		for _, part := range strings.Split(ep.NATS, ",") {
			part = strings.TrimSpace(part)
			if u, err := checkURL(part, "nats", "tls"); err != nil {
				add(key+".nats", "%v", err)
				break
			} else if other, dup := natsAt[u.Host]; dup && other != name {
				add(key+".nats", "%q is also in regions.%s.nats", part, other)
				break
			} else {
				natsAt[u.Host] = name
			}
		}
	}

	// node, nodes
	c.validateNodes(add)

	// region names and topology: the plan's own judgement.
	topoErrs := topologyProblems(topology.Validate(order, c.TopologySpec()))
	errs = append(errs, topoErrs...)

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
		switch {
		case c.Clustered() && c.NATS.ClusterListen == "":
			if _, ok := c.Nodes[c.Node]; ok {
				add("nats.cluster_listen", "required (none can be derived from nodes.%s.cluster %q)", c.Node, c.Nodes[c.Node].Cluster)
			}
		case c.NATS.ClusterListen != "" && !c.Clustered():
			add("nats.cluster_listen", "set for a region of one node: routes join the servers of a region's nodes (list them in nodes), or remove it")
		case c.NATS.ClusterListen != "":
			if err := checkListen(c.NATS.ClusterListen); err != nil {
				add("nats.cluster_listen", "%v", err)
			}
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
	switch r := c.NATS.Replicas; {
	case r < 1 || r > MaxNATSReplicas:
		add("nats.replicas", "%d is out of range: must be 1 to %d (JetStream's limit)", r, MaxNATSReplicas)
	case r > 1 && c.NATS.Embedded && !c.Clustered():
		add("nats.replicas", "%d needs a clustered JetStream, and the embedded server of a region of one node is a single server: use 1, list the region's nodes (nodes), or set nats.url for an external cluster of at least %d servers", r, r)
	case r > len(c.Nodes) && c.NATS.Embedded && c.Clustered():
		add("nats.replicas", "%d exceeds the region's %d nodes, whose embedded servers form its NATS cluster: use at most %d", r, len(c.Nodes), len(c.Nodes))
	}

	// http.tls, auth, metrics, nats.tls, nats credentials, nkeys
	c.validateSecurity(add)

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
	if c.Replication.AckWait < MinAckWait {
		add("replication.ack_wait", "%s is too short: must be at least %s (a message not acked in this time is delivered again)", c.Replication.AckWait, MinAckWait)
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
	positive(add, "replication.reseed_after", c.Replication.ReseedAfter)

	// lifecycle
	nonNegative(add, "tombstones.grace", c.Tombstones.Grace)
	positive(add, "tombstones.interval", c.Tombstones.Interval)
	nonNegative(add, "anti_entropy.interval", c.AntiEntropy.Interval)
	nonNegative(add, "anti_entropy.scrub_interval", c.AntiEntropy.ScrubInterval)

	// conflicts
	if c.Conflicts.Retention < 1 {
		add("conflicts.retention", "%d must be positive", c.Conflicts.Retention)
	}
	positive(add, "conflicts.max_age", c.Conflicts.MaxAge)

	// watch
	if c.Watch.Retention < 1 {
		add("watch.retention", "%d must be positive", c.Watch.Retention)
	}
	if c.Watch.MaxLag < 1 {
		add("watch.max_lag", "%d must be positive", c.Watch.MaxLag)
	}
	positive(add, "watch.heartbeat", c.Watch.Heartbeat)
	positive(add, "watch.write_timeout", c.Watch.WriteTimeout)

	// sessions
	positive(add, "sessions.default_wait", c.Sessions.DefaultWait)
	positive(add, "sessions.max_wait", c.Sessions.MaxWait)
	if c.Sessions.DefaultWait > c.Sessions.MaxWait && c.Sessions.MaxWait > 0 {
		add("sessions.default_wait", "%s exceeds sessions.max_wait (%s)", c.Sessions.DefaultWait, c.Sessions.MaxWait)
	}

	// storage
	if c.Storage.MinFreeBytes < 0 {
		add("storage.min_free_bytes", "%s must not be negative (0 turns the guard off)", c.Storage.MinFreeBytes)
	}

	// log
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		add("log.format", "%q is not one of text, json", c.Log.Format)
	}

	// rules: checked as `geogate rules lint` checks them (rules.Check:
	// compiled, and every lint error) under the deployment's regions once
	// those are sound; until then without, so that the rules' other
	// problems are still reported.
	opts := rules.Options{}
	if len(topoErrs) == 0 {
		opts = c.RuleOptions()
	}
	errs = append(errs, ruleProblems(c.checkRules(opts))...)
	return errors.Join(errs...)
}

// validateNodes checks node, nodes, election and region_log.
func (c *Config) validateNodes(add func(string, string, ...any)) {
	if err := topology.CheckRegion(c.Node); err != nil {
		add("node", "%v", strings.Replace(err.Error(), "region", "node", 1))
	}
	switch {
	case len(c.Nodes) == 1:
		add("nodes", "lists one node: a region of one node needs no nodes list (remove it), a region of several lists them all")
	case len(c.Nodes) > 1:
		if _, ok := c.Nodes[c.Node]; !ok {
			add("node", "%q is not one of this region's nodes (%s): set node to this process's name", c.Node, strings.Join(c.NodeNames(), ", "))
		}
	}
	seen := map[string]string{}
	for _, name := range c.NodeNames() {
		if len(c.Nodes) < 2 {
			break
		}
		ep, key := c.Nodes[name], "nodes."+name
		if err := topology.CheckRegion(name); err != nil {
			add(key, "%v", strings.Replace(err.Error(), "region", "node", 1))
		}
		check := func(field, raw string, schemes ...string) {
			u, err := checkURL(raw, schemes...)
			if err != nil {
				add(key+"."+field, "%v", err)
				return
			}
			if other, dup := seen[u.Host]; dup {
				add(key+"."+field, "%q is also %s", raw, other)
				return
			}
			seen[u.Host] = key + "." + field
		}
		check("http", ep.HTTP, "http", "https")
		if c.NATS.Embedded {
			check("nats", ep.NATS, "nats", "tls")
			check("cluster", ep.Cluster, "nats", "tls")
		}
	}
	if c.Election.LeaseTTL < time.Second {
		add("election.lease_ttl", "%s is too short: at least 1s (the leader renews every third of it, and must reach a majority of the nodes in time)", c.Election.LeaseTTL)
	}
	positive(add, "region_log.max_age", c.RegionLog.MaxAge)
	if c.RegionLog.MaxBytes <= 0 {
		add("region_log.max_bytes", "%s must be positive", c.RegionLog.MaxBytes)
	}
	positive(add, "region_log.append_timeout", c.RegionLog.AppendTimeout)
}

// topologyProblems turns topology.Validate's error into *FieldErrors on
// config keys: a problem with one entry of the regions list concerns the
// key regions.<name>.
func topologyProblems(err error) []error {
	var out []error
	for _, e := range unjoin(err) {
		var se *topology.SpecError
		if !errors.As(e, &se) {
			out = append(out, fieldErrorf("topology", "%v", e))
			continue
		}
		key := se.Field
		if se.Field == "regions" && se.Region != "" {
			key = "regions." + se.Region
		}
		out = append(out, &FieldError{Key: key, Reason: se.Reason})
	}
	return out
}

// ruleProblems turns the error findings of rules.Check into *FieldErrors
// on the keys rules[i] and rules[i].<field>, each reason naming its rule.
// An expression error is written on one line, located in the expression
// by line and column (geogate rules lint shows it with a caret).
func ruleProblems(diags []rules.Diagnostic) []error {
	var out []error
	for _, d := range rules.Errors(diags) {
		key := "rules"
		if d.Index >= 0 {
			key = fmt.Sprintf("rules[%d]", d.Index)
			if d.Field != "" {
				key += "." + d.Field
			}
		}
		reason := d.Message
		if d.Rule != "" && d.Field != "name" {
			reason += fmt.Sprintf(" (rule %q)", d.Rule)
		}
		out = append(out, &FieldError{Key: key, Reason: reason})
	}
	return out
}

// unjoin returns the errors joined in err (err itself when it is not a
// join; none when it is nil).
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
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
