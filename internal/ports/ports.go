// Package ports picks free loopback TCP ports for deployments started on
// one machine (in-process clusters, the testbed, tests).
package ports

import (
	"fmt"
	"net"
)

// Hold returns n distinct loopback ports, each held by a listener until
// release is called (release is idempotent): nothing else is handed one of
// them before that. Once released, another process may take one before
// its user binds it; callers that bind later retry or report that.
func Hold(n int) (ports []int, release func(), err error) {
	var lns []net.Listener
	release = func() {
		for _, ln := range lns {
			ln.Close()
		}
		lns = nil
	}
	ports = make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("pick a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, release, nil
}
