package testbed

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/testbed/wan"
	"github.com/geogate/geogate/topology"
)

// Mode says how a scenario runs its regions.
type Mode string

// The modes a scenario can run in.
const (
	// InProcess runs every region in the testbed's process
	// (gateway.StartCluster). A kill is a clean close of the node.
	InProcess Mode = "in-process"
	// Process runs every region as a `geogate serve` child process. A kill
	// is SIGKILL.
	Process Mode = "process"
)

// Scenario is one testbed run as written in a scenario file. Durations are
// Go durations ("80ms", "1m30s"). Load returns a complete, valid Scenario:
// defaults filled in, every reference to a region checked.
type Scenario struct {
	// Name identifies the scenario in reports (default: the file name).
	Name string `yaml:"name"`
	// Description says what the scenario shows.
	Description string `yaml:"description"`
	// Mode is in-process (default) or process.
	Mode Mode `yaml:"mode"`
	// Regions are the region names, in order (the default ring order).
	Regions []string `yaml:"regions"`
	// Nodes is the number of nodes of every region (default 1), and
	// NodesOf that of the regions it names. A region of several nodes runs
	// one `geogate serve` process per node (process mode only), named
	// <region>-1 ... <region>-N as `geogate init --nodes` names them: one
	// leads, the others follow (see the README's "Regions of several
	// nodes").
	Nodes   int            `yaml:"nodes"`
	NodesOf map[string]int `yaml:"nodes_of"`
	// Topology selects the replication links.
	Topology topology.Spec `yaml:"topology"`
	// Links emulate the WAN on every inbound replication link.
	Links Links `yaml:"links"`
	// Rules are every region's conflict rules (default: lww for all keys).
	Rules []rules.Spec `yaml:"rules"`
	// Sync makes every region fsync before acknowledging (durability.sync);
	// default false (the OS keeps acknowledged writes across a SIGKILL).
	Sync bool `yaml:"sync"`
	// Security runs every region secured as `geogate init` writes a
	// deployment (HTTPS with bearer tokens, NATS with TLS and per-region
	// credentials), with material generated for the run; the WAN proxies
	// stay in the path (they forward TCP, so TLS passes through them).
	Security bool `yaml:"security"`
	// Workload is the client traffic.
	Workload Workload `yaml:"workload"`
	// Faults is the fault timeline.
	Faults []Fault `yaml:"faults"`
	// Duration is how long the workload runs.
	Duration time.Duration `yaml:"duration"`
	// Quiescence bounds the wait, after the workload stops and every fault
	// is undone, for the regions to converge (default 60s).
	Quiescence time.Duration `yaml:"quiescence"`
	// Checks are the pass/fail criteria.
	Checks Checks `yaml:"checks"`
	// Seed seeds the workload and the WAN emulation (0: random).
	Seed uint64 `yaml:"seed"`
	// Settings set region configuration keys on every region, by their
	// key path (as --set takes them): replication.stream_max_age: 5s,
	// anti_entropy.interval: 1s. Durations, sizes, numbers, booleans and
	// strings.
	Settings map[string]string `yaml:"settings"`

	// Source is the file the scenario was loaded from.
	Source string `yaml:"-"`
	// IsShort is true when the file's short block was applied.
	IsShort bool `yaml:"-"`
}

// Links are the WAN profiles of the replication links: Default for every
// link, Overrides by "from->to" (the link carrying from's events to to).
type Links struct {
	Default   LinkProfile
	Overrides map[string]LinkProfile
}

// UnmarshalYAML reads a mapping whose "default" key is the default profile
// and whose other keys are links written "from->to".
func (l *Links) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: links must be a mapping of \"default\" and \"from->to\" to profiles", n.Line)
	}
	l.Overrides = map[string]LinkProfile{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var p LinkProfile
		if err := v.Decode(&p); err != nil {
			return fmt.Errorf("links.%s: %w", k.Value, err)
		}
		if k.Value == "default" {
			l.Default = p
			continue
		}
		from, to, ok := strings.Cut(k.Value, "->")
		if !ok || from == "" || to == "" {
			return fmt.Errorf("line %d: links key %q: want \"default\" or \"from->to\"", k.Line, k.Value)
		}
		l.Overrides[k.Value] = p
	}
	return nil
}

// MarshalYAML writes the form UnmarshalYAML reads.
func (l Links) MarshalYAML() (any, error) {
	out := map[string]LinkProfile{"default": l.Default}
	for k, v := range l.Overrides {
		out[k] = v
	}
	return out, nil
}

