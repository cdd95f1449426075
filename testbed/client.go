package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/geogate/geogate/client"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/store"
)

// apiClient speaks to each node of a run through its own Go client
// (package client), stateless and without retries: the testbed chooses
// the node of every request, passes the tokens itself and counts every
// failure, so nothing may be retried elsewhere or carried along unasked.
// Redirects are followed, as by any client.
//
// A request addressed to a region of several nodes goes to one of them,
// round robin, skipping a node that looks down (it refused a connection
// within the last second) or frozen (requests outstanding and none
// answered for a second), as a load balancer would; one that cannot
// connect goes on to the region's next node (it was not sent, so it is
// not a retry of anything the region saw). A request addressed to a node
// by name goes there only.
type apiClient struct {
	hc *http.Client
	// nodes are the clients of each node (a region of one node: its name).
	nodes map[string]*client.Client
	// groups are the regions of several nodes.
	groups map[string]*nodeGroup
	// hostNode maps each node's host:port to its name.
	hostNode map[string]string

	mu     sync.Mutex
	health map[string]*nodeHealth
}

// nodeGroup is a region of several nodes: via[i] sends to node i first,
// then to the others in order.
type nodeGroup struct {
	names []string
	via   []*client.Client
	next  atomic.Uint64
}

// nodeHealth is what the client saw of a node lately.
type nodeHealth struct {
	inflight int
	progress time.Time // the last answer, or when it last got busy
	refused  time.Time // the last connection it refused
}

// Health thresholds of spreading: a node that refused a connection within
// downFor, or has requests outstanding and answered none for stallAfter,
// is skipped while another node of its region is not.
const (
	downFor    = time.Second
	stallAfter = time.Second
)

// newAPIClient returns a client of the nodes at urls (by node name);
// layout names the nodes of each region of several nodes (nil: every
// name in urls is a region of one node). sec, when the run is secured,
// makes it trust the run's CA and send its admin token (the testbed
// writes, reads and pauses links).
func newAPIClient(urls map[string]string, layout map[string][]string, timeout time.Duration, conns int, sec *deploy.Material) (*apiClient, error) {
	tr := &http.Transport{MaxIdleConns: conns * max(len(urls), 1), MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second}
	opts := []client.Option{client.WithoutTracking(), client.WithRetry(client.Retry{MaxAttempts: 1}), client.WithAttemptTimeout(0)}
	if sec != nil {
		tr.TLSClientConfig = sec.ClientTLS()
		opts = append(opts, client.WithToken(sec.Tokens[auth.Admin]))
	}
	c := &apiClient{nodes: map[string]*client.Client{}, groups: map[string]*nodeGroup{}, hostNode: map[string]string{},
		health: map[string]*nodeHealth{}}
	c.hc = &http.Client{Transport: &watchingTransport{base: tr, c: c}, Timeout: timeout}
	for node, u := range urls {
		rc, err := client.New([]string{u}, append([]client.Option{client.WithHTTPClient(c.hc)}, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", node, err)
		}
		c.nodes[node] = rc
		if pu, err := url.Parse(u); err == nil {
			c.hostNode[pu.Host] = node
		}
		c.health[node] = &nodeHealth{progress: time.Now()}
	}
	for region, names := range layout {
		if len(names) < 2 {
			continue
		}
		g := &nodeGroup{names: names}
		for i := range names {
			var order []string
			for k := range names {
				n := names[(i+k)%len(names)]
				if urls[n] == "" {
					return nil, fmt.Errorf("region %s: no URL for node %s", region, n)
				}
				order = append(order, urls[n])
			}
			// One attempt per node: only a request that could not
			// connect goes on (client.Retry: not sent, or answered with
			// a code that says nothing was applied).
			gopts := []client.Option{client.WithHTTPClient(c.hc), client.WithoutTracking(), client.WithAttemptTimeout(0),
				client.WithRetry(client.Retry{MaxAttempts: len(names), BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})}
			if sec != nil {
				gopts = append(gopts, client.WithToken(sec.Tokens[auth.Admin]))
			}
			rc, err := client.New(order, gopts...)
			if err != nil {
				return nil, fmt.Errorf("region %s: %w", region, err)
			}
			g.via = append(g.via, rc)
		}
		c.groups[region] = g
	}
	return c, nil
}

func (c *apiClient) close() { c.hc.CloseIdleConnections() }

// region returns the client a request to name goes through: a node's, or
// for a region of several nodes one of its nodes' (see apiClient).
func (c *apiClient) region(name string) (*client.Client, error) {
	if g, ok := c.groups[name]; ok {
		return g.via[c.pick(g)], nil
	}
	rc, ok := c.nodes[name]
	if !ok {
		return nil, fmt.Errorf("no region or node %q", name)
	}
	return rc, nil
}

// pick chooses the node of a region of several that the next request
// goes to first: the next in turn that looks healthy, else the next in
// turn.
func (c *apiClient) pick(g *nodeGroup) int {
	start := int(g.next.Add(1) % uint64(len(g.names)))
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range g.names {
		i := (start + k) % len(g.names)
		if h := c.health[g.names[i]]; h == nil || h.healthy(now) {
			return i
		}
	}
	return start
}

func (h *nodeHealth) healthy(now time.Time) bool {
	if now.Sub(h.refused) < downFor {
		return false
	}
	return h.inflight == 0 || now.Sub(h.progress) < stallAfter
}

// answeredKey carries, in a request's context, where watchingTransport
// notes the node that answered.
type answeredKey struct{}

// answered is the node that answered a request: the one named by the
// answer's X-Geo-Node (a follower forwarded the request to it), else the
// one the request was sent to.
type answered struct {
	mu   sync.Mutex
	node string
}

func (a *answered) get() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.node
}

