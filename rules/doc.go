// Package rules compiles and evaluates operator-written conflict rules in
// expr (DESIGN section 5). It is pure apart from reading rule files: no
// goroutines, no network, no clock.
//
// A rule list is compiled once into a Set (Compile); the first rule whose
// match holds for a key governs it (Set.Match). A Rule answers the
// gateway's questions: the home region of a write (Rule.Home), the region
// that merges (Rule.Resolver), what a read shows for a frontier of
// concurrent versions (Rule.Resolve) and the merged value the resolver
// writes (Rule.MergeOnWrite). Lint checks a rule file and RunTests runs
// its test cases (`geogate rules lint|test`).
//
// # Expression environment
//
// Every expression is type-checked at compile time against the variables
// of its kind; using a variable outside its kind is a compile error.
//
//   - key (string): every expression.
//   - value (the written document; null for a delete whose current value
//     the caller does not know): home.
//   - region (string, the region evaluating): merge, on_read.
//   - siblings ([document], the live versions): select, merge, on_read.
//   - versions ([{value, origin, hlc, deleted}], every version of the
//     frontier, tombstones included): select, merge, on_read.
//   - version ({value, origin, hlc, deleted}, the version being scored):
//     select.
//
// Documents are JSON decoded to objects, arrays, float64 numbers, strings,
// booleans and null. hlc is the version's hybrid logical clock in Unix
// milliseconds; value is null for a tombstone (deleted: true). siblings
// and versions are in dot order (actor name, then counter): deterministic,
// but arbitrary with respect to what the versions mean, so an expression
// should not depend on it (Lint checks). Neither match, home nor select
// sees region: every region must reach the same answer.
//
// Member access is null-safe, as in jq: a field of null is null, so
// `value.region ?? "us-east"` also works for a delete and
// `version.value.updated_at` for a tombstone. A field of a string or a
// number, or an index out of range, is still a run-time error.
//
// Results: match is a bool; home a region name; select a number, a string
// (strings rank lexically among the frontier's scores, so ISO-8601
// timestamps work), a bool (false < true) or null (lowest); merge and
// on_read a JSON document (not null).
//
// # Functions
//
// Besides expr's builtins (map, filter, sortBy, reduce, max, len, ...):
//
//   - union(a, b, ...) or union(listOfArrays): set union with deep
//     equality, first-seen order; null counts as an empty array.
//   - intersect(a, b, ...) or intersect(listOfArrays): the elements present
//     in every array, in the first array's order.
//   - merge(a, b, ...): deep merge of objects, later wins on scalars and
//     arrays; array arguments are lists of objects, null is skipped.
//   - maxBy(array, "path") / minBy(array, "path"): the element whose field
//     at the dotted path is greatest / least; ties broken by the elements'
//     canonical JSON, so the result does not depend on array order.
//   - keys, values, toPairs: as expr's, but in sorted key order.
//   - date(s [, layout [, zone]]): as expr's, but a string without a zone
//     is UTC and the zone "Local" is refused.
//
// now(), timezone() and time.Time's Local() are refused at compile time:
// rules are deterministic.
//
// # Limits
//
// Each expression is bounded to Options.MaxNodes nodes at compile time,
// each evaluation to Options.MemoryBudget (expr's VM budget) and to
// Options.MaxInputBytes of input; merge and on_read results to
// Options.MaxResultBytes. A run-time failure (including a panic, which is
// recovered) never loses a version: Resolve shows the siblings and returns
// the error for the caller to log and count.
package rules
