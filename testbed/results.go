package testbed

import (
	"encoding/json"
	"time"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/store"
)

// AckedWrite is one write a region acknowledged (200). The checkers hold
// the gateway to every one of them.
type AckedWrite struct {
	// ID is the unique id the workload put in the document ("w" field).
	ID string `json:"id"`
	// Key is the key written.
	Key string `json:"key"`
	// Region is where the client sent the write.
	Region string `json:"region"`
	// Node is the node that acknowledged it: the one the answer's
	// X-Geo-Node names (a follower forwarded the write to it), else the
	// node the write was sent to (the region, for a region of one node).
	Node string `json:"node,omitempty"`
	// Dot is the new version's dot, from the write answer's "dot"; zero if
	// the answer had none (then only the ID identifies the version).
	Dot conflict.Dot `json:"dot"`
	// At is when the answer arrived, from the start of the workload.
	At time.Duration `json:"at"`
	// Latency is the request's round trip.
	Latency time.Duration `json:"latency"`
	// Conflict marks a write sent to several regions at once for one hot
	// key.
	Conflict bool `json:"conflict,omitempty"`
	// Probe marks a write the failover watch sent to one node (see
	// Failover), not counted in the workload's figures.
	Probe bool `json:"probe,omitempty"`
	// HLC is the version's hybrid logical clock, from the write answer.
	HLC conflict.HLC `json:"hlc"`
	// AckedUnixMs is the real time the answer arrived (Unix ms, the
	// testbed's own clock, never skewed).
	AckedUnixMs int64 `json:"acked_unix_ms"`
}

// SessionRead is a read of a key just written, sent to another region with
// the write's session token.
type SessionRead struct {
	Key         string        `json:"key"`
	WriteRegion string        `json:"write_region"`
	ReadRegion  string        `json:"read_region"`
	At          time.Duration `json:"at"`
	Latency     time.Duration `json:"latency"`
	// Status is the HTTP status (0: no answer).
	Status int `json:"status"`
	// Violation is empty when the read saw the write's region state;
	// otherwise "stale" (503), "missing" (404) or the error.
	Violation string `json:"violation,omitempty"`
}

// LagSample is one reading of one link's lag from GET /v1/status.
type LagSample struct {
	// At is the time from the start of the workload.
	At time.Duration `json:"at"`
	// Link is "from->to".
	Link    string  `json:"link"`
	Lag     float64 `json:"lag"` // seconds
	Pending uint64  `json:"pending"`
	State   string  `json:"state"`
}

// RegionState is one region's data after quiescence: what the checkers
// judge.
type RegionState struct {
	Region string `json:"region"`
	// Digest is the store's digest of every record (store.Store.Digest).
	Digest []byte `json:"digest"`
	// Records holds every record by key.
	Records map[string]conflict.Record `json:"-"`
	// Conflicts is the region's conflict log.
	Conflicts []store.ConflictEntry `json:"-"`
}

// LifecycleStats are what one region's lifecycle did in a run (its status's
// lifecycle section, read after quiescence).
type LifecycleStats struct {
	// Repaired counts records anti-entropy changed in the region.
	Repaired uint64 `json:"keys_repaired"`
	// Compared counts digest-tree nodes compared with peers.
	Compared uint64 `json:"ranges_compared"`
	// Reseeds counts re-seeds from a peer's snapshot.
	Reseeds int `json:"reseeds"`
	// Collected counts records tombstone collection removed.
	Collected int `json:"tombstones_collected"`
	// Damaged counts the records corrupt faults damaged in the region.
	Damaged int `json:"damaged"`
}

// WorkloadStats count what the workload did.
type WorkloadStats struct {
	Ops            uint64         `json:"ops"`
	Writes         uint64         `json:"writes"`
	Acked          uint64         `json:"acked"`
	ConflictWrites uint64         `json:"conflict_writes"`
	WriteErrors    map[string]int `json:"write_errors"`
	// WriteErrorSamples holds the first error of each reason in
	// WriteErrors, as the client reported it.
	WriteErrorSamples map[string]string `json:"write_error_samples,omitempty"`
	Reads             map[string]int    `json:"reads"` // by status or error reason
	SessionReads      uint64            `json:"session_reads"`
	// DotsUnknown counts acked writes whose dot the answer did not yield.
	DotsUnknown uint64 `json:"dots_unknown"`
	// WriteLatency summarises acked writes' round trips (ms).
	WriteLatency Percentiles `json:"write_latency_ms"`
}

// valueID extracts the workload's id ("w") from a written document, or "".
func valueID(v json.RawMessage) string {
	if len(v) == 0 {
		return ""
	}
	var doc struct {
		W string `json:"w"`
	}
	if json.Unmarshal(v, &doc) != nil {
		return ""
	}
	return doc.W
}
