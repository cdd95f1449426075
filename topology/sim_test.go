package topology

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// router is what the simulator needs from a plan, so tests can run it on
// deliberately broken variants and check that it notices.
type router interface {
	Regions() []string
	Links() []Link
	Accepts(at, from, origin string) bool
	Forwards(at, from, origin string) bool
}

// simMsg is one event in a simulated stream: its origin and the regions it
// has been applied at so far, origin first (the Geo-Path header).
type simMsg struct {
	origin string
	path   []string
}

// simResult is what the simulation observed once quiescent.
type simResult struct {
	received map[string]map[string]int // at -> origin -> times applied
	hops     map[Link]int              // {origin, dest} -> links crossed at first arrival
	streams  map[string][]simMsg       // region -> its stream, in append order
}

// errNoQuiescence means events kept circulating: a forwarding loop.
var errNoQuiescence = errors.New("no quiescence: forwarding loop")

// simulate runs r as a message-passing system: every region appends one
// event of its own to its stream; then, until no link has an unread
// message, pick (the index of) a link with an unread message, read its next
// message, apply it at the link's receiver if Accepts says so, and append
// it to the receiver's stream if Forwards says so. It stops with
// errNoQuiescence after a bound far above what a correct plan needs
// (n*n deliveries), and reports every event applied at a region already
// on its path as an error alongside the result.
func simulate(r router, pick func(n int) int) (simResult, error) {
	regions := r.Regions()
	links := r.Links()
	res := simResult{
		received: map[string]map[string]int{},
		hops:     map[Link]int{},
		streams:  map[string][]simMsg{},
	}
	for _, reg := range regions {
		res.received[reg] = map[string]int{}
		res.streams[reg] = []simMsg{{origin: reg, path: []string{reg}}}
	}
	cursor := map[Link]int{}
	var errs []error
	limit := 4 * len(regions) * len(regions)
	for steps := 0; ; steps++ {
		var ready []Link
		for _, l := range links {
			if cursor[l] < len(res.streams[l.From]) {
				ready = append(ready, l)
			}
		}
		if len(ready) == 0 {
			return res, errors.Join(errs...)
		}
		if steps > limit {
			errs = append(errs, fmt.Errorf("%w: %d messages read", errNoQuiescence, steps))
			return res, errors.Join(errs...)
		}
		l := ready[pick(len(ready))]
		m := res.streams[l.From][cursor[l]]
		cursor[l]++
		if !r.Accepts(l.To, l.From, m.origin) {
			continue
		}
		if slices.Contains(m.path, l.To) {
			errs = append(errs, fmt.Errorf("event of %s re-entered %s over %s (path %v)", m.origin, l.To, l, m.path))
		}
		res.received[l.To][m.origin]++
		key := Link{From: m.origin, To: l.To}
		if _, seen := res.hops[key]; !seen {
			res.hops[key] = len(m.path)
		}
		if r.Forwards(l.To, l.From, m.origin) {
			path := append(slices.Clone(m.path), l.To)
			res.streams[l.To] = append(res.streams[l.To], simMsg{origin: m.origin, path: path})
		}
	}
}

// checkDelivery checks the simulation of p: every event reached every other
// region exactly once, in p.Hops links, and never its origin.
func checkDelivery(p *Plan, res simResult) error {
	var errs []error
	for _, origin := range p.Regions() {
		for _, dest := range p.Regions() {
			got := res.received[dest][origin]
			switch {
			case dest == origin && got != 0:
				errs = append(errs, fmt.Errorf("event of %s came back to it %d times", origin, got))
			case dest != origin && got != 1:
				errs = append(errs, fmt.Errorf("event of %s applied at %s %d times, want once", origin, dest, got))
			case dest != origin && res.hops[Link{From: origin, To: dest}] != p.Hops(origin, dest):
				errs = append(errs, fmt.Errorf("event of %s reached %s in %d hops, Hops says %d",
					origin, dest, res.hops[Link{From: origin, To: dest}], p.Hops(origin, dest)))
			}
		}
	}
	return errors.Join(errs...)
}

// genRegions draws n distinct valid region names.
func genRegions(t *rapid.T, minN, maxN int) []string {
	name := rapid.StringMatching(`[a-z0-9-]{1,12}`).Filter(func(s string) bool { return s != ReservedRegion })
	return rapid.SliceOfNDistinct(name, minN, maxN, rapid.ID[string]).Draw(t, "regions")
}

// genPlan draws a valid plan of kind with minN..maxN regions, a random hub
// and (for circular) a random or default order.
func genPlan(t *rapid.T, kind Kind, minN, maxN int) *Plan {
	regions := genRegions(t, minN, maxN)
	spec := Spec{Kind: kind}
	if kind == Star {
		spec.Hub = rapid.SampledFrom(regions).Draw(t, "hub")
	}
	if kind == Circular && rapid.Bool().Draw(t, "explicit order") {
		spec.Order = rapid.Permutation(regions).Draw(t, "order")
	}
	p, err := New(regions, spec)
	if err != nil {
		t.Fatalf("New(%v, %+v): %v", regions, spec, err)
	}
	return p
}

func drawPick(t *rapid.T) func(int) int {
	return func(n int) int { return rapid.IntRange(0, n-1).Draw(t, "link") }
}

func firstReady(int) int { return 0 }

