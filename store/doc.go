// Package store keeps one region's state in Badger: a record per key (the
// causal frontier of conflict.Record), the outbox (this region's replication
// log, ordered and gapless), an applied watermark per origin actor, the
// conflict log, and metadata (actor epoch, sequences).
//
// # Writes and durability
//
// Every mutation (a local write, a batch of replicated events, an outbox
// trim) goes through one writer at a time. The writer is not a dedicated
// goroutine but a role: a request that finds no writer at work takes it (a
// lone writer so commits without a goroutine hand-off), and a writer passes
// it to the oldest request still queued. The writer takes whatever requests
// are queued (up to Options.MaxBatch), runs them in one Badger transaction,
// commits once and, when Options.Sync is set, fsyncs before it answers any of
// them (group commit). A local write is therefore acknowledged only after its
// record and its outbox entry are durable together; a replicated event is
// acknowledged (and so may be acked to NATS) only after its record, the
// origin's watermark and any forwarded outbox entry are durable together.
// A crash at any point leaves either all of a request's effects or none.
//
// # Words
//
// A commit is one Badger transaction the writer made durable (synced when
// Options.Sync is set). A commit is exposed once reads see it: its read
// timestamp (snapshots.go), the applied positions (Applied, WaitApplied)
// and OutboxHead move after the commit succeeded, never before.
// Publishing is replication's word only: the publisher (package
// topology/link) publishes outbox entries to the region's stream; the
// store never publishes.
//
// # Lifecycle
//
// The same writer merges records from peers (MergeRecords, a join that
// never overwrites), raises watermarks to a snapshot's positions
// (RaiseWatermarks), and deletes records tombstone collection removes
// (CollectTombstones). A snapshot (snapshot.go) is every record at one
// read timestamp with the positions it reflects; Restore fills an empty
// directory from one. Every commit keeps an in-memory digest tree of the
// records up to date (merkle.go) for anti-entropy, and stored records carry
// a checksum: one that fails is never served and is repaired from a peer.
//
// # Key spaces
//
//	d/<key>          record (conflict.Record, AppendRecord's encoding with
//	                 its checksum); deleted only by tombstone collection
//	o/<seq:8>        outbox entry, seq from 1, gapless until trimmed
//	w/<actor>        applied watermark: highest OSeq of actor applied here
//	c/<seq:8>        conflict-log entry
//	k/<key>\x00<seq> conflict-log index by key
//	n/<seq:8>        pending conflict observation (observe.go): a change
//	                 the Observer's Notable accepted, stored with its
//	                 commit, removed when its conflict-log entries are
//	                 appended
//	f/<pos:8>        change log (changes.go): key and dot of each record
//	                 change, pos from 1 in commit order, pruned from the
//	                 oldest (Options.FeedRetention)
//	m/<name>         metadata: actor, seqs (outbox, own-origin and
//	                 conflict-log sequences), trimmed
package store
