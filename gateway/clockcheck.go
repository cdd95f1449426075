package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Clock offsets. A region whose physical clock runs ahead stamps its
// writes with hybrid logical clocks from the future, and they win every
// last-write-wins race until real time catches up. As CockroachDB does
// with its nodes, every region measures its clock's offset from each peer
// (a request over NATS answered with the peer's physical time; the offset
// is bounded by half the round trip) and, when its clock is more than
// replication.max_clock_skew ahead of most of its peers, refuses local
// writes with 503 clock_skew until the clock is fixed. A peer's clock that
// runs ahead is not absorbed (conflict.Clock.Observe refuses HLCs beyond
// the bound), and once a clock that ran ahead is corrected the region's
// HLC comes back within the bound (conflict.Clock), so the bound holds
// after the skew ends.

// probeTimeout bounds one clock probe; a slower answer measures nothing
// useful.
const probeTimeout = 2 * time.Second

// peerOffset is one measurement of a peer's clock.
type peerOffset struct {
	// Offset is the peer's clock minus this region's, at the midpoint of
	// the probe; Uncertainty is half the round trip, the most the true
	// offset can differ from it.
	Offset, Uncertainty time.Duration
	At                  time.Time
}

// ClockStatus is the clock part of StatusReport.
type ClockStatus struct {
	// Refusing is true while local writes are refused because this
	// region's clock is more than MaxSkewSeconds ahead of most peers.
	Refusing bool `json:"refusing"`
	// AheadBySeconds is by how much, at least, this region's clock is
	// ahead of the median of its measured peers (0 when it is not).
	AheadBySeconds float64 `json:"ahead_by_seconds"`
	MaxSkewSeconds float64 `json:"max_skew_seconds"`
	// Peers maps each measured peer to its clock's offset from this
	// region's (positive: the peer is ahead) and the round trip.
	Peers map[string]PeerClock `json:"peers"`
}

// PeerClock is one peer's measured clock offset.
type PeerClock struct {
	OffsetSeconds float64   `json:"offset_seconds"`
	RTTSeconds    float64   `json:"rtt_seconds"`
	At            time.Time `json:"at"`
}

// clockWatch keeps the latest offset measured to every peer. Safe for
// concurrent use.
type clockWatch struct {
	mu      sync.Mutex
	offsets map[string]peerOffset
	// refusing caches the verdict of the latest measurement round.
	refusing bool
	aheadBy  time.Duration
}

func newClockWatch() *clockWatch { return &clockWatch{offsets: map[string]peerOffset{}} }

// aheadOfMost decides whether a clock is ahead of most of its peers: it is
// when, among the peers measured within fresh of now, more than half of
// all peers are certainly behind it by more than maxSkew (the offset plus
// its uncertainty still below -maxSkew). A peer not measured (down,
// partitioned) counts as not behind, so a region cut off from most peers
// keeps taking writes. aheadBy is the least amount by which the clock is
// ahead of the median measured peer (0 when not ahead). Pure.
func aheadOfMost(offsets map[string]peerOffset, peers int, maxSkew, fresh time.Duration, now time.Time) (ahead bool, aheadBy time.Duration) {
	behind := 0
	var leads []time.Duration
	for _, o := range offsets {
		if now.Sub(o.At) > fresh {
			continue
		}
		lead := -o.Offset - o.Uncertainty // how far ahead we surely are
		leads = append(leads, lead)
		if lead > maxSkew {
			behind++
		}
	}
	if len(leads) > 0 {
		slices.Sort(leads)
		aheadBy = max(leads[(len(leads)-1)/2], 0) // the median, rounded down
	}
	return peers > 0 && 2*behind > peers, aheadBy
}

// serveClock answers clock probes on this region's NATS with its physical
// time.
func (n *Node) serveClock() error {
	// In a queue group: in a region of several nodes one of them answers.
	_, err := n.conn.QueueSubscribe(clockSubject(n.cfg.Region), "geogate", func(m *nats.Msg) {
		b, _ := json.Marshal(map[string]int64{"ms": n.opts.Clock().UnixMilli()}) //nolint:errchkjson // a map of ints
		m.Respond(b)                                                             //nolint:errcheck // the prober times out
	})
	if err != nil {
		return fmt.Errorf("serve clock probes: %w", err)
	}
	return nil
}

