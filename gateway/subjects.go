package gateway

// The NATS subjects a region uses besides replication. Replication owns
// the geo.<region>.<origin> subjects of the regions' streams (and geo.hb.
// for heartbeats, which is why no region may be named "hb"; see
// topology.CheckRegion); everything else a region serves or publishes
// lives under geogate., outside every stream, so that no region name,
// whatever it is, makes a stream capture it. Peers may publish to a
// region's forward and clock subjects on its server (topology.Plan.Grants
// through natsNames); TestSubjectsOutsideStreams checks the separation.

// forwardSubject is where a region serves writes forwarded to it as their
// home region (request/reply).
func forwardSubject(region string) string { return "geogate.fwd." + region }

// clockSubject is where a region answers clock probes with its physical
// time (Unix milliseconds, JSON {"ms": n}).
func clockSubject(region string) string { return "geogate.clock." + region }

// conflictsSubject is where a region publishes its conflict-log entries.
func conflictsSubject(region string) string { return "geogate.conflicts." + region }

// inboxPrefix is the inbox prefix of a region's connections to its peers'
// servers; its permissions there let it receive only under it.
func inboxPrefix(region string) string { return "_GEO_INBOX." + region }

// nodeSubject is where the leader of a region of several nodes serves its
// followers: forwarded HTTP requests and copies of its store (forward.go).
// Only the region's own identity may publish there.
func nodeSubject(region string) string { return "geogate.node." + region }