// For returns the profile of the link from -> to.
func (l Links) For(from, to string) LinkProfile {
	if p, ok := l.Overrides[from+"->"+to]; ok {
		return p
	}
	return l.Default
}

// LinkProfile is the emulated WAN of one replication link. Latency and
// jitter are one-way and apply in both directions of the link's
// connection, so a round trip takes twice Latency; Bandwidth caps each
// direction.
type LinkProfile struct {
	// Latency is the one-way delay.
	Latency time.Duration `yaml:"latency" json:"latency"`
	// Jitter spreads the delay uniformly over Latency +- Jitter without
	// reordering bytes.
	Jitter time.Duration `yaml:"jitter" json:"jitter,omitempty"`
	// Bandwidth caps each direction in bytes per second (0: unlimited).
	Bandwidth ByteRate `yaml:"bandwidth" json:"bandwidth,omitempty"`
	// Drop is the probability per forwarded chunk that the connection is
	// cut (see wan.Profile).
	Drop float64 `yaml:"drop" json:"drop,omitempty"`
	// Reverse, if set, replaces the profile of the direction towards the
	// link's source (the pulling region's fetch requests and acks).
	Reverse *LinkProfile `yaml:"reverse" json:"reverse,omitempty"`
}

// Shape converts the profile to the proxy's emulation of the connection
// the receiving region dials to the source region's NATS.
func (p LinkProfile) Shape() wan.Shape {
	down := wan.Profile{Latency: p.Latency, Jitter: p.Jitter, Bandwidth: int64(p.Bandwidth), Drop: p.Drop}
	s := wan.Symmetric(down)
	if p.Reverse != nil {
		r := p.Reverse
		s.Up = wan.Profile{Latency: r.Latency, Jitter: r.Jitter, Bandwidth: int64(r.Bandwidth), Drop: r.Drop}
	}
	return s
}

// ByteRate is a rate in bytes per second. In YAML it is a size as the
// region config writes one (config.ParseByteSize: a number of bytes or a
// number with a unit, 512KiB, 10MB), optionally followed by "/s".
type ByteRate int64

// UnmarshalYAML parses a number or a size with a unit.
func (b *ByteRate) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseByteRate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

