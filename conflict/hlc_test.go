package conflict

import (
	"math"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// genPhysStep draws how a physical clock moves between two readings: often
// not at all, sometimes backwards, sometimes forwards.
var genPhysStep = rapid.OneOf(rapid.Just(int64(0)), rapid.Int64Range(-100, -1), rapid.Int64Range(1, 100))

// genLogical draws a remote logical counter: usually small, sometimes at the
// very top of its range, where incrementing it would wrap.
var genLogical = rapid.OneOf(rapid.Uint32Range(0, 5), rapid.Uint32Range(math.MaxUint32-2, math.MaxUint32))

func TestClockNowStrictlyIncreasing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		wall := baseWall
		c := NewClock(func() time.Time { return time.UnixMilli(wall) }, 0)
		var prev HLC
		for range rapid.IntRange(1, 200).Draw(t, "calls") {
			wall += genPhysStep.Draw(t, "step")
			now := c.Now()
			if now.Compare(prev) <= 0 {
				t.Fatalf("Now went from %s to %s (physical %d)", prev, now, wall)
			}
			if now.Wall < wall {
				t.Fatalf("Now %s is behind the physical clock %d", now, wall)
			}
			if c.Last() != now {
				t.Fatalf("Last %s, want the value Now just returned %s", c.Last(), now)
			}
			prev = now
		}
	})
}

func TestClockObserve(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		wall := baseWall
		maxSkew := rapid.Int64Range(0, 1000).Draw(t, "max skew")
		c := NewClock(func() time.Time { return time.UnixMilli(wall) }, maxSkew)
		var prev HLC // greatest timestamp issued or accepted so far
		t.Repeat(map[string]func(*rapid.T){
			"tick": func(t *rapid.T) { wall += genPhysStep.Draw(t, "step") },
			"now": func(t *rapid.T) {
				now := c.Now()
				reset := maxSkew > 0 && now.Wall == wall+maxSkew && now.Logical == 0
				if now.Compare(prev) <= 0 && !reset {
					t.Fatalf("Now %s not after %s, and not a reset to the bound %d ahead of %d", now, prev, maxSkew, wall)
				}
				if maxSkew > 0 && now.Wall-wall > 2*maxSkew {
					t.Fatalf("Now %s is more than twice the bound %d ahead of the physical clock %d", now, maxSkew, wall)
				}
				prev = now
			},
			"observe within bound": func(t *rapid.T) {
				ahead := maxSkew
				if ahead == 0 {
					ahead = 1 << 40 // unbounded: anything goes
				}
				remote := HLC{
					Wall:    wall + rapid.Int64Range(-1000, ahead).Draw(t, "offset"),
					Logical: genLogical.Draw(t, "logical"),
				}
				if !c.Observe(remote) {
					t.Fatalf("Observe(%s) refused with physical %d and max skew %d", remote, wall, maxSkew)
				}
				if remote.Compare(prev) > 0 {
					prev = remote
				}
				if c.Last() != prev {
					t.Fatalf("Last %s, want %s after observing %s", c.Last(), prev, remote)
				}
				now := c.Now()
				reset := maxSkew > 0 && now.Wall == wall+maxSkew && now.Logical == 0
				if !reset && (now.Compare(remote) <= 0 || now.Compare(prev) <= 0) {
					t.Fatalf("Now %s after observing %s (max so far %s)", now, remote, prev)
				}
				prev = now
			},
			"observe beyond bound": func(t *rapid.T) {
				if maxSkew == 0 {
					t.Skip("no bound")
				}
				remote := HLC{Wall: wall + maxSkew + rapid.Int64Range(1, 1<<40).Draw(t, "excess")}
				before := c.Last()
				if c.Observe(remote) {
					t.Fatalf("Observe(%s) accepted with physical %d and max skew %d", remote, wall, maxSkew)
				}
				if c.Last() != before {
					t.Fatalf("refused Observe changed the clock: %s -> %s", before, c.Last())
				}
			},
		})
	})
}

// TestClockCorrectedAfterRunningAhead: a clock that ran an hour ahead and
// was corrected issues timestamps at most the bound ahead of the corrected
// clock, not an hour ahead for the next hour.
func TestClockCorrectedAfterRunningAhead(t *testing.T) {
	wall := baseWall + 3_600_000
	c := NewClock(func() time.Time { return time.UnixMilli(wall) }, 5000)
	ahead := c.Now()
	wall = baseWall // corrected
	if now := c.Now(); now.Wall != baseWall+5000 || now.Compare(ahead) >= 0 {
		t.Fatalf("after the correction Now = %s, want %d (the bound ahead)", now, baseWall+5000)
	}
	if now := c.Now(); now.Wall != baseWall+5000 || now.Logical != 1 {
		t.Fatalf("then Now = %s, monotonic again", now)
	}
	unbounded := NewClock(func() time.Time { return time.UnixMilli(wall) }, 0)
	wall = baseWall + 3_600_000
	ahead = unbounded.Now()
	wall = baseWall
	if now := unbounded.Now(); now.Compare(ahead) <= 0 {
		t.Fatalf("without a bound Now went back: %s after %s", now, ahead)
	}
}

func TestClockConcurrentNowUnique(t *testing.T) {
	c := NewClock(func() time.Time { return time.UnixMilli(baseWall) }, 0) // frozen physical time
	const goroutines, calls = 4, 2000
	got := make([][]HLC, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range calls {
				got[g] = append(got[g], c.Now())
			}
		})
	}
	wg.Wait()
	seen := map[HLC]bool{}
	for _, ts := range got {
		for i, h := range ts {
			if seen[h] {
				t.Fatalf("timestamp %s issued twice", h)
			}
			seen[h] = true
			if i > 0 && h.Compare(ts[i-1]) <= 0 {
				t.Fatalf("one goroutine saw %s after %s", h, ts[i-1])
			}
		}
	}
	if len(seen) != goroutines*calls {
		t.Fatalf("%d distinct timestamps, want %d", len(seen), goroutines*calls)
	}
}

// TestClockLogicalExhausted: a remote timestamp whose logical counter is at
// its limit, with the local physical clock not ahead of it, must not make Now
// wrap around to a smaller timestamp.
func TestClockLogicalExhausted(t *testing.T) {
	c := NewClock(func() time.Time { return time.UnixMilli(baseWall) }, 1000)
	remote := HLC{Wall: baseWall, Logical: math.MaxUint32}
	if !c.Observe(remote) {
		t.Fatalf("Observe(%s) refused", remote)
	}
	first := c.Now()
	if first.Compare(remote) <= 0 {
		t.Fatalf("Now = %s after observing %s", first, remote)
	}
	if second := c.Now(); second.Compare(first) <= 0 {
		t.Fatalf("Now went from %s to %s", first, second)
	}
}

func TestHLCTable(t *testing.T) {
	tests := []struct {
		a, b HLC
		want int
	}{
		{HLC{Wall: 2}, HLC{Wall: 1, Logical: 9}, 1},
		{HLC{Wall: 1, Logical: 1}, HLC{Wall: 1, Logical: 2}, -1},
		{HLC{Wall: 1, Logical: 1}, HLC{Wall: 1, Logical: 1}, 0},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	if !(HLC{}).IsZero() || (HLC{Logical: 1}).IsZero() {
		t.Error("IsZero must hold for the zero HLC only")
	}
	if got := (HLC{Wall: 5, Logical: 2}).String(); got != "5.2" {
		t.Errorf("String = %q, want 5.2", got)
	}
}
