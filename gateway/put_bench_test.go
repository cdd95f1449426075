package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkPutHandler is the CPU cost of one PUT through the node's whole
// handler (routing, metrics, JSON, key checks, tokens, the store's group
// commit without fsync, the answer), without the network: what a write
// costs the region besides its sockets, its fsync and its replication.
func BenchmarkPutHandler(b *testing.B) {
	c := startCluster(b, []string{"r1"}, "all-to-all", nil, func(s *ClusterSpec) { s.Sync = false })
	h := c.Node("r1").server.Handler
	body := []byte(`{"payload":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		req := httptest.NewRequest(http.MethodPut, fmt.Sprintf("/v1/kv/bench-%d", i), bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("PUT: %d %s", rec.Code, rec.Body)
		}
	}
}