func parseByteRate(s string) (ByteRate, error) {
	size, err := config.ParseByteSize(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	if err != nil || size < 0 {
		return 0, fmt.Errorf("bandwidth %q: want bytes per second, e.g. 1000000, 512KiB or 10MB/s", s)
	}
	return ByteRate(size), nil
}

// Workload is the client traffic: Rate operations per second spread over
// the writing regions.
type Workload struct {
	// Rate is operations per second, all regions together (required).
	Rate float64 `yaml:"rate" json:"rate"`
	// Concurrency bounds operations in flight (default 16).
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// Keys is the size of the key space (required).
	Keys int `yaml:"keys" json:"keys"`
	// KeyPrefix starts every key (default "k/").
	KeyPrefix string `yaml:"key_prefix" json:"key_prefix"`
	// Distribution picks keys: uniform (default) or zipf.
	Distribution string `yaml:"distribution" json:"distribution"`
	// ZipfS is the zipf exponent, > 1 (default 1.1).
	ZipfS float64 `yaml:"zipf_s" json:"zipf_s,omitempty"`
	// ConflictRatio is the fraction of writes that target the hot set from
	// several regions at once (concurrent writes of one key).
	ConflictRatio float64 `yaml:"conflict_ratio" json:"conflict_ratio"`
	// HotKeys is the size of the hot set (default 4).
	HotKeys int `yaml:"hot_keys" json:"hot_keys"`
	// ConflictRegions is how many regions write a hot key at once
	// (default: every writing region, at least 2).
	ConflictRegions int `yaml:"conflict_regions" json:"conflict_regions"`
	// ReadRatio is the fraction of operations that are plain reads.
	ReadRatio float64 `yaml:"read_ratio" json:"read_ratio"`
	// SessionRatio is the fraction of writes followed by a read of the same
	// key at another region carrying the write's session token.
	SessionRatio float64 `yaml:"session_ratio" json:"session_ratio"`
	// SessionWait is that read's X-Geo-Wait (default 2s).
	SessionWait time.Duration `yaml:"session_wait" json:"session_wait"`
	// ValueBytes pads each written document to about this size (default 64).
	ValueBytes int `yaml:"value_bytes" json:"value_bytes"`
	// Regions are where clients send operations (default: every region).
	Regions []string `yaml:"regions" json:"regions"`
	// Fields are added to every written document (e.g. a field a home
	// rule reads).
	Fields map[string]any `yaml:"fields" json:"fields,omitempty"`
	// Timeout bounds one request (default 10s).
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
}

// Fault is one entry of the fault timeline: exactly one of Partition, Cut,
// Isolate, Kill, Freeze, Pause, Skew, Degrade, Corrupt, Backup or DiskFull,
// starting At after the workload starts and undone For later (For 0: undone
// when the workload ends; Corrupt and Backup are instantaneous).
//
// Kill and Freeze name a target: a region (every node of it), a node of a
// region of several ("us-east-2"), or "REGION/leader" or "REGION/follower":
// the node that leads the region when the fault starts, or one that
// follows it (the first by name), as its nodes' /v1/status say.
type Fault struct {
	// At is when the fault starts, from the start of the workload.
	At time.Duration `yaml:"at" json:"at"`
	// For is how long it lasts; 0 lasts until the workload ends. A skew
	// with For 0 lasts for the whole run.
	For time.Duration `yaml:"for" json:"for,omitempty"`
	// Partition names two regions: every link between them is cut (their
	// proxies close connections and refuse new ones).
	Partition []string `yaml:"partition" json:"partition,omitempty"`
	// Cut names one link "from->to" to cut.
	Cut string `yaml:"cut" json:"cut,omitempty"`
	// Isolate cuts every link to and from a region (it keeps serving its
	// clients).
	Isolate string `yaml:"isolate" json:"isolate,omitempty"`
	// Kill stops a region hard (SIGKILL in process mode; a clean close in
	// process) and restarts it on the same data when the fault ends.
	Kill string `yaml:"kill" json:"kill,omitempty"`
	// Freeze stops a target's processes with SIGSTOP and resumes them with
	// SIGCONT when the fault ends (process mode): a node alive but silent,
	// its sockets open, what a long GC pause or a VM stall looks like.
	Freeze string `yaml:"freeze" json:"freeze,omitempty"`
	// UntilReplaced (with Freeze of a region's leader) keeps it frozen,
	// past For if need be, until another node of its region leads (the
	// split brain: the old leader resumes believing it leads).
	UntilReplaced bool `yaml:"until_replaced" json:"until_replaced,omitempty"`
	// Wipe (with Kill) deletes the killed region's data directory before
	// the restart: a region that lost its disk. Writes it acknowledged and
	// had not replicated are lost, which the lost-write check must report.
	Wipe bool `yaml:"wipe" json:"wipe,omitempty"`
	// Pause pauses a link through the admin API.
	Pause *PauseFault `yaml:"pause" json:"pause,omitempty"`
	// Skew moves a region's physical clock.
	Skew *SkewFault `yaml:"skew" json:"skew,omitempty"`
	// Degrade replaces a link's WAN profile for the duration.
	Degrade *DegradeFault `yaml:"degrade" json:"degrade,omitempty"`
	// Restore (with Kill and Wipe) restores the region from its latest
	// Backup into the wiped data directory before the restart, as
	// `geogate restore` does.
	Restore bool `yaml:"restore" json:"restore,omitempty"`
	// Corrupt damages a region's stored records behind its back: the
	// region is stopped, some of Keys records picked at random are
	// removed and the others have a byte flipped on disk (store.Tamper;
	// the events that made them are not delivered again), and it is
	// started again. Only anti-entropy can bring them back.
	Corrupt *CorruptFault `yaml:"corrupt" json:"corrupt,omitempty"`
	// Backup takes a snapshot of a region through its API (GET
	// /v1/admin/snapshot, as `geogate backup` does), for a later Restore.
	Backup string `yaml:"backup" json:"backup,omitempty"`
	// DiskFull fills a region's disk below its storage.min_free_bytes for
	// the duration: the region must refuse writes (507), keep serving
	// reads, show its links blocked, and take writes again once space is
	// back. The region's data directory is then a filesystem of its own
	// (a tmpfs of DiskFullSize, mounted for the run: it needs root).
	DiskFull *DiskFullFault `yaml:"disk_full" json:"disk_full,omitempty"`
}

// CorruptFault damages Keys stored records of Region.
type CorruptFault struct {
	Region string `yaml:"region" json:"region"`
	Keys   int    `yaml:"keys" json:"keys"`
}

// DiskFullFault fills one region's disk.
type DiskFullFault struct {
	Region string `yaml:"region" json:"region"`
}

// The disk of a region a disk_full fault fills: a tmpfs of DiskFullSize
// (only what is written uses memory), on which the region keeps at least
// DiskFullMinFree free (storage.min_free_bytes) and its stream at most
// DiskFullStreamBytes (JetStream reserves it out of the small disk). The
// fault leaves half of DiskFullMinFree free.
const (
	DiskFullSize        = 512 << 20
	DiskFullMinFree     = 64 << 20
	DiskFullStreamBytes = 64 << 20
)

// DiskFullRegions returns the regions a disk_full fault of the scenario
// names, which get a disk of their own.
func (s *Scenario) DiskFullRegions() []string {
	var out []string
	for _, f := range s.Faults {
		if f.DiskFull != nil && !slices.Contains(out, f.DiskFull.Region) {
			out = append(out, f.DiskFull.Region)
		}
	}
	return out
}

// PauseFault pauses the link From -> Region at Region.
type PauseFault struct {
	// Region is where the link is paused (the pulling region).
	Region string `yaml:"region" json:"region"`
	// From is the link's source region.
	From string `yaml:"from" json:"from"`
}

// SkewFault moves a region's physical clock.
type SkewFault struct {
	// Region is the region whose clock moves.
	Region string `yaml:"region" json:"region"`
	// By is the offset from the wall clock (negative: behind).
	By time.Duration `yaml:"by" json:"by"`
}

// DegradeFault gives a link another profile for the fault's duration.
type DegradeFault struct {
	// Link is "from->to".
	Link string `yaml:"link" json:"link"`
	// Profile replaces the link's profile.
	Profile LinkProfile `yaml:"profile" json:"profile"`
}

// Kind names the fault's kind.
func (f Fault) Kind() string {
	switch {
	case len(f.Partition) > 0:
		return "partition"
	case f.Cut != "":
		return "cut"
	case f.Isolate != "":
		return "isolate"
	case f.Kill != "":
		return "kill"
	case f.Freeze != "":
		return "freeze"
	case f.Pause != nil:
		return "pause"
	case f.Skew != nil:
		return "skew"
	case f.Degrade != nil:
		return "degrade"
	case f.DiskFull != nil:
		return "disk_full"
	case f.Corrupt != nil:
		return "corrupt"
	case f.Backup != "":
		return "backup"
	}
	return ""
}

// String describes the fault for reports, e.g. "partition us-east/eu-west".
func (f Fault) String() string {
	switch f.Kind() {
	case "partition":
		return "partition " + strings.Join(f.Partition, "/")
	case "cut":
		return "cut " + f.Cut
	case "isolate":
		return "isolate " + f.Isolate
	case "kill":
		switch {
		case f.Wipe && f.Restore:
			return "kill " + f.Kill + ", wipe its data and restore its backup"
		case f.Wipe:
			return "kill " + f.Kill + " and wipe its data"
		}
		return "kill " + f.Kill
	case "freeze":
		if f.UntilReplaced {
			return "freeze " + f.Freeze + " until replaced"
		}
		return "freeze " + f.Freeze
	case "pause":
		return "pause " + f.Pause.From + "->" + f.Pause.Region
	case "skew":
		return fmt.Sprintf("skew %s by %s", f.Skew.Region, f.Skew.By)
	case "degrade":
		return "degrade " + f.Degrade.Link
	case "disk_full":
		return "fill the disk of " + f.DiskFull.Region
	case "corrupt":
		return fmt.Sprintf("corrupt %d records of %s", f.Corrupt.Keys, f.Corrupt.Region)
	case "backup":
		return "backup " + f.Backup
	}
	return "?"
}

func (f Fault) kinds() int {
	n := 0
	for _, set := range []bool{len(f.Partition) > 0, f.Cut != "", f.Isolate != "", f.Kill != "", f.Freeze != "", f.Pause != nil, f.Skew != nil, f.Degrade != nil, f.Corrupt != nil, f.Backup != "", f.DiskFull != nil} {
		if set {
			n++
		}
	}
	return n
}

// Checks are the pass/fail criteria of a run. Convergence and lost writes
// are checked unless turned off; the others only when set.
type Checks struct {
	// Convergence: after quiescence every region's digest is equal
	// (default true).
	Convergence *bool `yaml:"convergence" json:"convergence"`
	// LostWrites: every acknowledged write is in the final frontier,
	// superseded by a context that covered it, or in the conflict log
	// (default true).
	LostWrites *bool `yaml:"lost_writes" json:"lost_writes"`
	// Sessions bounds session reads that failed (503 stale, or the key
	// missing).
	Sessions *SessionBound `yaml:"sessions" json:"sessions,omitempty"`
	// Lag bounds every link's lag percentiles.
	Lag *LagBound `yaml:"lag" json:"lag,omitempty"`
	// Conflicts bounds conflict-log entries per rule (the highest count at
	// any one region, as CheckConflicts compares).
	Conflicts map[string]CountBound `yaml:"conflicts" json:"conflicts,omitempty"`
	// MinAcked is the fewest acknowledged writes a run must have (guards
	// against a workload that did nothing).
	MinAcked int `yaml:"min_acked" json:"min_acked"`
	// MaxWriteErrors bounds the fraction of writes not acknowledged
	// (default 1: any).
	MaxWriteErrors *float64 `yaml:"max_write_errors" json:"max_write_errors,omitempty"`
	// WriteErrors bounds write errors by reason, as the report counts them
	// ("503 clock_skew", "507 insufficient_storage", "timeout", ...): a
	// fault that must make a region refuse writes says so with min.
	WriteErrors map[string]CountBound `yaml:"write_errors" json:"write_errors,omitempty"`
	// AntiEntropy bounds the records anti-entropy repaired, summed over the
	// regions (their status's lifecycle.anti_entropy.keys_repaired): a
	// corrupt fault must be repaired and counted.
	AntiEntropy *AntiEntropyBound `yaml:"anti_entropy" json:"anti_entropy,omitempty"`
	// Reseeds bounds the re-seeds from a peer's snapshot, summed over the
	// regions (lifecycle.reseeds): a region away past its peers' retention
	// must re-seed.
	Reseeds *CountBound `yaml:"reseeds" json:"reseeds,omitempty"`
	// Failover bounds, for every fault that kills or freezes a region's
	// leader, the time from the fault to the first write another node of
	// the region acknowledged (the report's failover_seconds).
	Failover *FailoverBound `yaml:"failover" json:"failover,omitempty"`
	// ClockBound bounds how far ahead of real time the HLC of a write
	// acknowledged at or after From may be: after a clock that ran ahead is
	// corrected, its region's writes must not keep a lead beyond the bound.
	ClockBound *ClockBound `yaml:"clock_bound" json:"clock_bound,omitempty"`
}

// FailoverBound bounds failovers.
type FailoverBound struct {
	// Max is the longest failover allowed.
	Max time.Duration `yaml:"max" json:"max"`
}

// AntiEntropyBound bounds what anti-entropy did in a run.
type AntiEntropyBound struct {
	// MinRepaired is the fewest records repaired.
	MinRepaired int `yaml:"min_repaired" json:"min_repaired"`
}

// ClockBound bounds the lead of writes' HLCs over real time.
type ClockBound struct {
	// From is when, from the start of the workload, the bound begins to
	// apply (after the last skew ended and the region noticed).
	From time.Duration `yaml:"from" json:"from"`
	// Max is the largest lead allowed: the regions' replication.max_clock_skew.
	Max time.Duration `yaml:"max" json:"max"`
}

// SessionBound bounds session violations.
type SessionBound struct {
	// MaxViolations is the most violations allowed.
	MaxViolations int `yaml:"max_violations" json:"max_violations"`
	// MaxRatio, if set, allows violations up to this fraction of session
	// reads instead.
	MaxRatio float64 `yaml:"max_ratio" json:"max_ratio,omitempty"`
}

// LagBound bounds every link's lag percentiles over the run's samples
// (workload and quiescence); zero leaves one unbounded.
type LagBound struct {
	// P50 bounds the median lag of each link.
	P50 time.Duration `yaml:"p50" json:"p50,omitempty"`
	// P99 bounds the 99th percentile.
	P99 time.Duration `yaml:"p99" json:"p99,omitempty"`
	// Max bounds the largest sample.
	Max time.Duration `yaml:"max" json:"max,omitempty"`
}

// CountBound is an inclusive range.
type CountBound struct {
	// Min is the fewest allowed.
	Min int `yaml:"min" json:"min"`
	// Max is the most allowed; nil is unbounded.
	Max *int `yaml:"max" json:"max,omitempty"`
}

// enabled resolves a default-true flag.
func enabled(b *bool) bool { return b == nil || *b }

// Load reads a scenario file. With short set, the file's top-level `short:`
// block is merged over the rest first (mappings merge key by key; lists and
// scalars replace), so CI can run a seconds-long form of the same scenario.
// Unknown keys anywhere are errors that name the key and line.
func Load(path string, short bool) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	s, err := Parse(data, short)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Source = path
	if s.Name == "" {
		base := path[strings.LastIndexByte(path, '/')+1:]
		s.Name = strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml")
	}
	return s, nil
}

