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
//	Nats-Msg-Id: <originActor>:<oseq>   deduplication (MsgID); also how a
//	                                     link learns the origin actor (e.g.
//	                                     us-east~a1b2c3) and its sequence
//	Geo-Path:    r1,r2,...,R             regions visited, the stream's region last
//	Geo-Seq:     <outbox seq>            the entry's position in R's outbox
//	Geo-Acked:   <outbox seq>            outbox prefix acknowledged when sent
//	Geo-Acked-Seq: <stream seq>          highest stream sequence of that prefix
//
// The last three are read back only by R's publisher, to resume after a
// restart or a lost stream tail (see ModeOutbox). Heartbeats go on the core
// subject geo.hb.<R> (HeartbeatSubject) as JSON (Heartbeat). A region may
// therefore not be called "hb".
//
// # Guarantees
//
// Publisher: an outbox entry is trimmed only after JetStream acknowledged
// it; after a crash the untrimmed tail is republished with the same message
// IDs. Within the stream's duplicate window (DuplicateWindow) JetStream
// stores one copy; beyond it the copy is stored again and the consumer's
// per-origin watermark drops it. Order is kept by publishing on one
// connection; a failed publish can let a later entry land first, which a
// consumer sees as a gap. (The alternative, expected-last-sequence on every
// publish, would serialise the pipeline on failures and cannot tell
// a crash-duplicate from a real conflict; message IDs plus watermarks cover
// both cases.)
//
// Link: a message is acked only after Applier.Apply returned it done, so a
// crash anywhere leads to redelivery, never to loss; the Applier is
// idempotent by watermark. Messages Apply leaves waiting behind a gap are
// parked unacked (their ack deadline extended) and offered again the moment
// their origin advances. Loop prevention: filters exclude the
// receiver's own origin, a Geo-Path holding the receiver is acked unapplied,
// and watermarks make any repeat a no-op.
//
// Durability of the log has two modes (PublisherConfig.Mode;
// docs/architecture.md compares them, the README's Benchmarks measure
// both). ModeStream trims an entry on its publish ack, so the stream must
// be synced (ServerOptions.SyncAlways, one fsync per message, or an R3
// cluster). ModeOutbox keeps an entry in the outbox until every downstream
// consumer has acked it (the downstream region applied it durably), so the
// server may sync lazily (ServerOptions.SyncInterval): a tail the stream
// loses to a power loss is noticed and republished from the outbox. In
// both an acknowledged write is never lost; see ModeStream and ModeOutbox
// for what each costs.
//
// # Performance
//
// Publishes are asynchronous with a window of acks in flight; the outbox is
// trimmed once per run of contiguous acks. Links pull through an iterator
// that keeps 4*Batch messages requested ahead, hand up to Batch messages to
// one Apply call, and ack each message without waiting for a confirmation.
// BenchmarkRawJetStream, BenchmarkLink and BenchmarkLinkCatchUp measure the
// ratio to raw JetStream in one run; TestBenchModes (GEOGATE_BENCH=1)
// compares the two durability modes (ModeStream's per-message fsync caps
// the log near the disk's synced rate; ModeOutbox holds about
// ReleaseInterval worth of entries in the outbox). The figures measured on
// the development machine are in the README's Benchmarks section.
package link
