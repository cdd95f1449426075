package topology

import (
	"cmp"
	"slices"
)

// Link is one replication edge: region To runs a pull consumer on From's
// stream, link.StreamName(From), and applies what it receives.
type Link struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// String renders the link as "from->to".
func (l Link) String() string { return l.From + "->" + l.To }

// Compare orders links by From, then To.
func (l Link) Compare(o Link) int {
	return cmp.Or(cmp.Compare(l.From, o.From), cmp.Compare(l.To, o.To))
}

// Plan is the replication graph of one deployment: the links, what each
// link carries and what each region forwards. A Plan is immutable after New
// and safe for concurrent use; every slice it returns is a fresh copy the
// caller may keep or modify. Every region of the deployment computes the
// same Plan from the same config, which is what makes the regions agree on
// who forwards what.
type Plan struct {
	kind    Kind
	hub     string         // Star only
	regions []string       // as given to New
	ring    []string       // Circular only: r0 -> r1 -> ... -> r0
	pos     map[string]int // Circular: index in ring; otherwise index in regions
	links   []Link         // sorted by Link.Compare
	in      map[string][]Link
	out     map[string][]Link
	filter  map[Link][]string // origins To consumes from From's stream, sorted
}

// New validates regions and spec and builds the plan. regions is every
// region of the deployment; their order matters only as the default ring of
// a circular topology and as the order Regions returns. New refuses, with
// the first *SpecError Validate reports (naming the config key and the
// reason; errors.Is ErrInvalidSpec):
//   - no regions, a region name CheckRegion refuses, or a region listed
//     twice (field "regions");
//   - an empty or unknown kind ("topology.kind");
//   - a star without a hub, or a hub that is not a region, whatever the
//     kind ("topology.hub");
//   - an order that is not a permutation of the regions, whatever the kind
//     ("topology.order").
func New(regions []string, spec Spec) (*Plan, error) {
	ring, err := validate(regions, spec)
	if err != nil {
		return nil, err
	}
	p := &Plan{
		kind:    spec.Kind,
		regions: slices.Clone(regions),
		pos:     make(map[string]int, len(regions)),
		in:      make(map[string][]Link),
		out:     make(map[string][]Link),
		filter:  make(map[Link][]string),
	}
	for i, r := range p.regions {
		p.pos[r] = i
	}
	// others(x) is every region but x, sorted: what x consumes from a
	// stream that carries every origin.
	others := func(x string) []string {
		var o []string
		for _, r := range p.regions {
			if r != x {
				o = append(o, r)
			}
		}
		slices.Sort(o)
		return o
	}
	switch p.kind {
	case AllToAll:
		for _, from := range p.regions {
			for _, to := range p.regions {
				if from != to {
					p.addLink(Link{From: from, To: to}, []string{from})
				}
			}
		}
	case Star:
		p.hub = spec.Hub
		for _, s := range p.regions {
			if s == p.hub {
				continue
			}
			// The hub's stream carries the hub's own events and every
			// spoke's (forwarded); a spoke takes all but its own. A
			// spoke's stream carries only the spoke's events.
			p.addLink(Link{From: p.hub, To: s}, others(s))
			p.addLink(Link{From: s, To: p.hub}, []string{s})
		}
	case Circular:
		p.ring = ring
		for i, r := range p.ring {
			p.pos[r] = i
		}
		if n := len(p.ring); n >= 2 {
			// The predecessor's stream carries every origin except this
			// region (the predecessor of a region does not forward the
			// region's own events back to it).
			for i, to := range p.ring {
				from := p.ring[(i+n-1)%n]
				p.addLink(Link{From: from, To: to}, others(to))
			}
		}
	}
	slices.SortFunc(p.links, Link.Compare)
	for _, ls := range p.in {
		slices.SortFunc(ls, Link.Compare)
	}
	for _, ls := range p.out {
		slices.SortFunc(ls, func(a, b Link) int { return cmp.Or(cmp.Compare(a.To, b.To), cmp.Compare(a.From, b.From)) })
	}
	return p, nil
}

func (p *Plan) addLink(l Link, origins []string) {
	p.links = append(p.links, l)
	p.in[l.To] = append(p.in[l.To], l)
	p.out[l.From] = append(p.out[l.From], l)
	p.filter[l] = origins
}

