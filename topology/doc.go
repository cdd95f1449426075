// Package topology decides how geogate's regions replicate to each other
// (docs/architecture.md). This top-level package is the pure plan: given the
// deployment's regions and the configured kind (all-to-all, star,
// circular), a Plan says which links exist, which origins each link
// carries, which events a region forwards into its own stream, and how
// many hops an event takes. It does no I/O and starts no goroutines; the
// JetStream plumbing that runs the links lives in topology/link and asks
// the Plan every question.
//
// # Streams and subjects
//
// Every region R owns one stream, link.StreamName(R) = "GEO_R", whose subjects
// are link.Subject(R, origin) = "geo.R.origin": R's own writes have origin R,
// and events R forwards keep their original origin. A link From -> To is a
// pull consumer that region To runs on From's stream, filtered to the
// subjects link.Subject(From, o) for o in FilterOrigins(To, From).
//
// # Guarantees
//
// For every Plan built by New, every kind and every number of regions, the
// package's tests simulate the plan as a message-passing system and check:
//
//   - an event written at its origin reaches every other region exactly
//     once, in Hops(origin, dest) link traversals;
//   - an event never enters its origin region again (Accepts is false for
//     at == origin, so the origin is left out of every subject filter);
//   - forwarding terminates: no event circulates.
//
// Loop prevention in the running system has two more layers (the Geo-Path
// header and per-origin watermarks, see package link); the plan is the
// first layer and is correct on its own.
//
// # Degenerate deployments
//
// With one region there are no links and nothing to forward. With two
// regions A and B every kind reduces to the same two links A -> B and
// B -> A and nobody forwards: under star the hub's only spoke is also the
// only possible receiver, so the hub has no one to forward to; under
// circular each region's successor is its predecessor, the origin of every
// event it receives.
package topology
