package topology

import (
	"cmp"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

var three = []string{"us-east", "eu-west", "ap-south"}

func links(pairs ...string) []Link {
	var ls []Link
	for i := 0; i < len(pairs); i += 2 {
		ls = append(ls, Link{From: pairs[i], To: pairs[i+1]})
	}
	return ls
}

// TestPlanThreeRegions pins down each kind on the contract's example
// deployment: links, filters, forwarding, hops.
func TestPlanThreeRegions(t *testing.T) {
	type fwd struct{ at, from, origin string }
	tests := []struct {
		spec     Spec
		links    []Link
		filters  map[Link][]string
		forwards []fwd // every (at, from, origin) for which Forwards holds
		hops     map[Link]int
		describe string
	}{
		{
			spec: Spec{Kind: AllToAll},
			links: links("ap-south", "eu-west", "ap-south", "us-east", "eu-west", "ap-south",
				"eu-west", "us-east", "us-east", "ap-south", "us-east", "eu-west"),
			filters: map[Link][]string{
				{From: "us-east", To: "eu-west"}:  {"us-east"},
				{From: "eu-west", To: "ap-south"}: {"eu-west"},
			},
			hops:     map[Link]int{{From: "us-east", To: "ap-south"}: 1, {From: "ap-south", To: "eu-west"}: 1},
			describe: "all-to-all: ap-south<->eu-west, ap-south<->us-east, eu-west<->us-east",
		},
		{
			spec:  Spec{Kind: Star, Hub: "us-east"},
			links: links("ap-south", "us-east", "eu-west", "us-east", "us-east", "ap-south", "us-east", "eu-west"),
			filters: map[Link][]string{
				{From: "us-east", To: "eu-west"}:  {"ap-south", "us-east"},
				{From: "us-east", To: "ap-south"}: {"eu-west", "us-east"},
				{From: "eu-west", To: "us-east"}:  {"eu-west"},
			},
			forwards: []fwd{{"us-east", "ap-south", "ap-south"}, {"us-east", "eu-west", "eu-west"}},
			hops: map[Link]int{
				{From: "us-east", To: "ap-south"}: 1, {From: "ap-south", To: "us-east"}: 1,
				{From: "eu-west", To: "ap-south"}: 2, {From: "ap-south", To: "eu-west"}: 2,
			},
			describe: "star hub=us-east: eu-west<->us-east, ap-south<->us-east",
		},
		{
			spec:  Spec{Kind: Circular},
			links: links("ap-south", "us-east", "eu-west", "ap-south", "us-east", "eu-west"),
			filters: map[Link][]string{
				{From: "us-east", To: "eu-west"}:  {"ap-south", "us-east"},
				{From: "eu-west", To: "ap-south"}: {"eu-west", "us-east"},
				{From: "ap-south", To: "us-east"}: {"ap-south", "eu-west"},
			},
			// us-east -> eu-west -> ap-south -> us-east: each region passes
			// on its predecessor's own events; the event of its
			// predecessor's predecessor (its successor) stops there.
			forwards: []fwd{
				{"eu-west", "us-east", "us-east"},
				{"ap-south", "eu-west", "eu-west"},
				{"us-east", "ap-south", "ap-south"},
			},
			hops: map[Link]int{
				{From: "us-east", To: "eu-west"}: 1, {From: "us-east", To: "ap-south"}: 2,
				{From: "ap-south", To: "eu-west"}: 2, {From: "eu-west", To: "us-east"}: 2,
			},
			describe: "circular: us-east->eu-west->ap-south->us-east",
		},
		{
			spec:  Spec{Kind: Circular, Order: []string{"us-east", "ap-south", "eu-west"}},
			links: links("ap-south", "eu-west", "eu-west", "us-east", "us-east", "ap-south"),
			forwards: []fwd{
				{"ap-south", "us-east", "us-east"},
				{"eu-west", "ap-south", "ap-south"},
				{"us-east", "eu-west", "eu-west"},
			},
			hops:     map[Link]int{{From: "us-east", To: "eu-west"}: 2, {From: "us-east", To: "ap-south"}: 1},
			describe: "circular: us-east->ap-south->eu-west->us-east",
		},
	}
	for _, tt := range tests {
		t.Run(tt.describe, func(t *testing.T) {
			p := mustNew(t, three, tt.spec)
			if got := p.Links(); !slices.Equal(got, tt.links) {
				t.Errorf("Links() = %v, want %v", got, tt.links)
			}
			for l, want := range tt.filters {
				if got := p.FilterOrigins(l.To, l.From); !slices.Equal(got, want) {
					t.Errorf("FilterOrigins(%s, %s) = %v, want %v", l.To, l.From, got, want)
				}
			}
			var gotFwd []fwd
			for _, at := range three {
				for _, from := range three {
					for _, origin := range three {
						if p.Forwards(at, from, origin) {
							gotFwd = append(gotFwd, fwd{at, from, origin})
						}
					}
				}
			}
			byKey := func(a, b fwd) int {
				return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.from, b.from), cmp.Compare(a.origin, b.origin))
			}
			slices.SortFunc(gotFwd, byKey)
			slices.SortFunc(tt.forwards, byKey)
			if !slices.Equal(gotFwd, tt.forwards) {
				t.Errorf("forwards = %v, want %v", gotFwd, tt.forwards)
			}
			for l, want := range tt.hops {
				if got := p.Hops(l.From, l.To); got != want {
					t.Errorf("Hops(%s, %s) = %d, want %d", l.From, l.To, got, want)
				}
			}
			if got := p.Describe(); got != tt.describe {
				t.Errorf("Describe() = %q, want %q", got, tt.describe)
			}
		})
	}
}

