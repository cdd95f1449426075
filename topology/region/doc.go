// Package region runs the nodes of one region on the NATS cluster they
// form: a leader lease in a replicated JetStream key-value bucket (Lease),
// the region log in a replicated JetStream stream that only the leader
// appends to, fenced by the expected last sequence (Log), and the election
// that ties them (Elector). It knows nothing of records or stores: log
// entries are opaque bytes, and what a node does when it leads or follows
// is its caller's (Hooks).
//
// # Guarantees
//
//   - At most one node's appends succeed after a change of leader: a new
//     leader appends a term marker after the last entry before it takes
//     writes, and every later append by an older leader names a last
//     sequence the log has moved past, which the stream refuses
//     (ErrFenced). A write the leader acknowledges only after its append
//     succeeded is therefore in the log, and in every node that applies
//     the log, whatever happens to the leader.
//   - An append is acknowledged once a majority of the region's nodes
//     stored it, so the loss of a minority of nodes loses no acknowledged
//     write.
//   - Terms only grow: a new term is one past the highest term in the log
//     and in the lease.
//   - A leader that finds its lease taken stops at once. One that cannot
//     reach the lease's bucket for a while (its stream electing a leader)
//     leads on: it acknowledges only what it appended to the log, which a
//     successor's marker fences off, so two leaders never both
//     acknowledge; and it takes the lease back if it expired unclaimed.
package region
