package testbed

import (
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"

	"github.com/geogate/geogate/testbed/wan"
)

// network is a run's emulated WAN: one wan.Proxy per replication link
// "from->to" and NATS server of from (one, or one per node of a region of
// several), used only by to's link. Faults cut and degrade links through
// it: every proxy of a link at once. Cuts nest: a link cut by two
// overlapping faults heals when both have ended. Safe for concurrent use.
type network struct {
	log      *slog.Logger
	seed     uint64
	profiles Links

	mu      sync.Mutex
	links   map[string]*netLink
	started int // proxies started, for their seeds
}

type netLink struct {
	from, to string
	shape    wan.Shape             // in force
	cuts     int                   // active faults cutting the link
	proxies  map[string]*wan.Proxy // by target
}

func newNetwork(profiles Links, seed uint64, log *slog.Logger) *network {
	return &network{log: log, seed: seed, profiles: profiles, links: map[string]*netLink{}}
}

func linkName(from, to string) string { return from + "->" + to }

// link returns the link's state, creating it with its profile. n.mu held.
func (n *network) link(from, to string) *netLink {
	name := linkName(from, to)
	l := n.links[name]
	if l == nil {
		l = &netLink{from: from, to: to, shape: n.profiles.For(from, to).Shape(), proxies: map[string]*wan.Proxy{}}
		n.links[name] = l
	}
	return l
}

// proxy returns the link's proxy forwarding to target, starting it with
// the link's current shape and cut state if the link has none for target
// yet (a peer region of several nodes has one NATS server per node; each
// gets a proxy with the link's profile, bandwidth included).
func (n *network) proxy(from, to, target string) (*wan.Proxy, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.link(from, to)
	if p := l.proxies[target]; p != nil {
		return p, nil
	}
	n.started++
	p, err := wan.New(wan.Config{
		Target: target, Shape: l.shape, Seed: n.seed + uint64(n.started),
		Logger: n.log.With("link", linkName(from, to), "target", target),
	})
	if err != nil {
		return nil, fmt.Errorf("wan link %s: %w", linkName(from, to), err)
	}
	if l.cuts > 0 {
		p.Partition()
	}
	l.proxies[target] = p
	return p, nil
}

// dialer returns the nats.CustomDialer of the link from -> to: it dials
// from's NATS (the address nats.go asks for) through the link's proxy.
func (n *network) dialer(from, to string) *linkDialer {
	return &linkDialer{n: n, from: from, to: to}
}

type linkDialer struct {
	n        *network
	from, to string
}

// Dial implements nats.CustomDialer.
func (d *linkDialer) Dial(network, address string) (net.Conn, error) {
	p, err := d.n.proxy(d.from, d.to, address)
	if err != nil {
		return nil, err
	}
	return p.Dialer().Dial(network, address)
}

// cut partitions the link until as many uncuts.
func (n *network) cut(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.link(from, to)
	l.cuts++
	if l.cuts == 1 {
		for _, p := range l.proxies {
			p.Partition()
		}
	}
}

// uncut ends one cut; the link heals when none is left.
func (n *network) uncut(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.link(from, to)
	if l.cuts == 0 {
		return
	}
	l.cuts--
	if l.cuts == 0 {
		for _, p := range l.proxies {
			p.Heal()
		}
	}
}

// setShape changes the link's emulation (nil: back to its profile).
func (n *network) setShape(from, to string, s *wan.Shape) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.link(from, to)
	if s == nil {
		l.shape = n.profiles.For(from, to).Shape()
	} else {
		l.shape = *s
	}
	for _, p := range l.proxies {
		p.SetShape(l.shape)
	}
}

// stats returns every started proxy's counters by link (summed over a
// link's proxies).
func (n *network) stats() map[string]wan.Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]wan.Stats{}
	for name, l := range n.links {
		if len(l.proxies) == 0 {
			continue
		}
		var sum wan.Stats
		for _, p := range l.proxies {
			st := p.Stats()
			sum.Accepted += st.Accepted
			sum.Refused += st.Refused
			sum.Dropped += st.Dropped
			sum.Cut += st.Cut
			sum.Active += st.Active
			sum.BytesUp += st.BytesUp
			sum.BytesDown += st.BytesDown
		}
		out[name] = sum
	}
	return out
}

// names returns the links with state, sorted.
func (n *network) names() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Sorted(maps.Keys(n.links))
}

// close stops every proxy.
func (n *network) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.links {
		for target, p := range l.proxies {
			p.Close()
			delete(l.proxies, target)
		}
	}
}