// watchClocks probes every peer's clock every replication.heartbeat until
// ctx ends, and updates the verdict.
func (n *Node) watchClocks(ctx context.Context) {
	every := n.cfg.Replication.Heartbeat
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, peer := range n.current().cfg.Peers() {
			if o, ok := n.probeClock(ctx, peer); ok {
				n.clocks.mu.Lock()
				n.clocks.offsets[peer] = o
				n.clocks.mu.Unlock()
				n.metrics.clockOffset.WithLabelValues(peer).Set(o.Offset.Seconds())
			}
		}
		n.clocks.mu.Lock()
		was := n.clocks.refusing
		n.clocks.refusing, n.clocks.aheadBy = aheadOfMost(n.clocks.offsets, len(n.current().cfg.Peers()), n.cfg.Replication.MaxClockSkew, 3*every+probeTimeout, time.Now())
		refusing, by := n.clocks.refusing, n.clocks.aheadBy
		n.clocks.mu.Unlock()
		n.metrics.clockRefusing.Set(flag(refusing))
		switch {
		case refusing && !was:
			n.log.Error("this region's clock is ahead of most of its peers by more than replication.max_clock_skew: refusing local writes until it is corrected (check NTP)", "ahead_by", by, "max_clock_skew", n.cfg.Replication.MaxClockSkew)
		case !refusing && was:
			n.log.Info("this region's clock is back within replication.max_clock_skew of its peers: taking writes again")
		}
	}
}

// probeClock measures one peer's clock offset over its NATS; ok is false
// when the peer did not answer in time.
func (n *Node) probeClock(ctx context.Context, peer string) (peerOffset, bool) {
	c, _, err := n.peerConn(peer)
	if err != nil || !c.IsConnected() {
		return peerOffset{}, false
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	sent, start := n.opts.Clock().UnixMilli(), time.Now()
	msg, err := c.RequestWithContext(pctx, clockSubject(peer), nil)
	rtt := time.Since(start)
	if err != nil {
		return peerOffset{}, false
	}
	var ans struct {
		MS int64 `json:"ms"`
	}
	if json.Unmarshal(msg.Data, &ans) != nil || ans.MS == 0 {
		return peerOffset{}, false
	}
	mid := time.Duration(sent)*time.Millisecond + rtt/2
	return peerOffset{Offset: time.Duration(ans.MS)*time.Millisecond - mid, Uncertainty: rtt/2 + time.Millisecond, At: time.Now()}, true
}

// clockRefusal returns the error a local write gets while this region's
// clock is too far ahead, nil otherwise.
func (n *Node) clockRefusal() error {
	n.clocks.mu.Lock()
	refusing, by := n.clocks.refusing, n.clocks.aheadBy
	n.clocks.mu.Unlock()
	if !refusing {
		return nil
	}
	n.metrics.clockRefusals.Inc()
	return &apiError{status: http.StatusServiceUnavailable, code: "clock_skew",
		msg: fmt.Sprintf("region %s's clock is at least %s ahead of most regions (more than replication.max_clock_skew, %s): it takes no writes until its clock is corrected; write at another region",
			n.cfg.Region, by.Round(time.Millisecond), n.cfg.Replication.MaxClockSkew),
		details: map[string]any{"ahead_by_seconds": by.Seconds()}}
}

// clockStatus reports the clock watch for StatusReport.
func (n *Node) clockStatus() ClockStatus {
	n.clocks.mu.Lock()
	defer n.clocks.mu.Unlock()
	st := ClockStatus{Refusing: n.clocks.refusing, AheadBySeconds: n.clocks.aheadBy.Seconds(),
		MaxSkewSeconds: n.cfg.Replication.MaxClockSkew.Seconds(), Peers: map[string]PeerClock{}}
	for p, o := range n.clocks.offsets {
		st.Peers[p] = PeerClock{OffsetSeconds: o.Offset.Seconds(), RTTSeconds: (2 * o.Uncertainty).Seconds(), At: o.At}
	}
	return st
}