// Parse reads a scenario from YAML; see Load.
func Parse(data []byte, short bool) (*Scenario, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("parse: a scenario is a YAML mapping")
	}
	root := doc.Content[0]
	var shortNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "short" {
			shortNode = root.Content[i+1]
			root.Content = slices.Delete(root.Content, i, i+2)
			break
		}
	}
	if err := checkKeys(root, reflect.TypeFor[Scenario](), ""); err != nil {
		return nil, err
	}
	if shortNode != nil {
		// The short block alone must only hold scenario keys.
		if err := checkKeys(shortNode, reflect.TypeFor[Scenario](), "short"); err != nil {
			return nil, err
		}
		if short {
			if shortNode.Kind != yaml.MappingNode {
				return nil, errors.New("short: must be a mapping")
			}
			mergeNode(root, shortNode)
		}
	}
	var s Scenario
	if err := root.Decode(&s); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	s.IsShort = short && shortNode != nil
	s.complete()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// mergeNode merges the mapping src into the mapping dst: a key present in
// both whose values are mappings merges recursively; otherwise src's value
// replaces or is added.
func mergeNode(dst, src *yaml.Node) {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		found := false
		for j := 0; j+1 < len(dst.Content); j += 2 {
			if dst.Content[j].Value != k.Value {
				continue
			}
			found = true
			if dst.Content[j+1].Kind == yaml.MappingNode && v.Kind == yaml.MappingNode {
				mergeNode(dst.Content[j+1], v)
			} else {
				dst.Content[j+1] = v
			}
			break
		}
		if !found {
			dst.Content = append(dst.Content, k, v)
		}
	}
}