// Kind returns the plan's topology.
func (p *Plan) Kind() Kind { return p.kind }

// Hub returns the star's hub, or "" for other kinds.
func (p *Plan) Hub() string { return p.hub }

// Order returns the ring of a circular plan (each region pulls from the one
// before it, the first from the last), or nil for other kinds.
func (p *Plan) Order() []string { return slices.Clone(p.ring) }

// Regions returns every region, in the order given to New.
func (p *Plan) Regions() []string { return slices.Clone(p.regions) }

// Has reports whether region is part of the plan.
func (p *Plan) Has(region string) bool {
	_, ok := p.pos[region]
	return ok
}

// Inbound returns the links region runs (one pull consumer each), sorted
// by From. Nil for a single-region plan or an unknown region.
func (p *Plan) Inbound(region string) []Link { return slices.Clone(p.in[region]) }

// Outbound returns the links that pull from region's stream, sorted by To.
// Nil for a single-region plan or an unknown region.
func (p *Plan) Outbound(region string) []Link { return slices.Clone(p.out[region]) }

// Links returns every link of the plan, sorted by From, then To.
func (p *Plan) Links() []Link { return slices.Clone(p.links) }

// HasLink reports whether the plan has the link from -> to.
func (p *Plan) HasLink(from, to string) bool {
	_, ok := p.filter[Link{From: from, To: to}]
	return ok
}

// FilterOrigins returns the origins whose events region at consumes from
// from's stream, sorted: the link's consumer filters on link.Subject(from, o)
// for each o. The list never contains at (a region never takes its own
// events back) and names exactly the origins present in from's stream
// other than at, so a consumer never skips an event it should apply. Nil
// when the plan has no link from -> at.
func (p *Plan) FilterOrigins(at, from string) []string {
	return slices.Clone(p.filter[Link{From: from, To: at}])
}

// Accepts reports whether region at takes events of origin from from's
// stream: the link from -> at exists and origin is in FilterOrigins(at,
// from). It is false for at == origin. A consumer receiving an event it
// does not accept (which the subject filter should make impossible) must
// drop it without applying it.
func (p *Plan) Accepts(at, from, origin string) bool {
	_, ok := slices.BinarySearch(p.filter[Link{From: from, To: at}], origin)
	return ok
}

// Forwards reports whether region at, having applied an event of origin
// received over the link from -> at, must append it to its own stream (its
// outbox) so that its downstream regions receive it; the forwarded event
// keeps its origin, dot and origin sequence. It is false whenever Accepts
// is false, and true exactly when some region x pulling from at accepts
// the origin there (Accepts(x, at, origin)); by kind that is:
//   - all-to-all: never;
//   - star: at the hub, for every spoke's event, when there are at least two
//     spokes;
//   - circular: when origin is not at's successor in the ring.
//
// The apply and the forward must commit in one store transaction (the
// store commits an applied event, its watermark and its forward together),
// so a crash never loses a forward.
func (p *Plan) Forwards(at, from, origin string) bool {
	if !p.Accepts(at, from, origin) {
		return false
	}
	switch p.kind {
	case Star:
		return at == p.hub && len(p.regions) > 2
	case Circular:
		return origin != p.successor(at)
	default:
		return false
	}
}

func (p *Plan) successor(region string) string {
	return p.ring[(p.pos[region]+1)%len(p.ring)]
}

// Hops returns the number of links an event written at origin crosses
// before it is applied at dest: 0 when origin == dest, -1 when either is
// not a region of the plan. All-to-all: 1. Star: 1 to or from the hub, 2
// between spokes. Circular: the distance from origin to dest along the
// ring, so the last region reached is n-1 hops away.
func (p *Plan) Hops(origin, dest string) int {
	if !p.Has(origin) || !p.Has(dest) {
		return -1
	}
	if origin == dest {
		return 0
	}
	switch p.kind {
	case Star:
		if origin == p.hub || dest == p.hub {
			return 1
		}
		return 2
	case Circular:
		n := len(p.ring)
		return (p.pos[dest] - p.pos[origin] + n) % n
	default:
		return 1
	}
}
