package conflict

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The tests in this file replay cases from the literature on multi-leader
// replication that geogate must get right, through the real Record API:
// Write for a region's local writes, Apply for replication. Each test's
// comment tells the case; gateway/http_test.go and gateway/replication_test.go
// replay figures 5-13 and 5-9 again through running regions.

// TestScenarioDDIA513ShoppingCart replays figure 5-13 of Designing
// Data-Intensive Applications (Kleppmann, chapter 5, "Capturing the
// happens-before relationship"): two clients share one shopping cart on one
// replica that versions every write. Each write carries the context its
// client got back from its own previous write (none for a client's first),
// and overwrites exactly the values that context covers; the values it did
// not see stay as siblings:
//
//	step  client  writes                        based on  the server holds afterwards
//	1     1       [milk]                        nothing   v1 [milk]
//	2     2       [eggs]                        nothing   v1 [milk], v2 [eggs]
//	3     1       [milk, flour]                 v1        v2 [eggs], v3 [milk, flour]
//	4     2       [eggs, milk, ham]             v2        v3 [milk, flour], v4 [eggs, milk, ham]
//	5     1       [milk, flour, eggs, bacon]    v3        v4 [eggs, milk, ham], v5 [milk, flour, eggs, bacon]
//
// Every answer carries the context of the state after the write, which is
// what its client sends the next time.
func TestScenarioDDIA513ShoppingCart(t *testing.T) {
	const server = "r1~e"
	steps := []struct {
		client  int
		write   string
		withCtx bool     // false: no context; true: the answer to this client's previous write
		want    []string // values on the server afterwards: "v<counter> <value>", in dot order
	}{
		{1, `["milk"]`, false, []string{`v1 ["milk"]`}},
		{2, `["eggs"]`, false, []string{`v1 ["milk"]`, `v2 ["eggs"]`}},
		{1, `["milk","flour"]`, true, []string{`v2 ["eggs"]`, `v3 ["milk","flour"]`}},
		{2, `["eggs","milk","ham"]`, true, []string{`v3 ["milk","flour"]`, `v4 ["eggs","milk","ham"]`}},
		{1, `["milk","flour","eggs","bacon"]`, true, []string{`v4 ["eggs","milk","ham"]`, `v5 ["milk","flour","eggs","bacon"]`}},
	}
	var rec Record
	answers := map[int]VV{} // client -> context returned by its last write
	for i, s := range steps {
		var ctx VV
		if s.withCtx {
			var ok bool
			if ctx, ok = answers[s.client]; !ok {
				t.Fatalf("step %d: client %d has no previous answer", i+1, s.client)
			}
		}
		next, ev, out := writeNext(rec, server, ctx, json.RawMessage(s.write), false, HLC{Wall: baseWall + int64(i)})
		if !out.Added || ev.Version.Dot != (Dot{Actor: server, Counter: uint64(i + 1)}) {
			t.Fatalf("step %d: wrote %s (added %v), want v%d", i+1, ev.Version.Dot, out.Added, i+1)
		}
		rec = next
		answers[s.client] = rec.Context()
		var got []string
		for _, v := range rec.Live() {
			got = append(got, fmt.Sprintf("v%d %s", v.Dot.Counter, v.Value))
		}
		if !slices.Equal(got, s.want) {
			t.Fatalf("step %d (client %d writes %s): server holds %q, want %q", i+1, s.client, s.write, got, s.want)
		}
	}
}

