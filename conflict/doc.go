// Package conflict is geogate's pure causality core: dots, version vectors,
// the frontier of concurrent versions kept per key, local writes and the
// replicated apply, hybrid logical clocks and the deterministic total orders
// used to collapse a frontier to one visible version.
//
// Nothing here does I/O, starts goroutines or reads the wall clock: physical
// time is injected into Clock, and every function is a value-in, value-out
// transformation, so the laws the rest of geogate relies on can be checked
// with property tests:
//
//   - Apply is commutative and idempotent: applying any set of events, with
//     duplicates, in any order, yields one Record (Record.Equal).
//   - VV.Merge is commutative, associative and idempotent.
//   - A write whose context covers a version supersedes it.
//   - Collapse picks from a frontier by a total order that depends on the
//     frontier alone, never on arrival order.
//
// # Model
//
// Every region writes as an actor (see Actor): the region name plus an
// epoch chosen when its store is created, so a region that lost its data
// never reuses a dot (Riak KV679). A Dot (actor, counter) names one version.
// A Record keeps the frontier (the versions not superseded by any context
// seen so far) and Seen, the join of every causal context applied to the key.
// The context handed to clients is Record.Context(): Seen joined with the
// frontier's dots.
package conflict
