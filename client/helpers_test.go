package client_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/internal/wait"
	"github.com/geogate/geogate/rules"
)

// The polls of this package's tests (package wait).
var eventually = wait.For

// startRegions runs real regions (embedded NATS with JetStream, Badger in
// t.TempDir()) in this process for one test.
func startRegions(t testing.TB, regions []string, kind string, rs []rules.Spec, tune ...func(*gateway.ClusterSpec)) *gateway.Cluster {
	t.Helper()
	spec := gateway.ClusterSpec{
		Regions: regions, Topology: config.Topology{Kind: kind}, DataDir: t.TempDir(), Rules: rs,
		Options: func(string) gateway.Options { return gateway.Options{Logger: slog.New(slog.DiscardHandler)} },
	}
	if kind == "star" {
		spec.Topology.Hub = regions[0]
	}
	for _, f := range tune {
		f(&spec)
	}
	c, err := gateway.StartCluster(context.Background(), spec)
	if err != nil {
		t.Fatalf("start regions: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func urlOf(c *gateway.Cluster, region string) string { return c.Node(region).HTTPURL() }

// newClient builds a client or fails the test.
func newClient(t testing.TB, urls []string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(urls, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// stateless is a client that carries no tokens of its own: what a plain
// curl user sees.
func stateless(t testing.TB, url string) *client.Client {
	return newClient(t, []string{url}, client.WithoutTracking(), client.WithRetry(client.Retry{MaxAttempts: 1}))
}

func allSiblings() []rules.Spec {
	return []rules.Spec{{Name: "all", Match: "true", Strategy: "siblings"}}
}

// exchange is one HTTP exchange a recorder saw.
type exchange struct {
	method, url string
	status      int
	err         error
}

// recorder is an http.RoundTripper that records every exchange the client
// makes and lets a test react to one (on), over a real transport.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  []exchange
	on   func(exchange)
}

func newRecorder() *recorder {
	return &recorder{base: http.DefaultTransport.(*http.Transport).Clone()}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	ex := exchange{method: req.Method, url: req.URL.String(), err: err}
	if resp != nil {
		ex.status = resp.StatusCode
	}
	r.mu.Lock()
	r.log = append(r.log, ex)
	on := r.on
	r.mu.Unlock()
	if on != nil {
		on(ex)
	}
	return resp, err
}

func (r *recorder) exchanges() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]exchange(nil), r.log...)
}

// count returns how many exchanges went to a URL starting with prefix and
// satisfied f.
func (r *recorder) count(prefix string, f func(exchange) bool) int {
	n := 0
	for _, ex := range r.exchanges() {
		if strings.HasPrefix(ex.url, prefix) && f(ex) {
			n++
		}
	}
	return n
}

func newLoopbackListener() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// brokenPort returns the URL of a loopback port nothing listens on.
func brokenPort(t testing.TB) string {
	t.Helper()
	l, err := newLoopbackListener()
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}
