package client

import (
	"encoding/json"
	"time"

	"github.com/geogate/geogate/conflict"
)

// The header names of the HTTP API.
const (
	// HeaderContext carries a key's causal context token, in answers to
	// reads and writes of the key and in writes that pass it back.
	HeaderContext = "X-Geo-Context"
	// HeaderSession carries the session token: in write answers, and in
	// requests whose reads must see what the session has seen.
	HeaderSession = "X-Geo-Session"
	// HeaderWait bounds, in milliseconds, how long a read carrying a session
	// waits for the region to catch up.
	HeaderWait = "X-Geo-Wait"
	// HeaderRule names the rule that governs the key read.
	HeaderRule = "X-Geo-Rule"
)

// WriteResult is the answer to a PUT or DELETE of a key, as the server
// writes it (the gateway's write answer; the load generator of the
// benchmarks decodes the same type).
type WriteResult struct {
	Key string `json:"key"`
	// Context is the key's causal context after the write: pass it with the
	// next write of the key (the Client does so by itself).
	Context string `json:"context"`
	// Session names every log position the client has seen, this write
	// included (the Client merges it into its session by itself).
	Session string `json:"session"`
	// Dot names the version the write created, "actor:counter", as Meta's
	// versions show it.
	Dot string `json:"dot"`
	// HLC is the new version's hybrid logical clock: what last-write-wins
	// compares between concurrent versions.
	HLC conflict.HLC `json:"hlc"`
	// Siblings are the live values left concurrent with this write, the
	// new one included; empty when the write left one value. Context covers
	// them: a write with it supersedes them all.
	Siblings []json.RawMessage `json:"siblings,omitempty"`
}

// Value is what a read of a key shows.
type Value struct {
	Key string
	// Data is the visible document: the one value the key's rule shows
	// (status 200), or the value a Resolver made of the siblings.
	Data json.RawMessage
	// Siblings are the concurrent values the rule leaves unresolved (status
	// 300) when no Resolver settled them; Data is then nil.
	Siblings []json.RawMessage
	// Context is the key's causal context as read (after a write-back, the
	// write's).
	Context string
	// Rule names the rule that governs the key.
	Rule string
	// WriteBack is the answer to the write of the resolved value, when a
	// Resolver settled siblings; nil otherwise.
	WriteBack *WriteResult
}

// HasSiblings reports whether the read left concurrent values unresolved.
func (v Value) HasSiblings() bool { return len(v.Siblings) > 0 }

// Decode unmarshals Data into dst. It fails with ErrSiblings when the read
// left siblings unresolved.
func (v Value) Decode(dst any) error {
	if v.HasSiblings() {
		return ErrSiblings
	}
	return json.Unmarshal(v.Data, dst)
}

// Meta is every version of a key's frontier, tombstones included: the
// answer to GET /v1/kv/{key}?meta=true.
type Meta struct {
	Key      string    `json:"key"`
	Context  string    `json:"context"`
	Versions []Version `json:"versions"`
	// Rule names the rule that governs the key.
	Rule string `json:"rule"`
}

// Version is one version of a key's frontier.
type Version struct {
	// Value is the document; null for a tombstone.
	Value json.RawMessage `json:"value"`
	// Origin is the region that accepted the write.
	Origin string `json:"origin"`
	// HLC is the write's hybrid logical clock (wall time in Unix ms and a
	// logical counter).
	HLC     conflict.HLC `json:"hlc"`
	Deleted bool         `json:"deleted"`
	// Dot names the version, "actor:counter".
	Dot string `json:"dot"`
}

// KeyPage is one page of a listing of live keys, in byte order.
type KeyPage struct {
	Keys []string `json:"keys"`
	// Next, when set, is the last key of this page: more keys follow; pass
	// it as ListQuery.After.
	Next string `json:"next,omitempty"`
}

// ListQuery selects a page of keys.
type ListQuery struct {
	// Prefix keeps only keys that start with it.
	Prefix string
	// After starts the page after this key (KeyPage.Next).
	After string
	// Limit is the page size, 1 to 10000; 0 means the server's default
	// (100).
	Limit int
}

// ConflictQuery selects entries of a region's conflict log.
type ConflictQuery struct {
	// Key, if set, keeps only that key's entries.
	Key string
	// Limit is 1 to 10000; 0 means the server's default (100).
	Limit int
}

// ConflictEntry is one entry of a region's conflict log: versions a rule
// collapsed away (or a note, such as a clock-skew flag).
type ConflictEntry struct {
	// Seq is the entry's position in the region's conflict log.
	Seq    uint64 `json:"seq"`
	Key    string `json:"key"`
	Rule   string `json:"rule"`
	Region string `json:"region"`
	// Kept is the version the rule kept, if one.
	Kept      *conflict.Version  `json:"kept,omitempty"`
	Discarded []conflict.Version `json:"discarded"`
	// At is when the region logged it, in Unix milliseconds.
	At   int64  `json:"at"`
	Note string `json:"note,omitempty"`
}