// TestPlanSmall covers the degenerate sizes: one region has no links; with
// two regions every kind is the same pair of links and nobody forwards.
func TestPlanSmall(t *testing.T) {
	for _, kind := range Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			one := mustNew(t, []string{"solo"}, Spec{Kind: kind, Hub: "solo"})
			if got := one.Links(); len(got) != 0 {
				t.Errorf("one region: Links() = %v, want none", got)
			}
			if got := one.Inbound("solo"); got != nil {
				t.Errorf("one region: Inbound = %v, want nil", got)
			}
			if h := one.Hops("solo", "solo"); h != 0 {
				t.Errorf("one region: Hops = %d, want 0", h)
			}
			if !slices.Contains([]string{"all-to-all: solo alone, no links", "star hub=solo: solo alone, no links", "circular: solo alone, no links"}, one.Describe()) {
				t.Errorf("one region: Describe() = %q", one.Describe())
			}

			two := mustNew(t, []string{"b", "a"}, Spec{Kind: kind, Hub: "b"})
			if got, want := two.Links(), links("a", "b", "b", "a"); !slices.Equal(got, want) {
				t.Errorf("two regions: Links() = %v, want %v", got, want)
			}
			for _, l := range two.Links() {
				if got := two.FilterOrigins(l.To, l.From); !slices.Equal(got, []string{l.From}) {
					t.Errorf("two regions: FilterOrigins(%s, %s) = %v, want [%s]", l.To, l.From, got, l.From)
				}
				for _, origin := range []string{"a", "b"} {
					if two.Forwards(l.To, l.From, origin) {
						t.Errorf("two regions: Forwards(%s, %s, %s) = true", l.To, l.From, origin)
					}
				}
			}
			if h := two.Hops("a", "b"); h != 1 {
				t.Errorf("two regions: Hops = %d, want 1", h)
			}
		})
	}
}

