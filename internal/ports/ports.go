// Package ports picks free loopback TCP ports for deployments started on
// one machine (in-process clusters, the testbed, tests).
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// lowest is the lowest port Hold picks outside the ephemeral range: below
// it sit the well-known and registered ports of services a machine may run.
const lowest = 10000

// Hold returns n distinct loopback ports, each held by a listener until
// release is called (release is idempotent): nothing else is handed one of
// them before that. Once released, another process may take one before
// its user binds it; callers that bind later retry or report that.
//
// The ports are drawn at random below the kernel's ephemeral range (Linux:
// net.ipv4.ip_local_port_range), from 10000 up, so that the source port of
// an outgoing connection, which the kernel takes from that range, cannot
// take a released port before its user binds it. Where the range is not
// known or leaves too little room below it, the kernel picks the ports.
func Hold(n int) (ports []int, release func(), err error) {
	var lns []net.Listener
	release = func() {
		for _, ln := range lns {
			ln.Close()
		}
		lns = nil
	}
	ports = make([]int, 0, n)
	hold := func(port int) error {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		return nil
	}
	if top := ephemeralStart(); top-lowest >= 1000 {
		for tries := 0; len(ports) < n && tries < 20*n; tries++ {
			p := lowest + rand.IntN(top-lowest)
			if !slices.Contains(ports, p) {
				_ = hold(p) // taken: draw another
			}
		}
	}
	for len(ports) < n {
		if err := hold(0); err != nil {
			release()
			return nil, nil, fmt.Errorf("pick a free port: %w", err)
		}
	}
	return ports, release, nil
}

// ephemeralStart returns the first port of the kernel's ephemeral range,
// or 0 when it is not known.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}
