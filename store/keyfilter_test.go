package store

import (
	"fmt"
	"testing"
)

// TestKeyFilterNoFalseNegatives: across filter growth (a tiny minimum
// size forces several layers) and a reopen, a write to an existing key always
// sees its record: under Supersede it leaves exactly one version, where a
// missed lookup would leave the old one beside it.
func TestKeyFilterNoFalseNegatives(t *testing.T) {
	dir := t.TempDir()
	small := func(o *testOpts) { o.keyFilterMin = 8 }
	s := openTest(t, "us", dir, small)
	const n = 200
	for i := range n {
		mustWrite(t, s, Mutation{Key: fmt.Sprintf("k%d", i), Value: doc(`%d`, i)})
	}
	if len(s.keys.layers) < 3 {
		t.Fatalf("filter has %d layers after %d writes with a first layer of 8 keys: it never grew", len(s.keys.layers), n)
	}
	check := func(s *Store, round int) {
		t.Helper()
		for i := range n {
			key := fmt.Sprintf("k%d", i)
			res := mustWrite(t, s, Mutation{Key: key, Value: doc(`"r%d"`, round), Supersede: true})
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
	mustWrite(t, s, Mutation{Key: "present", Value: doc(`1`)})
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

// TestKeyFilterGrowthKeepsRate: a filter that grows from a tiny first layer
// through many layers has no false negatives and stays near its rate
// (below 2*keyFilterFP in theory; checked with slack for chance).
func TestKeyFilterGrowthKeepsRate(t *testing.T) {
	k := newEmptyKeyFilter(64)
	const n = 100_000
	for i := range n {
		k.testOrAdd(fmt.Sprintf("present-%d", i))
	}
	if len(k.layers) < 8 {
		t.Fatalf("%d layers for %d keys from a first layer of 64", len(k.layers), n)
	}
	for i := range n {
		if !k.mayHave(fmt.Sprintf("present-%d", i)) {
			t.Fatalf("present-%d: false negative", i)
		}
	}
	fp := 0
	const probes = 100_000
	for i := range probes {
		if k.mayHave(fmt.Sprintf("absent-%d", i)) {
			fp++
		}
	}
	rate := float64(fp) / probes
	t.Logf("%d layers, false-positive rate %.4f", len(k.layers), rate)
	if rate > 3*keyFilterFP {
		t.Fatalf("false-positive rate %.4f over %d layers, want about %.4f or less", rate, len(k.layers), 2*keyFilterFP)
	}
}
