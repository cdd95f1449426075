package link

import "testing"

func TestRouteRetry(t *testing.T) {
	for _, c := range []struct {
		msg         string
		quiet, warn bool
	}{
		{"Error trying to connect to route (attempt 1): dial tcp 127.0.0.1:1: connect: connection refused", true, true},
		{"Error trying to connect to route (attempt 2): dial tcp", true, false},
		{"Error trying to connect to route (attempt 120): dial tcp", true, true},
		{"Error trying to connect to route (attempt x", true, true},
		{"TLS handshake error", false, false},
	} {
		if q, w := routeRetry(c.msg); q != c.quiet || w != c.warn {
			t.Errorf("routeRetry(%q) = %v, %v; want %v, %v", c.msg, q, w, c.quiet, c.warn)
		}
	}
}