// TestSimulationDeliversExactlyOnce is the central property: for every kind
// and 1..7 regions, with links served in any interleaving, every event
// reaches every other region exactly once in Hops links, never returns to
// its origin, and the system goes quiet.
func TestSimulationDeliversExactlyOnce(t *testing.T) {
	for _, kind := range Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				p := genPlan(t, kind, 1, 7)
				res, err := simulate(p, drawPick(t))
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if err := checkDelivery(p, res); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				// Circular: the farthest region is n-1 hops away.
				if kind == Circular && len(p.Regions()) > 1 {
					o := p.Order()
					if h := p.Hops(o[0], o[len(o)-1]); h != len(o)-1 {
						t.Fatalf("%s: farthest region %d hops away, want %d", p, h, len(o)-1)
					}
				}
			})
		})
	}
}

// TestSimulationStreamsMatchFilters checks that what actually lands in each
// stream during a simulation is what the filters assume: a consumer's
// FilterOrigins is exactly the stream's origins minus the receiver, so no
// event is filtered out that should be applied, and none is carried that
// nobody reads.
func TestSimulationStreamsMatchFilters(t *testing.T) {
	for _, kind := range Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				p := genPlan(t, kind, 1, 7)
				res, err := simulate(p, firstReady)
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range p.Links() {
					var want []string
					for _, m := range res.streams[l.From] {
						if m.origin != l.To {
							want = append(want, m.origin)
						}
					}
					slices.Sort(want)
					if got := p.FilterOrigins(l.To, l.From); !slices.Equal(got, want) {
						t.Fatalf("%s: FilterOrigins(%s, %s) = %v, stream carries %v", p, l.To, l.From, got, want)
					}
				}
				// Every event forwarded into a stream is read by someone.
				for reg, stream := range res.streams {
					for _, m := range stream[1:] {
						read := false
						for _, l := range p.Outbound(reg) {
							read = read || p.Accepts(l.To, reg, m.origin)
						}
						if !read {
							t.Fatalf("%s: %s forwards events of %s that nobody consumes", p, reg, m.origin)
						}
					}
				}
			})
		})
	}
}

// brokenRouter wraps a plan with replaced Accepts/Forwards, to check that
// the simulation and its checks catch loops, duplicates and losses.
type brokenRouter struct {
	*Plan
	accepts  func(at, from, origin string) bool
	forwards func(at, from, origin string) bool
}

func (b brokenRouter) Accepts(at, from, origin string) bool {
	if b.accepts != nil {
		return b.accepts(at, from, origin)
	}
	return b.Plan.Accepts(at, from, origin)
}

func (b brokenRouter) Forwards(at, from, origin string) bool {
	if b.forwards != nil {
		return b.forwards(at, from, origin)
	}
	return b.Plan.Forwards(at, from, origin)
}

func mustNew(t testing.TB, regions []string, spec Spec) *Plan {
	t.Helper()
	p, err := New(regions, spec)
	if err != nil {
		t.Fatalf("New(%v, %+v): %v", regions, spec, err)
	}
	return p
}

// TestSimulationCatchesBrokenPlans runs the simulator on plans with a
// deliberately broken rule and requires it to report the failure: the
// property test above is only worth something if it can fail.
func TestSimulationCatchesBrokenPlans(t *testing.T) {
	regions := []string{"us-east", "eu-west", "ap-south", "sa-east"}
	circular := mustNew(t, regions, Spec{Kind: Circular})
	star := mustNew(t, regions, Spec{Kind: Star, Hub: "us-east"})
	all := mustNew(t, regions, Spec{Kind: AllToAll})
	acceptEverything := func(p *Plan) func(at, from, origin string) bool {
		return func(at, from, origin string) bool { return p.HasLink(from, at) }
	}
	acceptAllButOwn := func(p *Plan) func(at, from, origin string) bool {
		return func(at, from, origin string) bool { return p.HasLink(from, at) && at != origin }
	}
	always := func(at, from, origin string) bool { return true }
	never := func(at, from, origin string) bool { return false }

	tests := []struct {
		name     string
		r        brokenRouter
		wantLoop bool   // simulate itself must fail with errNoQuiescence
		want     string // in the reported error
	}{
		{"circular: no own-origin filter, forward everything", brokenRouter{circular, acceptEverything(circular), always}, true, "re-entered"},
		{"circular: forwards nothing", brokenRouter{circular, nil, never}, false, "0 times, want once"},
		{"star: spokes take their own events back", brokenRouter{star, acceptEverything(star), nil}, false, "came back"},
		{"star: hub forwards nothing", brokenRouter{star, nil, never}, false, "0 times, want once"},
		{"star: no own-origin filter, spokes forward too", brokenRouter{star, acceptEverything(star), always}, true, "re-entered"},
		{"all-to-all: everyone forwards, loose filters", brokenRouter{all, acceptAllButOwn(all), always}, true, "re-entered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := simulate(tt.r, firstReady)
			if tt.wantLoop != errors.Is(err, errNoQuiescence) {
				t.Fatalf("simulate: %v; want a loop: %v", err, tt.wantLoop)
			}
			err = errors.Join(err, checkDelivery(tt.r.Plan, res))
			if err == nil {
				t.Fatal("broken plan passed the simulation")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}

	// The own-origin filter alone stops circulation: a circular plan that
	// forwards everything it accepts, even events whose origin is its
	// successor, still delivers exactly once (the successor's filter drops
	// its own events). This is the first of the three loop-prevention
	// layers (filters, Geo-Path, watermarks).
	t.Run("circular: over-forwarding stopped by the filter", func(t *testing.T) {
		r := brokenRouter{circular, nil, circular.Accepts}
		res, err := simulate(r, firstReady)
		if err == nil {
			err = checkDelivery(circular, res)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
}
