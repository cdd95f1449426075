package conflict

import (
	"cmp"
	"fmt"
	"math"
	"sync"
	"time"
)

// HLC is a hybrid logical clock timestamp: physical milliseconds since the
// Unix epoch and a logical counter that orders events within one
// millisecond. HLC values are totally ordered by Compare.
type HLC struct {
	Wall    int64  `json:"w"`
	Logical uint32 `json:"l"`
}

// Compare orders timestamps by wall time, then logical counter.
func (h HLC) Compare(o HLC) int {
	if c := cmp.Compare(h.Wall, o.Wall); c != 0 {
		return c
	}
	return cmp.Compare(h.Logical, o.Logical)
}

// IsZero reports whether the timestamp is unset.
func (h HLC) IsZero() bool { return h.Wall == 0 && h.Logical == 0 }

// String renders the timestamp as wall.logical.
func (h HLC) String() string { return fmt.Sprintf("%d.%d", h.Wall, h.Logical) }

// PhysicalClock returns the current physical time. It is the one clock type
// geogate injects (HLCs, the gateway, the publisher and the links take
// one), so tests and the testbed can skew or freeze time. HLCs use its
// milliseconds.
type PhysicalClock func() time.Time

// WallClock is the PhysicalClock of the machine's wall clock.
var WallClock PhysicalClock = time.Now

// Clock issues hybrid logical clock timestamps. Now is strictly monotonic for
// one Clock whatever the physical clock does, with one exception: a Clock
// with a skew bound never issues a timestamp more than twice the bound ahead
// of its physical clock. When the physical clock is set back by more than
// that (it had run ahead and was corrected), Now jumps back to the bound
// ahead of it instead of carrying the old lead on: otherwise a region whose
// clock ran an hour ahead would win every last-write-wins race for an hour
// after the correction. Nothing relies on the timestamps of one region being
// monotonic: causality is carried by version vectors, and HLCs only order
// concurrent versions. Observe folds in timestamps from other regions so
// that a later local event has a larger timestamp than everything it has
// seen, unless that timestamp is further ahead than the skew bound. Clock
// is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	phys    PhysicalClock
	maxSkew int64 // ms; 0 means unbounded
	last    HLC
}

// NewClock returns a clock driven by phys. A remote timestamp more than
// maxSkewMillis ahead of phys is not folded in (see Observe); 0 disables the
// guard.
func NewClock(phys PhysicalClock, maxSkewMillis int64) *Clock {
	return &Clock{phys: phys, maxSkew: maxSkewMillis}
}

// Now returns a new timestamp greater than every timestamp this clock has
// issued or observed, except after the physical clock was set back by more
// than twice the skew bound (see Clock).
func (c *Clock) Now() HLC {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.phys().UnixMilli()
	switch {
	case pt > c.last.Wall:
		c.last = HLC{Wall: pt}
	case c.last.Logical == math.MaxUint32:
		// The logical counter is exhausted (a remote clock may hand us
		// one at its limit): move to the next millisecond instead of
		// wrapping to 0, which would go backwards.
		c.last = HLC{Wall: c.last.Wall + 1}
	default:
		c.last.Logical++
	}
	if c.maxSkew > 0 && c.last.Wall-pt > 2*c.maxSkew {
		// The physical clock was set back: keep the lead within the bound.
		c.last = HLC{Wall: pt + c.maxSkew}
	}
	return c.last
}

// Observe folds a remote timestamp into the clock so later Now values exceed
// it. It returns false, and leaves the clock unchanged, when the remote
// timestamp is more than the skew bound ahead of the local physical clock:
// the caller flags it (metric, conflict-log note) instead of letting one
// fast clock drag every region's clock forward.
func (c *Clock) Observe(remote HLC) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.phys().UnixMilli()
	if c.maxSkew > 0 && remote.Wall-pt > c.maxSkew {
		return false
	}
	if remote.Compare(c.last) > 0 {
		c.last = remote
	}
	return true
}

// Last returns the most recent timestamp issued or observed.
func (c *Clock) Last() HLC {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
