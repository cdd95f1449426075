package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/geogate/geogate/conflict"
)

func TestList(t *testing.T) {
	s := openTest(t, "us", "", nil)
	for _, k := range []string{"a/3", "b/1", "a/1", "a/0", "a/2", "a", "ab"} {
		mustWrite(t, s, Mutation{Key: k, Value: doc(`%q`, k)})
	}
	mustWrite(t, s, Mutation{Key: "a/0", Deleted: true, Supersede: true})
	mustWrite(t, s, Mutation{Key: "b/9", Deleted: true}) // a tombstone-only record from the start

	cases := []struct {
		prefix, after string
		limit         int
		live          bool
		want          []string
	}{
		{"a/", "", 10, false, []string{"a/0", "a/1", "a/2", "a/3"}},
		{"a/", "", 10, true, []string{"a/1", "a/2", "a/3"}},
		{"a/", "", 2, false, []string{"a/0", "a/1"}},
		{"a/", "", 2, true, []string{"a/1", "a/2"}}, // the limit counts live keys only
		{"a/", "a/1", 10, true, []string{"a/2", "a/3"}},
		{"a/", "a/15", 10, true, []string{"a/2", "a/3"}}, // a cursor that is not a key
		{"a/", "a/3", 10, true, nil},
		{"b/", "a/9", 10, false, []string{"b/1", "b/9"}}, // cursor before the prefix
		{"a/", "b", 10, true, nil},                       // cursor past the prefix
		{"", "", 100, true, []string{"a", "a/1", "a/2", "a/3", "ab", "b/1"}},
		{"", "a/3", 100, false, []string{"ab", "b/1", "b/9"}},
		{"a", "", 100, true, []string{"a", "a/1", "a/2", "a/3", "ab"}},
		{"c/", "", 10, true, nil},
		{"a/", "", 0, true, nil},
	}
	for _, c := range cases {
		got, err := s.List(c.prefix, c.after, c.limit, c.live)
		if err != nil {
			t.Fatalf("List(%q, %q, %d, %v): %v", c.prefix, c.after, c.limit, c.live, err)
		}
		if len(got) != len(c.want) || !slices.Equal(got, c.want) {
			t.Errorf("List(%q, %q, %d, %v) = %q, want %q", c.prefix, c.after, c.limit, c.live, got, c.want)
		}
	}

	// Paging with the cursor visits every key exactly once.
	all, _ := s.List("", "", 100, false)
	var paged []string
	for after := ""; ; {
		page, err := s.List("", after, 2, false)
		if err != nil {
			t.Fatalf("page after %q: %v", after, err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1]
	}
	if !slices.Equal(paged, all) {
		t.Errorf("paged = %q, want %q", paged, all)
	}
}

func TestScan(t *testing.T) {
	s := openTest(t, "us", "", nil)
	for _, k := range []string{"c", "a", "b"} {
		mustWrite(t, s, Mutation{Key: k, Value: doc(`%q`, k)})
	}
	var seen []string
	err := s.Scan(func(key string, rec conflict.Record) bool {
		if live := rec.Live(); len(live) != 1 || string(live[0].Value) != fmt.Sprintf("%q", key) {
			t.Errorf("%s = %+v", key, live)
		}
		seen = append(seen, key)
		return key != "b"
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if !slices.Equal(seen, []string{"a", "b"}) {
		t.Errorf("scan visited %q, want [a b] (stopped at b)", seen)
	}
}

// TestDigestConverges feeds the events of two concurrently writing regions
// to several stores in different orders, with duplicates and early
// (gapped) deliveries, and checks the digests agree.
func TestDigestConverges(t *testing.T) {
	eu := openTest(t, "eu", "", nil)
	ap := openTest(t, "ap", "", nil)
	muts := func(region string) []Mutation {
		var out []Mutation
		for i := range 12 {
			m := Mutation{Key: fmt.Sprintf("k%d", i%5), Value: doc(`{"r":%q,"i":%d}`, region, i)}
			switch i % 4 {
			case 1:
				m.Supersede = true
			case 3:
				m.Deleted, m.Supersede = true, true
			}
			out = append(out, m)
		}
		return out
	}
	a := writeEvents(t, eu, muts("eu")...)
	b := writeEvents(t, ap, muts("ap")...)
	// eu also saw some of ap's writes before writing more (causal links
	// across regions).
	mustApply(t, eu, b[0].incoming(), b[1].incoming(), b[2].incoming())
	a = append(a, writeEvents(t, eu, Mutation{Key: "k0", Value: doc(`"eu late"`), Supersede: true}, Mutation{Key: "k1", Value: doc(`"eu late"`)})...)

	deliver := func(s *Store, order []produced) {
		t.Helper()
		pending := slices.Clone(order)
		for round := 0; len(pending) > 0; round++ {
			if round > len(order) {
				t.Fatalf("delivery did not converge: %d events stuck", len(pending))
			}
			res := mustApply(t, s, incomings(pending)...)
			var next []produced
			for i, r := range res {
				if !r.Done {
					next = append(next, pending[i])
				}
			}
			pending = next
		}
	}

	ref := openTest(t, "us", "", nil)
	deliver(ref, slices.Concat(a, b))
	want, n := digest(t, ref)
	if n != 5 {
		t.Fatalf("reference has %d records, want 5", n)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 4 {
		order := slices.Concat(b, a)
		switch trial {
		case 0: // ap first, then eu
		case 1: // interleaved
			order = interleave(a, b)
		default: // shuffled, with duplicates: gaps wait for redelivery
			order = append(order, a[:3]...)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		s := openTest(t, "us", "", nil)
		deliver(s, order)
		if got, m := digest(t, s); got != want || m != n {
			t.Errorf("trial %d: digest %s (%d records), want %s (%d)", trial, got[:12], m, want[:12], n)
		}
	}

	// One differing record changes the digest, and so does a missing one.
	diff := openTest(t, "us", "", nil)
	deliver(diff, slices.Concat(a, b))
	mustWrite(t, diff, Mutation{Key: "k2", Value: doc(`"us"`)})
	if got, m := digest(t, diff); got == want || m != n {
		t.Errorf("digest with one extra version = %s (%d records), want different from %s with %d records", got[:12], m, want[:12], n)
	}
	short := openTest(t, "us", "", nil)
	deliver(short, slices.Concat(a, b[:len(b)-1]))
	if got, _ := digest(t, short); got == want {
		t.Errorf("digest without ap's last event equals the full one")
	}
}

func incomings(ps []produced) []Incoming {
	out := make([]Incoming, len(ps))
	for i, p := range ps {
		out[i] = p.incoming()
	}
	return out
}

func interleave(a, b []produced) []produced {
	var out []produced
	for i := range max(len(a), len(b)) {
		if i < len(b) {
			out = append(out, b[i])
		}
		if i < len(a) {
			out = append(out, a[i])
		}
	}
	return out
}

func TestWaitApplied(t *testing.T) {
	evs, origin := threeEvents(t)
	s := openTest(t, "us", "", nil)
	mustWrite(t, s, Mutation{Key: "own", Value: doc(`1`)})

	// Already satisfied: own actor and nothing else.
	if missing := s.WaitApplied(context.Background(), conflict.VV{s.Actor(): 1}); missing != nil {
		t.Fatalf("WaitApplied(own 1) = %v, want nil", missing)
	}

	got := make(chan conflict.VV, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got <- s.WaitApplied(ctx, conflict.VV{origin: 2, s.Actor(): 1})
	}()
	mustApply(t, s, evs[0].incoming())
	mustApply(t, s, evs[1].incoming())
	if missing := <-got; missing != nil {
		t.Fatalf("WaitApplied = %v after applying, want nil", missing)
	}

	// On timeout it names exactly what is still missing.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	missing := s.WaitApplied(ctx, conflict.VV{origin: 3, s.Actor(): 1, "ap~0": 4})
	if want := (conflict.VV{origin: 3, "ap~0": 4}); !missing.Equal(want) || len(missing) != 2 {
		t.Fatalf("missing = %v, want %v", missing, want)
	}
}
