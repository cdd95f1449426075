package store

import (
	"fmt"
	"testing"
)

// TestKeyFilterNoFalseNegatives: across filter rebuilds (a tiny minimum
// size forces several) and a reopen, a write to an existing key always
// sees its record: under Supersede it leaves exactly one version, where a
// missed lookup would leave the old one beside it.
func TestKeyFilterNoFalseNegatives(t *testing.T) {
	dir := t.TempDir()
	small := func(o *Options) { o.keyFilterMin = 8 }
	s := openTest(t, "us", dir, small)
	const n = 200
	for i := range n {
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("k%d", i), Value: jsonDoc(`%d`, i)})
	}
	if s.keys.limit < n {
		t.Fatalf("filter sized for %d keys after %d writes: it never grew", s.keys.limit, n)
	}
	check := func(s *Store, round int) {
		t.Helper()
		for i := range n {
			key := fmt.Sprintf("k%d", i)
			res := mustWrite(t, s, Mutation{Key: key, Value: jsonDoc(`"r%d"`, round), Supersede: true})
			if len(res.Record.Versions) != 1 || res.Outcome.Added != true || len(res.Outcome.Superseded) != 1 {
				t.Fatalf("round %d, %s: %d versions, %d superseded: the write missed the key's record",
					round, key, len(res.Record.Versions), len(res.Outcome.Superseded))
			}
		}
	}
	check(s, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, "us", dir, small)
	check(s, 2)
}

func TestKeyFilterSkipsLookupOfNewKeys(t *testing.T) {
	s := openTest(t, "us", "", nil)
	mustWrite(t, s, Mutation{Key: "present", Value: jsonDoc(`1`)})
	if !s.keys.mayHave("present") {
		t.Fatal("a written key is not in the filter")
	}
	misses := 0
	for i := range 1000 {
		if s.keys.mayHave(fmt.Sprintf("absent-%d", i)) {
			misses++
		}
	}
	if misses > 50 { // sized for 1% false positives
		t.Fatalf("%d of 1000 absent keys pass the filter", misses)
	}
}