// complete fills defaults.
func (s *Scenario) complete() {
	if s.Mode == "" {
		s.Mode = InProcess
	}
	if s.Topology.Kind == "" {
		s.Topology.Kind = topology.AllToAll
	}
	if s.Quiescence == 0 {
		s.Quiescence = 60 * time.Second
	}
	if s.Nodes == 0 {
		s.Nodes = 1
	}
	w := &s.Workload
	if w.Concurrency == 0 {
		w.Concurrency = 16
	}
	if w.KeyPrefix == "" {
		w.KeyPrefix = "k/"
	}
	if w.Distribution == "" {
		w.Distribution = "uniform"
	}
	if w.ZipfS == 0 {
		w.ZipfS = 1.1
	}
	if w.HotKeys == 0 {
		w.HotKeys = 4
	}
	if len(w.Regions) == 0 {
		w.Regions = slices.Clone(s.Regions)
	}
	if w.ConflictRegions == 0 {
		w.ConflictRegions = len(w.Regions)
	}
	if w.SessionWait == 0 {
		w.SessionWait = 2 * time.Second
	}
	if w.ValueBytes == 0 {
		w.ValueBytes = 64
	}
	if w.Timeout == 0 {
		w.Timeout = 10 * time.Second
	}
}

// Validate checks the scenario: every name refers to a region, every
// number is in range, every fault has exactly one kind and fits in the run.
func (s *Scenario) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if s.Mode != InProcess && s.Mode != Process {
		bad("mode", "%q is not a mode (want in-process or process)", s.Mode)
	}
	plan, err := topology.New(s.Regions, s.Topology)
	if err != nil {
		errs = append(errs, err)
	}
	known := func(field, r string) {
		if !slices.Contains(s.Regions, r) {
			bad(field, "%q is not one of the regions %v", r, s.Regions)
		}
	}
	link := func(field, l string) {
		from, to, ok := strings.Cut(l, "->")
		if !ok {
			bad(field, "%q is not a link (want from->to)", l)
			return
		}
		known(field, from)
		known(field, to)
		if plan != nil && !plan.HasLink(from, to) {
			bad(field, "the %s topology has no link %s", s.Topology.Kind, l)
		}
	}
	checkProfile := func(field string, p LinkProfile) {
		for _, sh := range []wan.Profile{p.Shape().Up, p.Shape().Down} {
			if err := sh.Validate(); err != nil {
				bad(field, "%v", err)
				return
			}
		}
	}
	checkProfile("links.default", s.Links.Default)
	for k, p := range s.Links.Overrides {
		link("links."+k, k)
		checkProfile("links."+k, p)
	}
	for i, r := range s.Rules {
		if r.Name == "" || r.Match == "" || r.Strategy == "" {
			bad(fmt.Sprintf("rules[%d]", i), "name, match and strategy are required")
		}
	}

	w := s.Workload
	switch {
	case w.Rate <= 0:
		bad("workload.rate", "must be > 0 operations per second")
	case w.Keys <= 0:
		bad("workload.keys", "must be > 0")
	case w.Concurrency <= 0:
		bad("workload.concurrency", "must be > 0")
	}
	if w.Distribution != "uniform" && w.Distribution != "zipf" {
		bad("workload.distribution", "%q: want uniform or zipf", w.Distribution)
	}
	if w.ZipfS <= 1 {
		bad("workload.zipf_s", "%g: must be > 1", w.ZipfS)
	}
	for field, v := range map[string]float64{"conflict_ratio": w.ConflictRatio, "read_ratio": w.ReadRatio, "session_ratio": w.SessionRatio} {
		if v < 0 || v > 1 {
			bad("workload."+field, "%g is not a fraction in [0, 1]", v)
		}
	}
	if w.HotKeys < 1 {
		bad("workload.hot_keys", "must be >= 1")
	}
	if w.ConflictRatio > 0 && (w.ConflictRegions < 2 || w.ConflictRegions > len(w.Regions)) {
		bad("workload.conflict_regions", "%d: must be between 2 and the %d writing regions", w.ConflictRegions, len(w.Regions))
	}
	if w.SessionRatio > 0 && len(s.Regions) < 2 {
		bad("workload.session_ratio", "session reads go to another region; the scenario has one")
	}
	for _, r := range w.Regions {
		known("workload.regions", r)
	}

	if s.Nodes < 1 || s.Nodes > deploy.MaxNodesPerRegion {
		bad("nodes", "%d: must be 1 to %d", s.Nodes, deploy.MaxNodesPerRegion)
	}
	for _, r := range slices.Sorted(maps.Keys(s.NodesOf)) {
		known("nodes_of", r)
		if n := s.NodesOf[r]; n < 1 || n > deploy.MaxNodesPerRegion {
			bad("nodes_of."+r, "%d: must be 1 to %d", n, deploy.MaxNodesPerRegion)
		}
	}
	for _, r := range s.Regions {
		if s.NodesIn(r) < 2 {
			continue
		}
		if s.Mode != Process {
			bad("nodes", "region %s has %d nodes: regions of several nodes run in mode process", r, s.NodesIn(r))
			break
		}
		for _, n := range s.NodeNames(r) {
			if slices.Contains(s.Regions, n) {
				bad("nodes", "node %s of region %s has the name of a region", n, r)
			}
		}
	}
	if c := s.Checks.Failover; c != nil && c.Max <= 0 {
		bad("checks.failover.max", "must be > 0")
	}

	if s.Duration <= 0 {
		bad("duration", "must be > 0")
	}
	if s.Quiescence < 0 {
		bad("quiescence", "must be >= 0")
	}
	for i, f := range s.Faults {
		field := fmt.Sprintf("faults[%d]", i)
		if f.kinds() != 1 {
			bad(field, "needs exactly one of partition, cut, isolate, kill, freeze, pause, skew, degrade, corrupt, backup, disk_full (has %d)", f.kinds())
			continue
		}
		if f.At < 0 || f.For < 0 {
			bad(field, "at and for must be >= 0")
		}
		if f.UntilReplaced && f.Freeze == "" {
			bad(field+".until_replaced", "only goes with freeze")
		}
		for _, r := range []string{f.Backup, corruptRegion(f), diskFullRegion(f)} {
			if r != "" && s.NodesIn(r) > 1 {
				bad(field, "%s faults are for regions of one node (%s has %d)", f.Kind(), r, s.NodesIn(r))
			}
		}
		if f.Wipe && f.Kill == "" {
			bad(field+".wipe", "only goes with kill")
		}
		if f.Restore && (f.Kill == "" || !f.Wipe) {
			bad(field+".restore", "only goes with kill and wipe")
		}
		if f.Restore && !slices.ContainsFunc(s.Faults[:i], func(b Fault) bool { return b.Backup == f.Kill && b.At < f.At }) {
			bad(field+".restore", "needs an earlier backup of %s in the timeline", f.Kill)
		}
		if f.At >= s.Duration {
			bad(field, "at %s is not within the duration %s", f.At, s.Duration)
		}
		switch f.Kind() {
		case "partition":
			if len(f.Partition) != 2 || f.Partition[0] == f.Partition[1] {
				bad(field+".partition", "want two different regions")
			}
			for _, r := range f.Partition {
				known(field+".partition", r)
			}
			if a, b := f.Partition[0], f.Partition[len(f.Partition)-1]; plan != nil && !plan.HasLink(a, b) && !plan.HasLink(b, a) {
				bad(field+".partition", "the %s topology has no link between %s and %s (isolate one instead)", s.Topology.Kind, a, b)
			}
		case "cut":
			link(field+".cut", f.Cut)
		case "isolate":
			known(field+".isolate", f.Isolate)
		case "kill":
			region, _, err := s.Target(f.Kill)
			if err != nil {
				bad(field+".kill", "%v", err)
			} else if f.Restore && s.NodesIn(region) > 1 {
				bad(field+".restore", "restores a region of one node (%s has %d)", region, s.NodesIn(region))
			}
		case "freeze":
			region, node, err := s.Target(f.Freeze)
			if err != nil {
				bad(field+".freeze", "%v", err)
			}
			if s.Mode != Process {
				bad(field+".freeze", "freezing a process (SIGSTOP) needs mode process")
			}
			if f.UntilReplaced && (err != nil || s.NodesIn(region) < 2 || node == "" || node == TargetFollower) {
				bad(field+".until_replaced", "only goes with freezing one node that leads a region of several (REGION/leader, or a node)")
			}
		case "pause":
			known(field+".pause.region", f.Pause.Region)
			known(field+".pause.from", f.Pause.From)
			if plan != nil && !plan.HasLink(f.Pause.From, f.Pause.Region) {
				bad(field+".pause", "the %s topology has no link %s->%s", s.Topology.Kind, f.Pause.From, f.Pause.Region)
			}
		case "skew":
			known(field+".skew.region", f.Skew.Region)
			if s.Mode == Process {
				bad(field+".skew", "clock skew needs the injected clock: use mode in-process")
			}
		case "degrade":
			link(field+".degrade.link", f.Degrade.Link)
			checkProfile(field+".degrade.profile", f.Degrade.Profile)
		case "disk_full":
			known(field+".disk_full.region", f.DiskFull.Region)
		case "corrupt":
			known(field+".corrupt.region", f.Corrupt.Region)
			if f.Corrupt.Keys < 1 {
				bad(field+".corrupt.keys", "must be >= 1")
			}
			if f.For > 0 {
				bad(field+".for", "a corrupt fault is instantaneous")
			}
		case "backup":
			known(field+".backup", f.Backup)
			if f.For > 0 {
				bad(field+".for", "a backup is instantaneous")
			}
		}
	}
	c := s.Checks
	if c.Sessions != nil && (c.Sessions.MaxViolations < 0 || c.Sessions.MaxRatio < 0 || c.Sessions.MaxRatio > 1) {
		bad("checks.sessions", "bounds must be >= 0 (max_ratio a fraction)")
	}
	for rule, b := range c.Conflicts {
		if b.Min < 0 || (b.Max != nil && *b.Max < b.Min) {
			bad("checks.conflicts."+rule, "want 0 <= min <= max")
		}
	}
	if c.AntiEntropy != nil && c.AntiEntropy.MinRepaired < 0 {
		bad("checks.anti_entropy.min_repaired", "must be >= 0")
	}
	if c.Reseeds != nil && (c.Reseeds.Min < 0 || (c.Reseeds.Max != nil && *c.Reseeds.Max < c.Reseeds.Min)) {
		bad("checks.reseeds", "want 0 <= min <= max")
	}
	if err := checkSettings(s.Settings); err != nil {
		errs = append(errs, err)
	}
	if c.MaxWriteErrors != nil && (*c.MaxWriteErrors < 0 || *c.MaxWriteErrors > 1) {
		bad("checks.max_write_errors", "%g is not a fraction in [0, 1]", *c.MaxWriteErrors)
	}
	return errors.Join(errs...)
}