// Status is a region's replication state: the answer to GET /v1/status.
type Status struct {
	Region   string `json:"region"`
	Actor    string `json:"actor"`
	Topology string `json:"topology"`
	// Seq is the region's own last log position.
	Seq uint64 `json:"seq"`
	// Applied is, per origin actor, the highest log position applied here.
	Applied map[string]uint64 `json:"applied"`
	// Outbox counts outbox entries not yet trimmed; Unpublished those not
	// yet stored in the region's stream.
	Outbox      uint64       `json:"outbox_pending"`
	Unpublished uint64       `json:"outbox_unpublished"`
	LogMode     string       `json:"log_mode"`
	Links       []LinkStatus `json:"links"`
	// Rules is the rule set in effect.
	Rules RulesStatus `json:"rules"`
	// Storage is the health of the region's disk.
	Storage StorageStatus `json:"storage"`
	// Publisher is the state of the region's publisher.
	Publisher PublisherStatus `json:"publisher"`
	// Clock is the region's clock measured against its peers'.
	Clock ClockStatus `json:"clock"`
	// URLs maps every region of the deployment to its HTTP base URL, as
	// this region reaches it.
	URLs map[string]string `json:"urls"`
	// Peers is, from DeploymentStatus, every other region's status as this
	// region read it.
	Peers []PeerStatus `json:"peers,omitempty"`
	// Lifecycle shows re-seeding, anti-entropy and tombstone collection.
	Lifecycle LifecycleStatus `json:"lifecycle"`
	// Node is the node that answered; Role is "leader" or "follower";
	// Leader is the node that leads the region ("" during an election);
	// Term grows with every change of leader (0 in a region of one node,
	// whose only node always leads).
	Node   string `json:"node"`
	Role   string `json:"role"`
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
	// NodeState is a region of several nodes' node state: following,
	// copying (loading a copy of the leader's store), waiting (for a
	// leader to copy from), diverged (holds entries the region log lacks;
	// see the README), leading or starting; NodeStateReason says more.
	NodeState       string `json:"node_state,omitempty"`
	NodeStateReason string `json:"node_state_reason,omitempty"`
	// RegionLog is the node's position in its region's log (regions of
	// several nodes).
	RegionLog *RegionLogStatus `json:"region_log,omitempty"`
	// Nodes lists the region's nodes (regions of several nodes).
	Nodes []string `json:"nodes,omitempty"`
}

// RegionLogStatus is a node's place in its region's log.
type RegionLogStatus struct {
	// Position and Term are the last region-log entry the node holds.
	Position uint64 `json:"position"`
	Term     uint64 `json:"term"`
	// LagEntries and LagSeconds are how far a follower is behind the
	// log's end (0 for the leader).
	LagEntries uint64  `json:"lag_entries"`
	LagSeconds float64 `json:"lag_seconds"`
	// Copies counts the copies of the leader's store the node loaded;
	// TermsLed the terms it led since it started.
	Copies   uint64 `json:"copies"`
	TermsLed uint64 `json:"terms_led"`
	// ReadyToLead is true when the node could take over now.
	ReadyToLead bool `json:"ready_to_lead"`
	// FailoverReady (the leader) is true once the region's JetStream
	// streams have their own leaders on other nodes, so that losing this
	// one costs only the lease's expiry.
	FailoverReady bool `json:"failover_ready"`
}

// LifecycleStatus is the lifecycle part of a region's status.
type LifecycleStatus struct {
	// Reseeds maps each peer the region pulls from to its re-seeding.
	Reseeds map[string]ReseedStatus `json:"reseeds"`
	// AntiEntropy shows the comparisons of the region's records with its
	// peers'.
	AntiEntropy AntiEntropyStatus `json:"anti_entropy"`
	// Tombstones shows tombstone collection.
	Tombstones TombstoneStatus `json:"tombstones"`
	// Known maps every region to the applied positions the region last
	// heard it report.
	Known map[string]PositionReport `json:"known"`
}

// ReseedStatus is one link's re-seeding: State is "ok", "behind" (the peer
// has applied events the region waits for, with no progress for
// BehindSeconds) or "reseeding".
type ReseedStatus struct {
	State         string     `json:"state"`
	BehindSeconds float64    `json:"behind_seconds,omitempty"`
	Reseeds       int        `json:"reseeds"`
	Last          *ReseedRun `json:"last,omitempty"`
}

// ReseedRun is one re-seed from a peer's snapshot.
type ReseedRun struct {
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"`
	Records int64     `json:"records"`
	Changed int64     `json:"changed"`
	Bytes   int64     `json:"bytes"`
	Seconds float64   `json:"seconds"`
	Error   string    `json:"error,omitempty"`
}

// AntiEntropyStatus is the anti-entropy part of the lifecycle status.
type AntiEntropyStatus struct {
	IntervalSeconds float64    `json:"interval_seconds"`
	Rounds          int        `json:"rounds"`
	LastFullRound   *time.Time `json:"last_full_round,omitempty"`
	// Differing is, per peer, how many buckets differed in the last
	// comparison (events on their way included).
	Differing map[string]int    `json:"differing"`
	Errors    map[string]string `json:"errors,omitempty"`
	// Corrupt lists keys whose stored record failed its checksum and
	// awaits a repair.
	Corrupt  []string `json:"corrupt,omitempty"`
	Compared uint64   `json:"ranges_compared"`
	Repaired uint64   `json:"keys_repaired"`
}