// TestPlanLaws checks, on random plans, the relations between the methods
// that the link package relies on.
func TestPlanLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		kind := rapid.SampledFrom(Kinds()).Draw(t, "kind")
		p := genPlan(t, kind, 1, 7)
		regions := p.Regions()
		n := len(regions)

		all := p.Links()
		wantCount := map[Kind]int{AllToAll: n * (n - 1), Star: 2 * (n - 1), Circular: n}[kind]
		if n == 1 {
			wantCount = 0
		}
		if len(all) != wantCount {
			t.Fatalf("%s: %d links, want %d", p, len(all), wantCount)
		}
		if !slices.IsSortedFunc(all, Link.Compare) || len(slices.Compact(slices.Clone(all))) != len(all) {
			t.Fatalf("%s: Links() not sorted or has duplicates: %v", p, all)
		}
		var union []Link
		for _, r := range regions {
			in, out := p.Inbound(r), p.Outbound(r)
			for _, l := range in {
				if l.To != r || !p.HasLink(l.From, l.To) {
					t.Fatalf("Inbound(%s) has %s", r, l)
				}
			}
			for _, l := range out {
				if l.From != r || !p.HasLink(l.From, l.To) {
					t.Fatalf("Outbound(%s) has %s", r, l)
				}
			}
			if !slices.IsSortedFunc(in, func(a, b Link) int { return cmp.Compare(a.From, b.From) }) {
				t.Fatalf("Inbound(%s) not sorted by From: %v", r, in)
			}
			if !slices.IsSortedFunc(out, func(a, b Link) int { return cmp.Compare(a.To, b.To) }) {
				t.Fatalf("Outbound(%s) not sorted by To: %v", r, out)
			}
			union = append(union, in...)
		}
		slices.SortFunc(union, Link.Compare)
		if !slices.Equal(union, all) {
			t.Fatalf("%s: inbound links %v != Links() %v", p, union, all)
		}

		// content(r): origins present in r's stream.
		content := func(r string) []string {
			c := []string{r}
			for _, l := range p.Inbound(r) {
				for _, o := range regions {
					if p.Forwards(r, l.From, o) && !slices.Contains(c, o) {
						c = append(c, o)
					}
				}
			}
			slices.Sort(c)
			return c
		}
		for _, at := range regions {
			for _, from := range regions {
				f := p.FilterOrigins(at, from)
				if !p.HasLink(from, at) {
					if f != nil {
						t.Fatalf("FilterOrigins(%s, %s) = %v without a link", at, from, f)
					}
					continue
				}
				want := slices.DeleteFunc(content(from), func(o string) bool { return o == at })
				if !slices.Equal(f, want) {
					t.Fatalf("%s: FilterOrigins(%s, %s) = %v, stream of %s carries %v", p, at, from, f, from, want)
				}
				for _, origin := range regions {
					acc, fw := p.Accepts(at, from, origin), p.Forwards(at, from, origin)
					if acc != slices.Contains(f, origin) {
						t.Fatalf("Accepts(%s, %s, %s) = %v disagrees with filter %v", at, from, origin, acc, f)
					}
					if origin == at && acc {
						t.Fatalf("Accepts(%s, %s, %s): a region takes its own events", at, from, origin)
					}
					downstream := false
					for _, l := range p.Outbound(at) {
						downstream = downstream || p.Accepts(l.To, at, origin)
					}
					if fw != (acc && downstream) {
						t.Fatalf("%s: Forwards(%s, %s, %s) = %v, accepted %v, someone downstream takes it %v",
							p, at, from, origin, fw, acc, downstream)
					}
				}
			}
			if p.Hops(at, at) != 0 || p.Hops(at, "nowhere") != -1 || p.Hops("nowhere", at) != -1 {
				t.Fatalf("Hops edge cases wrong for %s", at)
			}
		}
	})
}

// TestPlanIsImmutable checks that New copies its inputs and accessors
// return copies.
func TestPlanIsImmutable(t *testing.T) {
	regions := []string{"a", "b", "c"}
	order := []string{"c", "b", "a"}
	p := mustNew(t, regions, Spec{Kind: Circular, Order: order})
	before := p.Describe()
	regions[0], order[0] = "x", "x"
	p.Regions()[1] = "y"
	p.Order()[1] = "y"
	p.Links()[0] = Link{From: "y", To: "y"}
	p.Inbound("a")[0] = Link{From: "y", To: "y"}
	p.FilterOrigins("a", "b")[0] = "y"
	if got := p.Describe(); got != before {
		t.Fatalf("plan changed from %q to %q", before, got)
	}
	if !slices.Equal(p.Regions(), []string{"a", "b", "c"}) || !slices.Equal(p.FilterOrigins("a", "b"), []string{"b", "c"}) ||
		!slices.Equal(p.Inbound("a"), links("b", "a")) {
		t.Fatalf("plan changed: regions %v, filter %v, inbound %v", p.Regions(), p.FilterOrigins("a", "b"), p.Inbound("a"))
	}
	if p.Kind() != Circular || p.Hub() != "" || p.String() != before {
		t.Fatalf("accessors: kind %q hub %q string %q", p.Kind(), p.Hub(), p.String())
	}
}
