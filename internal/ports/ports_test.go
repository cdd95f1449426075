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