// TestScenarioDDIA57ConcurrentTitleEdits replays figure 5-7 of Designing
// Data-Intensive Applications (a write conflict between two leaders): a
// wiki page's title is "A" in both regions; a user at region 1 changes it
// to "B" while another at region 2 changes it to "C", neither having seen
// the other's edit. After the regions exchange their events, both hold the
// siblings {B, C} (sibling preservation), and last-write-wins picks the same
// one of them in both regions, never B in one and C in the other, whichever
// region's clock runs ahead; the loser is what goes to the conflict log.
func TestScenarioDDIA57ConcurrentTitleEdits(t *testing.T) {
	tests := []struct {
		name         string
		skew1, skew2 int64 // ms each region's physical clock is off
		winner       string
	}{
		{"clocks agree: HLC tie, origin r2 breaks it", 0, 0, `"C"`},
		{"region 2 clock ahead", 0, 5_000, `"C"`},
		{"region 1 clock ahead", 5_000, 0, `"B"`},
		{"region 1 clock behind", -5_000, 0, `"C"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var elapsed int64 // true time since "A" was written, in ms
			c1 := NewClock(func() time.Time { return time.UnixMilli(baseWall + tt.skew1 + elapsed) }, 0)
			c2 := NewClock(func() time.Time { return time.UnixMilli(baseWall + tt.skew2 + elapsed) }, 0)
			var r1, r2 Record
			r1, eA, _ := writeNext(r1, "r1~e", nil, jsonString("A"), false, c1.Now())
			r2, _ = r2.Apply(eA)
			c2.Observe(eA.Version.HLC)
			elapsed = 10

			r1, eB, _ := writeNext(r1, "r1~e", r1.Context(), jsonString("B"), false, c1.Now())
			r2, eC, _ := writeNext(r2, "r2~e", r2.Context(), jsonString("C"), false, c2.Now())
			r1, _ = r1.Apply(eC)
			r2, _ = r2.Apply(eB)

			if !r1.Equal(r2) || !bytes.Equal(r1.MarshalCanonical(), r2.MarshalCanonical()) {
				t.Fatalf("regions diverge: r1 %q, r2 %q", frontier(r1), frontier(r2))
			}
			if got := liveValues(r1); !slices.Equal(got, []string{`"B"`, `"C"`}) {
				t.Fatalf("siblings %q, want B and C (and no A)", got)
			}
			w1, l1 := Collapse(r1.Versions, CompareLWW)
			w2, l2 := Collapse(r2.Versions, CompareLWW)
			if !w1.Equal(w2) || string(w1.Value) != tt.winner {
				t.Fatalf("LWW winners: r1 %s, r2 %s; want %s at both", renderVersion(w1), renderVersion(w2), tt.winner)
			}
			if len(l1) != 1 || len(l2) != 1 || !l1[0].Equal(l2[0]) || l1[0].Dot == w1.Dot {
				t.Fatalf("losers r1 %q, r2 %q; want the other title at both", frontier(Record{Versions: l1}), frontier(Record{Versions: l2}))
			}
		})
	}
}

// TestScenarioDDIA59UpdateOvertakesInsert replays figure 5-9 of Designing
// Data-Intensive Applications (causality across leaders in an all-to-all
// topology): client A inserts a row at region 1; region 3 receives it, and
// client B, reading there, updates the row at region 3. The link from
// region 1 to region 2 is slow, so region 2 receives B's update before A's
// insert. Region 2 must end with the update alone: the late insert is
// recognised as superseded (the update's context covers its dot), neither
// applied on top of the update nor kept beside it as a sibling.
func TestScenarioDDIA59UpdateOvertakesInsert(t *testing.T) {
	var r1, r2, r3 Record
	r1, e1, _ := writeNext(r1, "r1~e", nil, json.RawMessage(`{"row":1,"state":"inserted"}`), false, HLC{Wall: baseWall})
	r3, _ = r3.Apply(e1)
	r3, e2, _ := writeNext(r3, "r3~e", r3.Context(), json.RawMessage(`{"row":1,"state":"updated"}`), false, HLC{Wall: baseWall + 1})
	want := []string{`r3~e:1 {"row":1,"state":"updated"}`}

	r2, out := r2.Apply(e2)
	if !out.Added || !slices.Equal(frontier(r2), want) {
		t.Fatalf("r2 after the update: %q (added %v), want %q", frontier(r2), out.Added, want)
	}
	r2, out = r2.Apply(e1)
	if out.Added || len(out.Superseded) != 0 || !slices.Equal(frontier(r2), want) {
		t.Fatalf("r2 after the late insert: %q (added %v), want %q unchanged", frontier(r2), out.Added, want)
	}
	r1, out = r1.Apply(e2)
	if len(out.Superseded) != 1 || out.Superseded[0].Dot != e1.Version.Dot {
		t.Fatalf("r1: the update superseded %q, want the insert", frontier(Record{Versions: out.Superseded}))
	}
	for name, r := range map[string]Record{"r1": r1, "r3": r3} {
		if !r.Equal(r2) {
			t.Fatalf("%s %q seen %s differs from r2 %q seen %s", name, frontier(r), r.Seen, frontier(r2), r2.Seen)
		}
	}
}

// TestScenarioRiakSiblingExplosion replays Riak's "sibling explosion"
// (riak_test sibling_explosion; the case dotted version vectors were
// introduced for): two writers in two regions each do 100 read-modify-write
// cycles on one key, interleaved, each writing back the union of what it
// read plus a new item, with the context it read. Events cross with a
// delay, in each origin's order. With dots the key never holds more than 2
// siblings, and the union of the final siblings holds every item written;
// the control case writes without contexts and shows siblings piling up
// with every write, as they do in a store that versions by actor alone.
func TestScenarioRiakSiblingExplosion(t *testing.T) {
	tests := []struct {
		name   string
		delay  [2]int // ticks an event from region i takes to reach the other
		jitter int    // extra random ticks per event
		blind  bool   // control: write without context, which must break the bound
		peak   int    // most siblings at any step (the bound of 2 is checked at every step); control: unused
	}{
		{"no delay: never concurrent", [2]int{0, 0}, 0, false, 1},
		{"symmetric delay", [2]int{3, 3}, 2, false, 2},
		{"one slow link", [2]int{0, 25}, 5, false, 2},
		{"control: blind writes pile up", [2]int{1, 1}, 1, true, 0},
	}
	const cycles = 100
	for seed, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 679))
			type inflight struct {
				due int
				ev  Event
			}
			actors := [2]string{"r1~e", "r2~e"}
			var recs [2]Record
			var inbox [2][]inflight // inbox[i]: events on their way to region i, FIFO
			var written []string
			maxSeen := 0
			observe := func(step string) {
				for i, r := range recs {
					maxSeen = max(maxSeen, len(r.Versions))
					if !tt.blind && len(r.Versions) > 2 {
						t.Fatalf("%s: %s holds %d siblings: %q", step, actors[i], len(r.Versions), frontier(r))
					}
				}
			}
			deliver := func(i, now int) {
				for len(inbox[i]) > 0 && inbox[i][0].due <= now {
					recs[i], _ = recs[i].Apply(inbox[i][0].ev)
					inbox[i] = inbox[i][1:]
					observe(fmt.Sprintf("apply at tick %d", now))
				}
			}
			now := 0
			for cycle := range cycles {
				if tt.blind && maxSeen > 2 {
					break // the control has shown what it must
				}
				order := []int{0, 1}
				rng.Shuffle(2, func(a, b int) { order[a], order[b] = order[b], order[a] })
				for _, i := range order {
					now++
					deliver(i, now)
					ctx := recs[i].Context() // read
					var items []string
					for _, v := range recs[i].Live() {
						got, err := itemsOf(v.Value)
						if err != nil {
							t.Fatal(err)
						}
						items = append(items, got...)
					}
					item := fmt.Sprintf("%s-%03d", RegionOf(actors[i]), cycle)
					written = append(written, item)
					if tt.blind {
						ctx = nil
					}
					next, ev, _ := writeNext(recs[i], actors[i], ctx, jsonItems(append(items, item)), false, HLC{Wall: baseWall + int64(now)})
					recs[i] = next
					other := 1 - i
					inbox[other] = append(inbox[other], inflight{due: now + tt.delay[i] + rng.IntN(tt.jitter+1), ev: ev})
					observe(fmt.Sprintf("write %s", item))
				}
			}
			deliver(0, now+1<<20)
			deliver(1, now+1<<20)

			if tt.blind {
				if maxSeen <= 2 {
					t.Fatalf("control stayed at %d siblings: the bound would not catch an explosion", maxSeen)
				}
				return
			}
			if maxSeen != tt.peak {
				t.Fatalf("at most %d siblings at any step, want %d", maxSeen, tt.peak)
			}
			if !recs[0].Equal(recs[1]) {
				t.Fatalf("regions diverge: %q vs %q", frontier(recs[0]), frontier(recs[1]))
			}
			var union []string
			for _, v := range recs[0].Live() {
				got, err := itemsOf(v.Value)
				if err != nil {
					t.Fatal(err)
				}
				union = append(union, got...)
			}
			slices.Sort(union)
			union = slices.Compact(union)
			slices.Sort(written)
			if !slices.Equal(union, written) {
				t.Fatalf("final siblings hold %d items, want all %d written", len(union), len(written))
			}
		})
	}
}

// TestScenarioRiakKV679 replays Riak issue KV679 (data loss after a node
// loses its data): a region writes, the others apply its write, then the
// region's store is wiped and it restarts while the others still hold
// versions with its old dots. Counting from zero again under its old actor
// would give its next write a dot the others consider already seen, and
// they would drop it. Restarting under a new epoch gives it a new actor, so
// its next write reaches everyone.
func TestScenarioRiakKV679(t *testing.T) {
	tests := []struct {
		name        string
		restartAs   string
		overwritten bool // region 2 overwrote the old version before the wipe
		wantAdded   bool
	}{
		{"new epoch", Actor("r1", "e2"), false, true},
		{"new epoch, old version overwritten elsewhere", Actor("r1", "e2"), true, true},
		{"old actor reused: write dropped", Actor("r1", "e1"), false, false},
		{"old actor reused, old version overwritten: write dropped", Actor("r1", "e1"), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r2, r3 Record
			var log []Event // everything r2 and r3 hold, for the wiped region to catch up from
			// Region 1's state before the wipe is lost: only its event survives, at the others.
			_, e, _ := writeNext(Record{}, Actor("r1", "e1"), nil, jsonString("before wipe"), false, HLC{Wall: baseWall})
			log = append(log, e)
			r2, _ = r2.Apply(e)
			r3, _ = r3.Apply(e)
			if tt.overwritten {
				var u Event
				r2, u, _ = writeNext(r2, Actor("r2", "e1"), r2.Context(), jsonString("r2 update"), false, HLC{Wall: baseWall + 1})
				r3, _ = r3.Apply(u)
				log = append(log, u)
			}
			// The store is wiped: region 1 starts over from an empty record.
			r1, w, _ := writeNext(Record{}, tt.restartAs, nil, jsonString("after wipe"), false, HLC{Wall: baseWall + 2})

			for name, r := range map[string]*Record{"r2": &r2, "r3": &r3} {
				var out Outcome
				*r, out = r.Apply(w)
				if out.Added != tt.wantAdded {
					t.Fatalf("%s: Added = %v, want %v (dot %s)", name, out.Added, tt.wantAdded, w.Version.Dot)
				}
				if has := slices.Contains(liveValues(*r), `"after wipe"`); has != tt.wantAdded {
					t.Fatalf("%s holds %q: the post-wipe write present = %v, want %v", name, frontier(*r), has, tt.wantAdded)
				}
			}
			// Region 1 catches up. With a fresh actor every region ends Equal
			// and holding the post-wipe write; with the reused one the write
			// is lost somewhere (or the regions diverge for good).
			r1 = applyAll(r1, log)
			kept := r1.Equal(r2) && r2.Equal(r3) && slices.Contains(liveValues(r1), `"after wipe"`)
			if kept != tt.wantAdded {
				t.Fatalf("converged with the write kept = %v, want %v\nr1 %q\nr2 %q\nr3 %q", kept, tt.wantAdded, frontier(r1), frontier(r2), frontier(r3))
			}
		})
	}
}

// TestScenarioCouchDBManyLeaves replays CouchDB's documents with many
// conflicting leaves (CouchDB keeps every conflicting revision of a
// document and replicates them all): keys with 10, 100 and 210 concurrent
// versions replicate intact. Two different
// arrival orders, one with duplicates, give Equal records holding every
// version, so every region ends with the same full sibling set, and
// last-write-wins picks the same winner from it.
func TestScenarioCouchDBManyLeaves(t *testing.T) {
	const actors = 210
	events := make([]Event, actors)
	for i := range actors {
		actor := Actor(fmt.Sprintf("r%03d", i), "e")
		_, ev, _ := writeNext(Record{}, actor, nil, jsonString(actor), false, HLC{Wall: baseWall + int64(i%7), Logical: uint32(i % 3)})
		ev.Key, ev.OSeq = "doc", 1
		events[i] = ev
	}
	for _, n := range []int{10, 100, 210} {
		t.Run(fmt.Sprintf("%d leaves", n), func(t *testing.T) {
			forward := events[:n]
			rng := rand.New(rand.NewPCG(uint64(n), 210))
			shuffled := slices.Concat(forward, forward[:n/2]) // every other leaf arrives twice
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

			a := applyAll(Record{}, forward)
			b := applyAll(Record{}, shuffled)
			if !a.Equal(b) || !bytes.Equal(a.MarshalCanonical(), b.MarshalCanonical()) {
				t.Fatalf("orders diverge: %d vs %d versions", len(a.Versions), len(b.Versions))
			}
			if len(a.Versions) != n || len(a.Live()) != n {
				t.Fatalf("%d versions (%d live), want %d", len(a.Versions), len(a.Live()), n)
			}
			for _, e := range forward {
				if !slices.ContainsFunc(a.Versions, e.Version.Equal) {
					t.Fatalf("leaf %s missing", e.Version.Dot)
				}
			}
			wa, _ := Collapse(a.Versions, CompareLWW)
			wb, _ := Collapse(b.Versions, CompareLWW)
			if !wa.Equal(wb) {
				t.Fatalf("LWW winners differ: %s vs %s", wa.Dot, wb.Dot)
			}
		})
	}
}
