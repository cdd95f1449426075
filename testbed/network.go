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
// "from->to", in front of from's NATS server, used only by to's link.
// Faults cut and degrade links through it. Cuts nest: a link cut by two
// overlapping faults heals when both have ended. Safe for concurrent use.
type network struct {
	log      *slog.Logger
	seed     uint64
	profiles Links

	mu    sync.Mutex
	links map[string]*netLink
}

type netLink struct {
	from, to string
	shape    wan.Shape // in force
	cuts     int       // active faults cutting the link
	proxy    *wan.Proxy
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
		l = &netLink{from: from, to: to, shape: n.profiles.For(from, to).Shape()}
		n.links[name] = l
	}
	return l
}

// proxy returns the link's proxy forwarding to target, starting it (or
// replacing one that forwards elsewhere) with the link's current shape and
// cut state.
func (n *network) proxy(from, to, target string) (*wan.Proxy, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.link(from, to)
	if l.proxy != nil && l.proxy.Target() == target {
		return l.proxy, nil
	}
	if l.proxy != nil {
		l.proxy.Close()
	}
	p, err := wan.New(wan.Config{
		Target: target, Shape: l.shape, Seed: n.seed + uint64(len(n.links)) + 1,
		Logger: n.log.With("link", linkName(from, to)),
	})
	if err != nil {
		return nil, fmt.Errorf("wan link %s: %w", linkName(from, to), err)
	}
	if l.cuts > 0 {
		p.Partition()
	}
	l.proxy = p
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
	if l.cuts == 1 && l.proxy != nil {
		l.proxy.Partition()
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
	if l.cuts == 0 && l.proxy != nil {
		l.proxy.Heal()
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
	if l.proxy != nil {
		l.proxy.SetShape(l.shape)
	}
}

// stats returns every started proxy's counters by link.
func (n *network) stats() map[string]wan.Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]wan.Stats{}
	for name, l := range n.links {
		if l.proxy != nil {
			out[name] = l.proxy.Stats()
		}
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
		if l.proxy != nil {
			l.proxy.Close()
			l.proxy = nil
		}
	}
}
