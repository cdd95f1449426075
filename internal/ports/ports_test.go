package ports

import (
	"fmt"
	"net"
	"testing"
)

// TestHold: the ports are distinct and cannot be bound while held, and
// can be once released.
func TestHold(t *testing.T) {
	ps, release, err := Hold(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ps {
		if seen[p] || p <= 0 {
			t.Fatalf("ports %v: not distinct positive ports", ps)
		}
		seen[p] = true
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			ln.Close()
			t.Fatalf("port %d could be bound while held", p)
		}
	}
	release()
	release() // idempotent
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ps[0]))
	if err != nil {
		t.Fatalf("port %d after release: %v", ps[0], err)
	}
	ln.Close()
}

// TestHoldAvoidsEphemeralRange: where the kernel's ephemeral range is
// known and leaves room below it, every port is drawn below it, from
// 10000 up, so outgoing connections never take one.
func TestHoldAvoidsEphemeralRange(t *testing.T) {
	top := ephemeralStart()
	if top-lowest < 1000 {
		t.Skipf("ephemeral range starts at %d: no room below it on this machine", top)
	}
	ps, release, err := Hold(40)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if len(ps) != 40 {
		t.Fatalf("%d ports, want 40", len(ps))
	}
	for _, p := range ps {
		if p < lowest || p >= top {
			t.Fatalf("port %d outside [%d, %d): %v", p, lowest, top, ps)
		}
	}
}