// watchingTransport keeps each node's health and notes which node
// answered a request.
type watchingTransport struct {
	base http.RoundTripper
	c    *apiClient
}

func (t *watchingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.c
	node := c.hostNode[req.URL.Host]
	c.mu.Lock()
	h := c.health[node]
	if h != nil {
		if h.inflight == 0 {
			h.progress = time.Now()
		}
		h.inflight++
	}
	c.mu.Unlock()
	resp, err := t.base.RoundTrip(req)
	c.mu.Lock()
	if h != nil {
		h.inflight--
		switch {
		case err == nil:
			h.progress = time.Now()
		case isRefused(err):
			h.refused = time.Now()
		}
	}
	c.mu.Unlock()
	if err == nil {
		if a, ok := req.Context().Value(answeredKey{}).(*answered); ok {
			by := resp.Header.Get(gateway.HeaderNode)
			if by == "" {
				by = node
			}
			a.mu.Lock()
			a.node = by
			a.mu.Unlock()
		}
	}
	return resp, err
}

// isRefused reports a connection refused: nothing listens (the process
// is down).
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// reason classifies a request error for counting: "503 stale",
// "transport", "timeout".
func reason(err error) string {
	var ae *client.APIError
	switch {
	case errors.As(err, &ae):
		if ae.Code != "" {
			return fmt.Sprintf("%d %s", ae.Status, ae.Code)
		}
		return strconv.Itoa(ae.Status)
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout"):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "transport"
}

// put writes key at region (or a node), blind (no causal context), and
// returns the node that acknowledged it (see answered).
func (c *apiClient) put(ctx context.Context, region, key string, value []byte) (client.WriteResult, string, error) {
	rc, err := c.region(region)
	if err != nil {
		return client.WriteResult{}, "", err
	}
	by := &answered{}
	res, err := rc.Put(context.WithValue(ctx, answeredKey{}, by), key, value)
	return res, by.get(), err
}

// get reads a key and returns the answer's status: 200, 300 and 404 are
// answers, not errors; an error answer's status comes with its error.
func (c *apiClient) get(ctx context.Context, region, key string, opts ...client.CallOption) (int, error) {
	rc, err := c.region(region)
	if err != nil {
		return 0, err
	}
	v, err := rc.Get(ctx, key, opts...)
	var ae *client.APIError
	switch {
	case err == nil && v.HasSiblings():
		return http.StatusMultipleChoices, nil
	case err == nil:
		return http.StatusOK, nil
	case client.IsNotFound(err):
		return http.StatusNotFound, nil
	case errors.As(err, &ae):
		return ae.Status, err
	}
	return 0, err
}

// meta reads every version of key at region.
func (c *apiClient) meta(ctx context.Context, region, key string) (client.Meta, error) {
	rc, err := c.region(region)
	if err != nil {
		return client.Meta{}, err
	}
	return rc.Meta(ctx, key)
}

func (c *apiClient) status(ctx context.Context, region string) (client.Status, error) {
	rc, err := c.region(region)
	if err != nil {
		return client.Status{}, err
	}
	return rc.Status(ctx)
}

// statuses reads the status of each of nodes at once, and returns those
// that answered by node.
func (c *apiClient) statuses(ctx context.Context, nodes []string) map[string]client.Status {
	out := map[string]client.Status{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		rc, ok := c.nodes[n]
		if !ok {
			continue
		}
		wg.Go(func() {
			st, err := rc.Status(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			out[n] = st
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// regionStatus reads the status of region as its leader reports it (the
// only node running its links, publisher and lifecycle), or of its only
// node.
func (c *apiClient) regionStatus(ctx context.Context, region string) (client.Status, error) {
	g, ok := c.groups[region]
	if !ok {
		return c.status(ctx, region)
	}
	sts := c.statuses(ctx, g.names)
	if l := leaderAmong(sts); l != "" {
		return sts[l], nil
	}
	return client.Status{}, fmt.Errorf("no node of region %s leads (%d of %d answered)", region, len(sts), len(g.names))
}

func (c *apiClient) healthy(ctx context.Context, region string) bool {
	rc, err := c.region(region)
	return err == nil && rc.Health(ctx) == nil
}

// snapshot writes a snapshot of region (GET /v1/admin/snapshot) to file,
// verified, and returns its record count.
func (c *apiClient) snapshot(ctx context.Context, region, file string) (int64, error) {
	rc, err := c.region(region)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return 0, err
	}
	f, err := os.Create(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := rc.Snapshot(ctx, f); err != nil {
		return 0, fmt.Errorf("backup %s: %w", region, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return 0, err
	}
	info, err := store.VerifySnapshot(f)
	if err != nil {
		return 0, fmt.Errorf("backup %s: %w", region, err)
	}
	return info.Records, nil
}

// aeState reads region's anti-entropy state: rounds run, buckets that
// differed in its last comparisons (summed over peers), and records
// awaiting repair.
func (c *apiClient) aeState(ctx context.Context, region string) (rounds, differing, corrupt int, err error) {
	st, err := c.regionStatus(ctx, region)
	if err != nil {
		return 0, 0, 0, err
	}
	ae := st.Lifecycle.AntiEntropy
	for _, n := range ae.Differing {
		differing += n
	}
	return ae.Rounds, differing, len(ae.Corrupt), nil
}

// lifecycle reads the lifecycle part of region's status: records
// anti-entropy repaired and re-seeds done.
func (c *apiClient) lifecycle(ctx context.Context, region string) (LifecycleStats, error) {
	st, err := c.regionStatus(ctx, region)
	if err != nil {
		return LifecycleStats{}, err
	}
	l := st.Lifecycle
	out := LifecycleStats{Repaired: l.AntiEntropy.Repaired, Compared: l.AntiEntropy.Compared, Collected: l.Tombstones.Collected}
	for _, r := range l.Reseeds {
		out.Reseeds += r.Reseeds
	}
	return out, nil
}

// linkAdmin pauses or resumes the link from -> region at region.
func (c *apiClient) linkAdmin(ctx context.Context, region, from, action string) error {
	rc, err := c.region(region)
	if err != nil {
		return err
	}
	if action == "pause" {
		_, err = rc.PauseLink(ctx, from)
	} else {
		_, err = rc.ResumeLink(ctx, from)
	}
	return err
}
