// Package link is the JetStream plumbing of geogate's replication: the
// embedded NATS server, the publisher that ships a region's outbox into its
// stream, and the inbound links that pull a peer's stream into an Applier.
// It knows nothing of records or rules: event payloads are opaque bytes, and
// which links exist and which origins each carries is decided by the caller
// (the topology plan).
//
// # Wire format
//
// Region R owns one stream, StreamName(R) = GEO_<R>, capturing
// geo.<R>.<originRegion> (StreamSubjects). Each message carries
//
//	Nats-Msg-Id: <originActor>:<oseq>   deduplication (MsgID)
//	Geo-Origin:  <originActor>           e.g. us-east~a1b2c3
//	Geo-OSeq:    <oseq>
//	Geo-Path:    r1,r2,...,R             regions visited, the stream's region last
//
// and heartbeats go on the core subject geo.hb.<R> (HeartbeatSubject) as
// JSON (Heartbeat). A region may therefore not be called "hb".
//
// # Guarantees
//
// Publisher: an outbox entry is trimmed only after JetStream acknowledged
// it; after a crash the untrimmed tail is republished with the same message
// IDs. Within the stream's duplicate window (2 minutes by default) JetStream
// stores one copy; beyond it the copy is stored again and the consumer's
// per-origin watermark drops it. Order is kept by publishing on one
// connection; a failed publish can let a later entry land first, which a
// consumer sees as a gap. (The design's alternative, expected-last-sequence
// on every publish, would serialise the pipeline on failures and cannot tell
// a crash-duplicate from a real conflict; message IDs plus watermarks cover
// both cases.)
//
// Link: a message is acked only after Applier.Apply returned it done, so a
// crash anywhere leads to redelivery, never to loss; the Applier is
// idempotent by watermark. Messages Apply leaves waiting are Nak'd with a
// short delay and come back. Loop prevention: filters exclude the
// receiver's own origin, a Geo-Path holding the receiver is acked unapplied,
// and watermarks make any repeat a no-op.
//
// Durability of the stream itself is the server's. With
// ServerOptions.SyncAlways every message is fsynced before its publish ack,
// so trimming on the ack is safe even against a machine crash (DESIGN.md
// section 4, option a). Without it an ack means the message reached the
// server's page cache: a process crash loses nothing, a machine crash can
// lose JetStream's unsynced tail. For option b the caller's TrimOutbox
// records the published position (ReadOutbox then starts after it) but
// deletes entries only once every downstream region reports them applied,
// so a tail JetStream lost can be replayed from the outbox.
//
// # Performance
//
// Publishes are asynchronous with a window of acks in flight; the outbox is
// trimmed once per run of contiguous acks. Links pull through an iterator
// that keeps Prefetch messages requested ahead, hand up to Batch messages to
// one Apply call, and ack each message without waiting for a confirmation.
// BenchmarkRawJetStream, BenchmarkLink and BenchmarkLinkCatchUp measure the
// ratio to raw JetStream in one run.
package link