// TombstoneStatus is the tombstone part of the lifecycle status.
type TombstoneStatus struct {
	GraceSeconds float64 `json:"grace_seconds"`
	Held         int     `json:"held"`
	Collected    int     `json:"collected"`
	// Stable is the causally stable vector: every dot it covers, every
	// region has applied.
	Stable   map[string]uint64 `json:"stable"`
	LastScan *time.Time        `json:"last_scan,omitempty"`
	Error    string            `json:"error,omitempty"`
	// Waiting lists regions whose positions have not been heard yet.
	Waiting []string `json:"waiting,omitempty"`
}

// PositionReport is a region's applied positions as it reported them, At
// its own clock (Unix ms).
type PositionReport struct {
	Applied map[string]uint64 `json:"applied"`
	At      int64             `json:"at"`
}

// ClockStatus is a region's clock measured against its peers'.
type ClockStatus struct {
	// Refusing is true while the region refuses local writes (503
	// clock_skew) because its clock is more than MaxSkewSeconds ahead of
	// most peers.
	Refusing       bool    `json:"refusing"`
	AheadBySeconds float64 `json:"ahead_by_seconds"`
	MaxSkewSeconds float64 `json:"max_skew_seconds"`
	// Peers maps each measured peer to its clock's offset (positive: the
	// peer is ahead) and the probe's round trip.
	Peers map[string]PeerClock `json:"peers"`
}

// PeerClock is one peer's measured clock offset.
type PeerClock struct {
	OffsetSeconds float64   `json:"offset_seconds"`
	RTTSeconds    float64   `json:"rtt_seconds"`
	At            time.Time `json:"at"`
}

// PeerStatus is another region's status as the answering region read it:
// Status, or Error saying why it could not.
type PeerStatus struct {
	Region string  `json:"region"`
	URL    string  `json:"url"`
	Status *Status `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// RulesStatus identifies a region's rule set.
type RulesStatus struct {
	// Hash identifies the rule list: equal in two regions iff they run
	// the same rules.
	Hash  string `json:"hash"`
	Count int    `json:"count"`
	// Source is where the set came from: a file, "config" or "default".
	Source   string    `json:"source"`
	LoadedAt time.Time `json:"loaded_at"`
}

// Link states.
const (
	LinkUp     = "up"
	LinkPaused = "paused"
	LinkDown   = "down"
	// LinkStalled: an event cannot be applied; nothing more is pulled
	// until the link is resumed.
	LinkStalled = "stalled"
	// LinkBlocked: applying fails (e.g. the region's disk is full); the
	// link retries by itself.
	LinkBlocked = "blocked"
	// LinkReseeding: the region merges a snapshot of the peer, whose
	// stream no longer holds events it needs; the link keeps pulling.
	LinkReseeding = "reseeding"
)

// LinkStatus is one inbound replication link of a region.
type LinkStatus struct {
	From  string `json:"from"`
	To    string `json:"to"`
	State string `json:"state"`
	// Pending counts events in the peer's stream not yet applied here.
	Pending uint64 `json:"pending"`
	// LagSeconds is the time since the newest peer heartbeat this link has
	// caught up to.
	LagSeconds    float64   `json:"lag_seconds"`
	Applied       uint64    `json:"applied"`
	Skipped       uint64    `json:"skipped"`
	Waiting       uint64    `json:"waiting"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Fetching      bool      `json:"fetching"`
	// Rejected counts deliveries of events the region could not apply.
	Rejected uint64 `json:"rejected"`
	// Reason says why a blocked link's applies fail.
	Reason string `json:"reason,omitempty"`
	// Stall is the event a stalled link stopped at.
	Stall *LinkStall `json:"stall,omitempty"`
}

// LinkStall describes the event a stalled link stopped at: it stays in
// the peer's stream until the link is resumed.
type LinkStall struct {
	Origin     string    `json:"origin,omitempty"`
	OSeq       uint64    `json:"oseq,omitempty"`
	StreamSeq  uint64    `json:"stream_seq"`
	Reason     string    `json:"reason"`
	Deliveries uint64    `json:"deliveries"`
	Since      time.Time `json:"since"`
}

// StorageStatus is the health of a region's disk.
type StorageStatus struct {
	// State is "ok", "low_space" (writes refused, reads served) or
	// "failed" (everything refused until the region restarts).
	State        string    `json:"state"`
	Reason       string    `json:"reason,omitempty"`
	Since        time.Time `json:"since"`
	FreeBytes    uint64    `json:"free_bytes"`
	MinFreeBytes uint64    `json:"min_free_bytes"`
}

// PublisherStatus is the state of a region's publisher.
type PublisherStatus struct {
	// State is "ok" or "stalled" (publishing keeps failing).
	State         string    `json:"state"`
	Reason        string    `json:"reason,omitempty"`
	Since         time.Time `json:"since,omitempty"`
	BehindSeconds float64   `json:"behind_seconds"`
}
