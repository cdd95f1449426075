package link

import (
	"fmt"
	"strings"
)

// Mode selects what makes a published outbox entry safe to trim: the
// stream's publish acknowledgement (ModeStream) or every downstream region
// having applied it (ModeOutbox): the two ways to make the log durable that
// docs/architecture.md compares.
type Mode string

const (
	// ModeStream trims an outbox entry as soon as JetStream acknowledges its
	// publish. It is the default (the zero Mode means ModeStream).
	//
	// Guarantee: the stream is the only copy once the ack arrives, so the
	// stream must be durable at ack time: an embedded server with
	// ServerOptions.SyncAlways (one fsync per message) or an R3 cluster.
	// Then an acknowledged write (durable in the store, then in the synced
	// stream) is never lost, and a power loss costs nothing but the restart.
	// The price is the rate: one fsync per message caps the log at the
	// disk's synced rate (see TestBenchModes and the README's Benchmarks) and puts the fsync in every event's latency. Without a
	// synced server a power loss can drop the stream's unsynced tail whose
	// entries are already gone from the outbox: those events never reach
	// the other regions (they diverge until re-seeded). A process crash, of
	// the gateway or of NATS, loses nothing in either case (the kernel keeps
	// what was written).
	ModeStream Mode = "stream"

	// ModeOutbox keeps an outbox entry until every downstream consumer
	// (PublisherConfig.Downstream) has finished it, i.e. each downstream
	// region has applied it durably and acked it. The stream may
	// then sync lazily (ServerOptions.SyncInterval, e.g. 1s): it is a
	// transport, and the outbox, synced with each write by the store, is the
	// durable log.
	//
	// Guarantee: an acknowledged write is never lost. A power loss (or a
	// crash of the machine running NATS) can drop the stream's unsynced
	// tail, up to SyncInterval of messages, and the consumers' unsynced
	// state; on restart, or as soon as the running publisher sees the
	// stream's last sequence go below what it had acknowledged, it re-reads
	// the stream's last message (its Geo-Seq and Geo-Acked headers) and
	// republishes every outbox entry after the last position the surviving
	// stream is known to hold. Repeats are dropped by Nats-Msg-Id within the
	// duplicate window and by the receivers' watermarks beyond it; lost
	// consumer state only causes redeliveries, which watermarks also drop.
	// What power loss costs is time and duplicates, not data.
	//
	// The price: the outbox holds every entry until the slowest downstream
	// region applies it, so a region that is down or paused makes the
	// outbox grow (bounded by MaxHold, after which entries are trimmed
	// anyway and that region needs re-seeding, exactly as when the stream's
	// own retention drops what it never read); the publisher asks the
	// server for one stream info and one consumer info per downstream every
	// ReleaseInterval while it holds entries; and a downstream consumer
	// that does not exist yet (its region never connected) holds everything
	// from the start.
	ModeOutbox Mode = "outbox"
)

// ParseMode maps a configuration value to a Mode: "stream" or "outbox"
// (case-insensitive, surrounding spaces ignored); "" means ModeStream.
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToLower(strings.TrimSpace(s))) {
	case "", ModeStream:
		return ModeStream, nil
	case ModeOutbox:
		return ModeOutbox, nil
	}
	return "", fmt.Errorf("unknown replication log mode %q (want %q or %q)", s, ModeStream, ModeOutbox)
}

// String returns the mode's configuration value; the zero Mode is "stream".
func (m Mode) String() string {
	if m == "" {
		return string(ModeStream)
	}
	return string(m)
}
