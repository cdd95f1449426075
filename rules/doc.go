// Package rules compiles and evaluates operator-written conflict rules in
// expr (https://expr-lang.org). It is pure apart from reading rule files: no
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
// The expression language as operators see it (the variables each kind of
// expression sees, the functions library.go adds, the results each kind
// must give, the limits) is documented once, in README.md, section
// "Rules", "Expressions"; env.go and library.go are its implementation.
// The contract the rest of the code relies on:
//
//   - Every expression is type-checked at compile time against the
//     variables of its kind, so a Set that compiled fails at run time only
//     on data (a field of a string, an index out of range, a budget).
//   - Evaluation is deterministic: now(), timezone() and Local() are
//     refused at compile time, map iteration is sorted, and match, home
//     and select do not see the evaluating region, so every region reaches
//     the same answer from the same versions.
//   - Each expression is bounded to Options.MaxNodes nodes at compile time,
//     each evaluation to Options.MemoryBudget and Options.MaxInputBytes of
//     input, merge and on_read results to Options.MaxResultBytes.
//   - A run-time failure (including a recovered panic) never loses a
//     version: Resolve shows the siblings and returns the error for the
//     caller to log and count.
package rules
