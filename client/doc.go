// Package client is the Go client of geogate's HTTP API. It does for the
// application what the API leaves to clients, so that a program gets
// read-your-writes across regions, monotonic reads and lost-update-free
// writes without handling a token itself:
//
//   - Causal context, per key. Every answer's X-Geo-Context is kept for its
//     key (the join, when answers arrive out of order; the most recently
//     used 10000 keys, WithContextCache), and sent with the next write of
//     the key, so a write supersedes exactly what the client has read or
//     written of the key and nothing it has not seen. Reads check it too:
//     an answer older than what the client already saw of the key (a
//     region behind) is not accepted; the client tries elsewhere.
//   - Session, per client. Every answer's X-Geo-Session is joined into the
//     client's session, which every read and write of a key carries: a read
//     at any region waits until that region has applied everything the
//     client wrote (or answers 503 stale, and the client tries another
//     endpoint). Session and SetSession hand it between processes.
//   - Siblings. A read that shows concurrent values (300) returns them in
//     Value.Siblings; with a Resolver (WithResolver, as a Riak client's
//     conflict resolver) the client settles them and writes the result back
//     with the context that covers them all, so they go away everywhere.
//   - Endpoints. New takes several base URLs (regions, or nodes of a
//     region), the preferred first. A call goes to the endpoint that
//     answered last (the first again after WithFailback's time) and, on a
//     failure another attempt may fix, to the next one at once, then round
//     after round with exponential backoff and full jitter (Retry). 307
//     redirects (a home_region rule's redirect mode) are followed, with the
//     body and the tokens.
//   - Every call takes a context.Context; canceling it ends the call at
//     once, a backoff wait included.
//
// # What is retried
//
// Reads (Get, Meta, List, Status, DeploymentStatus, Conflicts, Health) are retried after any
// transport error and after the answers 503 stale, shutting_down,
// stale_context, clock_skew, home_unreachable, 507 insufficient_storage,
// and a proxy's 502/503/504.
//
// Writes (Put, Delete, PauseLink, ResumeLink) are retried only when they
// were surely not applied: the connection could not be made (the request
// never left), or the server answered one of the codes above, which it
// sends for writes it refused. One exception is documented by the server
// itself: after 503 home_unreachable the home region may still have applied
// a forwarded write (the forward timed out), so the retry can add a second
// version with the same value, never lose one.
//
// A write whose request went out and whose answer never came (the
// connection broke, the attempt timed out, the call's context ended) may
// or may not have been applied, at that region and then everywhere. The
// client does not repeat it elsewhere: it fails with ErrOutcomeUnknown,
// and the caller decides (read the key; write again with the context
// read). WithRetryUnknownWrites retries such writes too (not after the
// call's context ended), for callers whose writes are safe to apply twice:
// under an lww rule a repeated write without context reads the same, under
// siblings it may show the value twice.
//
// # Errors
//
// Every error answer of the API comes back typed: *NotFoundError,
// *BadJSONError, *StaleError, ... one type per code word, each embedding
// *APIError (status, code, message, endpoint, body); a code this client
// does not know comes back as an *APIError. errors.As with an **APIError
// target matches them all. Client-side conditions are sentinel errors:
// ErrOutcomeUnknown, ErrBehind, ErrSiblings, ErrTooManyRedirects,
// ErrInsecureRedirect.
//
// # Security
//
// WithToken sends a bearer token (Authorization: Bearer ...) with every
// request; WithTLSConfig or WithTLSFiles set the CA to trust and a client
// certificate. The token follows redirects, but never from https to http.
//
// # Change feed
//
// Watch follows one region's change feed (GET /v1/watch): every change the
// region applies to keys under a prefix, in the order it applied them, as
// an iterator:
//
//	for ch, err := range c.Watch(ctx, "user/") {
//		if err != nil { ... }    // *PositionGoneError, ErrFeedChanged, ctx's error, ...
//		index(ch.Key, ch.Versions)
//	}
//
// Positions belong to the region that serves the stream (Change.Feed): the
// watch stays with it and, when the stream breaks, reconnects with backoff
// and resumes after the last position it yielded (Last-Event-ID), so no
// change is skipped or repeated. ResumeAfter starts a watch after a kept
// position; a position the region no longer keeps ends the watch with a
// *PositionGoneError (re-read what the watch follows, then watch again).
package client
